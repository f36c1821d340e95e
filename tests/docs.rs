//! The documentation against what it describes: every `fastsmtpd --help` flag has a row in
//! `docs/cli.md` and every row names a real flag (smtp-loadgen's half is
//! `loadgen/tests/docs_cli.rs`), every relative link in `README.md` and `docs/` leads to a
//! file (and heading) that exists, and the README gives the test command `.ci/run` runs.

mod cli_docs;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The workspace root (this crate's manifest directory).
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_fastsmtpd_flag_is_documented_in_docs_cli_md_and_every_documented_flag_exists() {
    let (docs, file) = cli_docs::read_docs(root());
    let binary = Path::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    let errors = cli_docs::check_binary(binary, "fastsmtpd", &docs, &file);
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));
    // Every section belongs to a binary whose test checks it.
    for command in docs.keys() {
        assert!(
            command == "fastsmtpd"
                || command.starts_with("fastsmtpd ")
                || command.starts_with("smtp-loadgen"),
            "{file} has a section for `{command}`, which no test checks against a --help"
        );
    }
}

/// The Markdown files of the documentation: the README and everything under `docs/`.
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut files = vec![root().join("README.md")];
    walk(&root().join("docs"), &mut files);
    files
}

/// The lines of `md` outside fenced code blocks, with their 1-based numbers.
fn prose_lines(md: &str) -> Vec<(usize, &str)> {
    let mut in_fence = false;
    let mut lines = Vec::new();
    for (index, line) in md.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence {
            lines.push((index + 1, line));
        }
    }
    lines
}

/// `line` without its code spans (a link inside backticks is text, not a link).
fn without_code_spans(line: &str) -> String {
    line.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

/// The anchors GitHub gives the headings of `md`: lower case, punctuation other than `-` and
/// `_` dropped, spaces as `-`; a repeated anchor gets `-1`, `-2`, ...
fn anchors(md: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (_, line) in prose_lines(md) {
        let Some(text) = line.strip_prefix('#') else {
            continue;
        };
        let text = text.trim_start_matches('#');
        if !text.starts_with(' ') {
            continue;
        }
        let slug: String = text
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut candidate = slug.clone();
        let mut n = 0;
        while seen.contains(&candidate) {
            n += 1;
            candidate = format!("{slug}-{n}");
        }
        seen.insert(candidate);
    }
    seen
}

/// The link targets of one line: what stands in `](...)`.
fn link_targets(line: &str) -> Vec<String> {
    let text = without_code_spans(line);
    let mut targets = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        match rest.find(')') {
            Some(end) => {
                targets.push(rest[..end].trim().to_string());
                rest = &rest[end..];
            }
            None => break,
        }
    }
    targets
}

#[test]
fn every_relative_link_in_readme_and_docs_leads_to_an_existing_file_and_heading() {
    let mut errors = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let shown = file.strip_prefix(root()).unwrap().display().to_string();
        let md = std::fs::read_to_string(&file).unwrap();
        for (number, line) in prose_lines(&md) {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, anchor) = match target.split_once('#') {
                    Some((path, anchor)) => (path, Some(anchor)),
                    None => (target.as_str(), None),
                };
                let resolved = if path.is_empty() {
                    file.clone()
                } else {
                    file.parent().unwrap().join(path)
                };
                if !resolved.exists() {
                    errors.push(format!(
                        "{shown}:{number}: link to `{target}`: {} does not exist",
                        resolved.display()
                    ));
                    continue;
                }
                let Some(anchor) = anchor else { continue };
                if resolved.extension().is_none_or(|e| e != "md") {
                    continue;
                }
                let target_md = std::fs::read_to_string(&resolved).unwrap();
                if !anchors(&target_md).contains(anchor) {
                    errors.push(format!(
                        "{shown}:{number}: link to `{target}`: no heading with the anchor \
                         #{anchor} in {}",
                        resolved.strip_prefix(root()).unwrap_or(&resolved).display()
                    ));
                }
            }
        }
    }
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));
    assert!(
        checked > 20,
        "only {checked} relative links found: is the link parser broken?"
    );
}

#[test]
fn heading_anchors_follow_github() {
    let md = "# Title\n## `smtp-loadgen report`\n### Real messages, sources and targets\n\
              ```\n# not a heading\n```\n## Title\n#nospace\n";
    let found = anchors(md);
    let expected: BTreeSet<String> = [
        "title",
        "smtp-loadgen-report",
        "real-messages-sources-and-targets",
        "title-1",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(found, expected);
    assert_eq!(
        link_targets("see [a](x.md#y) and `[b](code.md)` then ![c](d.svg)"),
        vec!["x.md#y".to_string(), "d.svg".to_string()]
    );
}

#[test]
fn the_readme_gives_the_test_command_that_ci_runs() {
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    let command = ci
        .lines()
        .map(str::trim)
        .rfind(|line| line.starts_with("cargo test"))
        .expect(".ci/run runs no `cargo test` line");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    // The command must stand alone on a line of a code block, as a user would copy it.
    let mut in_fence = false;
    let mut found = false;
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if in_fence && line.trim() == command {
            found = true;
        }
    }
    assert!(
        found,
        "README.md has no code block line `{command}`, the test command .ci/run runs"
    );
}

mod tour_paths;

#[test]
fn every_path_the_tour_names_still_exists() {
    let file = root().join("docs/tour.md");
    let tour = std::fs::read_to_string(&file).expect("docs/tour.md");
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (line, span) in tour_paths::code_spans(&tour) {
        let Some(name) = tour_paths::name_of(&span) else {
            continue;
        };
        checked += 1;
        if let Err(why) = tour_paths::resolve(root(), &name) {
            wrong.push(format!("docs/tour.md:{line}: `{span}`: {why}"));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    // The tour is a walk through the code: it names many places, and this check saw them.
    eprintln!("{checked} names in docs/tour.md resolved");
    assert!(
        checked >= 100,
        "only {checked} names checked in docs/tour.md"
    );
}

#[test]
fn the_tour_check_refuses_what_does_not_exist() {
    let check = |span: &str| {
        let name = tour_paths::name_of(span).expect(span);
        tour_paths::resolve(root(), &name)
    };
    // What exists: a module function, a method in a sub-file of its type's module, a trait
    // method, a variant, a field, a type named alone with a method, a file.
    for good in [
        "proto::line::next_line",
        "server::conn::Conn::flush",
        "proto::sink::MessageSink::on_message_end",
        "store::queues::StreamOp::Start",
        "Progress::discarded",
        "Session::take_input",
        "src/store/queues.rs",
    ] {
        assert_eq!(check(good), Ok(()), "{good}");
    }
    for bad in [
        "proto::line::no_such_function",
        "server::conn::Conn::no_such_method",
        "server::conn::NoSuchType",
        "store::queues::StreamOp::NoSuchVariant",
        "Session::no_such_method",
        "NoSuchType::anything",
        "src/no_such_file.rs",
        // A method of another type in the same module does not count.
        "server::conn::Outcome::flush",
    ] {
        assert!(check(bad).is_err(), "{bad} resolved");
    }
    // Other crates' paths and non-paths are not checked.
    assert_eq!(tour_paths::name_of("--store maildir:/tmp/mail"), None);
    assert_eq!(tour_paths::name_of("Command<'_>"), None);
}
