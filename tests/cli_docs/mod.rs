//! Keeps `docs/cli.md` and the binaries' `--help` from drifting apart. Shared by
//! `tests/docs.rs` (fastsmtpd) and `loadgen/tests/docs_cli.rs` (smtp-loadgen), which include
//! this file by path: each crate can run only its own binaries.
//!
//! What it does: run `BINARY --help` and `BINARY SUBCOMMAND --help` for every subcommand the
//! help lists, collect their long flags (and the short alias of each), collect the flags that
//! `docs/cli.md` documents, and report every difference, naming the flag, the command and the
//! file.
//!
//! How `docs/cli.md` documents a flag: a table row whose first cell names it (`--listen ADDR`,
//! `-c, --connections C`), under a `## ` heading whose first code span is the command
//! (``## `fastsmtpd` ``, ``## `smtp-loadgen report` ``); `### ` headings below it belong to
//! the same command. Flags mentioned in prose or in other columns are cross-references, not
//! definitions. `--help` and `--version` need no row.
//!
//! What it does not do: judge the descriptions, or check defaults (clap prints them; the
//! docs explain them).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A hang guard for one `--help` run (never a timing assertion: generous on purpose).
const HELP_LIMIT: Duration = Duration::from_secs(60);

/// The long flags of one `--help` text: the flag name without dashes, and its short alias.
pub type HelpFlags = BTreeMap<String, Option<char>>;

/// One documented flag: its short alias as written in the row, and where the row is.
#[derive(Debug, Clone)]
pub struct DocRow {
    /// The short alias named in the same first cell (`-c` of `-c, --connections C`).
    pub short: Option<char>,
    /// 1-based line of the row in the file.
    pub line: usize,
}

/// Flags documented per command (`fastsmtpd`, `smtp-loadgen`, `smtp-loadgen report`, ...).
pub type DocFlags = BTreeMap<String, BTreeMap<String, DocRow>>;

/// Runs `binary args` to completion within [`HELP_LIMIT`] and returns its standard output;
/// panics (naming the command) if it fails to start, hangs, or exits unsuccessfully.
pub fn run_help(binary: &Path, args: &[&str]) -> String {
    let shown = format!("{} {}", binary.display(), args.join(" "));
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let deadline = Instant::now() + HELP_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for --help") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} did not finish within {HELP_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let text = reader
        .join()
        .expect("stdout reader")
        .unwrap_or_else(|e| panic!("{shown}: reading its output: {e}"));
    assert!(status.success(), "{shown} exited with {status}: {stderr}");
    text
}

/// The long flags (and short aliases) that a clap `--help` text lists: every line whose
/// indentation is small (an option, not a wrapped description) and that starts with `-`.
pub fn help_flags(help: &str) -> HelpFlags {
    let mut flags = HelpFlags::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if !trimmed.starts_with('-') || indent == 0 || indent > 10 {
            continue;
        }
        // The option part ends where the description begins (two spaces), if it does.
        let option = trimmed.split("  ").next().unwrap_or(trimmed);
        let (long, short) = flag_names(option);
        if let Some(long) = long {
            flags.insert(long, short);
        }
    }
    flags.remove("help");
    flags.remove("version");
    flags
}

/// The subcommands a clap `--help` lists under `Commands:` (without `help`).
pub fn subcommands(help: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if line.trim_end() == "Commands:" {
            inside = true;
            continue;
        }
        if inside {
            if line.trim().is_empty() || !line.starts_with(' ') {
                break;
            }
            if let Some(name) = line.split_whitespace().next() {
                if name != "help" {
                    names.push(name.to_string());
                }
            }
        }
    }
    names
}

/// The long name and the short alias named in an option text such as `-c, --connections C`
/// or `` `--bare-lf reject\|keep` ``.
fn flag_names(text: &str) -> (Option<String>, Option<char>) {
    let mut long = None;
    let mut short = None;
    for token in text.split(|c: char| c.is_whitespace() || c == ',' || c == '`') {
        if let Some(name) = token.strip_prefix("--") {
            let name: String = name
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if name.starts_with(|c: char| c.is_ascii_alphanumeric()) && long.is_none() {
                long = Some(name);
            }
        } else if let Some(rest) = token.strip_prefix('-') {
            let mut chars = rest.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                if c.is_ascii_alphanumeric() {
                    short = Some(c);
                }
            }
        }
    }
    (long, short)
}

/// The first cell of a Markdown table row (`\|` inside it is an escaped pipe).
fn first_cell(row: &str) -> &str {
    let inner = row.trim_start().strip_prefix('|').unwrap_or(row);
    let bytes = inner.as_bytes();
    let mut end = inner.len();
    for i in 0..bytes.len() {
        if bytes[i] == b'|' && (i == 0 || bytes[i - 1] != b'\\') {
            end = i;
            break;
        }
    }
    inner[..end].trim()
}

/// The flags `md` (the text of `docs/cli.md`) documents, per command. Errors: a flag row
/// outside a command's section, or a flag documented twice for one command.
pub fn documented_flags(md: &str, file: &str) -> Result<DocFlags, Vec<String>> {
    let mut docs = DocFlags::new();
    let mut errors = Vec::new();
    let mut command: Option<String> = None;
    let mut in_fence = false;
    for (index, line) in md.lines().enumerate() {
        let number = index + 1;
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        if let Some(heading) = line.strip_prefix("## ") {
            command = heading.split('`').nth(1).map(str::to_string);
            if let Some(name) = &command {
                docs.entry(name.clone()).or_default();
            }
            continue;
        }
        if line.starts_with("# ") {
            command = None;
            continue;
        }
        if !line.trim_start().starts_with('|') {
            continue;
        }
        let cell = first_cell(line);
        let (long, short) = flag_names(cell);
        let Some(long) = long else { continue };
        // Only a cell that begins with the flag defines it (`--foo X`, `-f, --foo X`).
        let starts_with_flag = cell.trim_start_matches('`').starts_with('-');
        if !starts_with_flag {
            continue;
        }
        match &command {
            None => errors.push(format!(
                "{file}:{number}: a row for `--{long}` outside any command's section \
                 (put it under a `## `COMMAND`` heading)"
            )),
            Some(name) => {
                let rows = docs.entry(name.clone()).or_default();
                if let Some(first) = rows.get(&long) {
                    errors.push(format!(
                        "{file}:{number}: `{name} --{long}` is documented twice (first at line {})",
                        first.line
                    ));
                } else {
                    rows.insert(
                        long,
                        DocRow {
                            short,
                            line: number,
                        },
                    );
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(docs)
    } else {
        Err(errors)
    }
}

/// Every difference between the flags of `command`'s `--help` and its section of the docs.
pub fn compare(command: &str, help: &HelpFlags, docs: &DocFlags, file: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(rows) = docs.get(command) else {
        return vec![format!(
            "{file} has no section for `{command}`: add a heading ## `{command}` with a table \
             row for each of its flags ({})",
            help.keys()
                .map(|f| format!("--{f}"))
                .collect::<Vec<_>>()
                .join(", ")
        )];
    };
    for (flag, short) in help {
        match rows.get(flag) {
            None => errors.push(format!(
                "`{command} --{flag}` is in `{command} --help` but not documented in {file}: \
                 add a table row starting with `--{flag}` under ## `{command}`"
            )),
            Some(row) if row.short != *short => errors.push(format!(
                "{file}:{}: `{command} --{flag}`: --help gives the short form {}, the row gives {}",
                row.line,
                short.map_or("none".into(), |c| format!("-{c}")),
                row.short.map_or("none".into(), |c| format!("-{c}")),
            )),
            Some(_) => {}
        }
    }
    for (flag, row) in rows {
        if !help.contains_key(flag) {
            errors.push(format!(
                "{file}:{}: documents `{command} --{flag}`, but `{command} --help` has no such \
                 flag: remove the row or fix its name",
                row.line
            ));
        }
    }
    errors
}

/// Checks `binary` (named `name` in the docs) and each of its subcommands against `docs`:
/// the failures, one line each.
pub fn check_binary(binary: &Path, name: &str, docs: &DocFlags, file: &str) -> Vec<String> {
    let help = run_help(binary, &["--help"]);
    let mut errors = Vec::new();
    let top = help_flags(&help);
    assert!(
        !top.is_empty(),
        "no flags found in `{name} --help` (has its format changed?):\n{help}"
    );
    errors.extend(compare(name, &top, docs, file));
    let subs = subcommands(&help);
    for sub in &subs {
        let sub_help = run_help(binary, &[sub, "--help"]);
        let command = format!("{name} {sub}");
        errors.extend(compare(&command, &help_flags(&sub_help), docs, file));
    }
    // A section for a subcommand that does not exist (renamed or removed).
    for command in docs.keys() {
        if let Some(sub) = command.strip_prefix(&format!("{name} ")) {
            if !subs.iter().any(|s| s == sub) {
                errors.push(format!(
                    "{file} has a section for `{command}`, but `{name} --help` lists no \
                     subcommand `{sub}`"
                ));
            }
        }
    }
    errors
}

/// Reads `docs/cli.md` from the workspace root `root` and parses it, failing the test with
/// every parse error.
pub fn read_docs(root: &Path) -> (DocFlags, String) {
    let path = root.join("docs/cli.md");
    let shown = "docs/cli.md".to_string();
    let md = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    match documented_flags(&md, &shown) {
        Ok(docs) => (docs, shown),
        Err(errors) => panic!("{}", errors.join("\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_clap_help_and_doc_rows() {
        let help = "Usage: x [OPTIONS]\n\nCommands:\n  merge   Merge\n  help    Print\n\n\
                    Options:\n  -c, --connections <C>  Concurrent\n      --listen <ADDR>  \
                    Address, see --not-a-flag\n                 --wrapped-text here\n  -h, --help  Print help\n";
        let flags = help_flags(help);
        assert_eq!(
            flags.into_iter().collect::<Vec<_>>(),
            vec![
                ("connections".to_string(), Some('c')),
                ("listen".to_string(), None)
            ]
        );
        assert_eq!(subcommands(help), vec!["merge".to_string()]);
        let md = "# T\n\n| `--outside` | x |\n\n## `x`\n\n| flag | default | what |\n|---|---|---|\n\
                  | `-c, --connections C` | 10 | see `--listen` |\n| `--order a\\|b` | a | x |\n\
                  ```\n| `--in-code` | |\n```\n### Sub\n| `--listen ADDR` | | |\n| see `--x` | | |\n";
        let errors = documented_flags(md, "f.md").unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("--outside"), "{errors:?}");
        let docs = documented_flags(&md.replace("| `--outside` | x |", ""), "f.md").unwrap();
        let rows = &docs["x"];
        assert_eq!(
            rows.keys().collect::<Vec<_>>(),
            vec!["connections", "listen", "order"]
        );
        assert_eq!(rows["connections"].short, Some('c'));
    }
}
