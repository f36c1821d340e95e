//! Every script in `benches/` answers `--help` and `-h` with its usage and exit status 0,
//! without doing its work (no build, no install, no load). Scripts are found by extension
//! (`*.py` run with python3, `*.sh` with bash), so a new script is checked too.
//!
//! Bug this guards against: `python3 benches/compare.py --help` died with a traceback, a `%`
//! in a help string reaching argparse's `%`-formatting.

mod util;

use std::path::Path;
use util::process::{run_bounded, Tool, CHILD_LIMIT, PYTHON3};

/// The shell that runs the `.sh` scripts.
const BASH: Tool = Tool {
    program: "bash",
    probe: &["-c", "true"],
    install: "apt-get install -y bash",
};

#[test]
fn every_benches_script_answers_help_with_its_usage() {
    let benches = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches");
    let mut scripts: Vec<_> = std::fs::read_dir(&benches)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "py" || e == "sh"))
        .collect();
    scripts.sort();
    assert!(
        scripts.len() >= 9,
        "expected the benches/ scripts, found {scripts:?}"
    );
    let mut failures = Vec::new();
    for script in &scripts {
        let name = script.file_name().unwrap().to_string_lossy().into_owned();
        let tool = if name.ends_with(".py") {
            &PYTHON3
        } else {
            &BASH
        };
        for flag in ["--help", "-h"] {
            let mut command = tool.command();
            command.arg(script).arg(flag);
            let output = run_bounded(command, None, CHILD_LIMIT);
            let usage = output
                .stdout
                .lines()
                .find(|line| line.to_ascii_lowercase().starts_with("usage:"));
            if !output.status.success() {
                failures.push(format!(
                    "benches/{name} {flag} failed ({})\n{}",
                    output.status,
                    output.dump()
                ));
            } else if !usage.is_some_and(|line| line.contains(name.as_str())) {
                failures.push(format!(
                    "benches/{name} {flag}: no `usage: ... {name} ...` line on stdout\n{}",
                    output.dump()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn a_bad_argument_to_a_shell_script_is_a_usage_error_not_a_run() {
    let benches = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches");
    // Each of these would otherwise build, start servers and measure.
    for (script, args) in [
        ("stores.sh", &["not-a-number"][..]),
        ("charts.sh", &["--no-such-flag"][..]),
        ("testssl.sh", &["--no-such-flag"][..]),
    ] {
        let mut command = BASH.command();
        command.arg(benches.join(script)).args(args);
        let output = run_bounded(command, None, CHILD_LIMIT);
        assert_eq!(
            output.status.code(),
            Some(2),
            "benches/{script} {args:?}\n{}",
            output.dump()
        );
        assert!(
            output.stderr.starts_with("usage:"),
            "benches/{script} {args:?}: no usage on stderr\n{}",
            output.dump()
        );
    }
}
