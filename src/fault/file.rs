//! `--fault-file FILE`: fault rules kept in a TOML file, for rule sets too long for a command
//! line.
//!
//! The file holds `rules = ["...", ...]` (each in the `--fault` syntax) and an optional
//! `seed = N`; anything else is an error that names the key, so a typo is not silently ignored.
//! Only a regular file of at most [`MAX_FAULT_FILE`] octets is read ([`crate::named_file`]).
//!
//! What it does not do: parse the rules (they are parsed once, with the others, when the
//! configuration is checked; a broken one is then reported with the file and its place in
//! `rules`, from the [`RulesFile`] kept beside them), or decide the rules' order against
//! command-line rules (the caller does).

use std::path::{Path, PathBuf};

/// The largest fault file read: 1 MiB. A fault file is a scenario of a few rules, and every
/// rule of a point is tried in order on each of its commands; 1 MiB is thousands of rules
/// already, and the bound keeps a device or a runaway file from filling memory at start.
pub const MAX_FAULT_FILE: u64 = 1 << 20;

/// The most characters of a rule an error repeats.
const MAX_SHOWN_RULE: usize = 120;

/// Where the first rules of a rule list came from: a `--fault-file`, whose `rules` array
/// they are, in order. Kept beside the rules' texts so a rule that does not parse is named by
/// its file and its place (`rules[i]`) when they are parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesFile {
    /// The file, as given.
    pub path: PathBuf,
    /// How many of the rules, from the first, are the file's.
    pub rules: usize,
}

impl RulesFile {
    /// The prefix of an error about rule number `index` (of the whole list) with text `text`:
    /// the file and `rules[index]` for one of the file's rules, else `--fault "..."`.
    pub(super) fn origin(file: Option<&RulesFile>, index: usize, text: &str) -> String {
        let text = shown(text);
        match file {
            Some(file) if index < file.rules => {
                format!(
                    "--fault-file {}: rules[{index}] {text:?}",
                    file.path.display()
                )
            }
            _ => format!("--fault {text:?}"),
        }
    }
}

/// A rule as an error repeats it: a rule of 100 000 octets (a `reply=` too long) is named
/// by its start, so the error stays a line one can read.
pub(super) fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().count() > MAX_SHOWN_RULE {
        let start: String = text
            .chars()
            .take(MAX_SHOWN_RULE)
            .chain("...".chars())
            .collect();
        start.into()
    } else {
        text.into()
    }
}

/// Reads the rules (unparsed) and the seed from `path`.
pub(super) fn read_rules(path: &Path) -> Result<(Vec<String>, Option<u64>), String> {
    let shown = path.display();
    let text = crate::named_file::read_text(
        path,
        MAX_FAULT_FILE,
        "a fault file is a few rules, read whole at start",
    )
    .map_err(|e| format!("--fault-file {shown}: {e}"))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("--fault-file {shown}: not TOML: {e}"))?;
    let mut rules = Vec::new();
    let mut seed = None;
    for (key, value) in &table {
        match (key.as_str(), value) {
            ("rules", toml::Value::Array(items)) => {
                for item in items {
                    match item {
                        toml::Value::String(rule) => rules.push(rule.clone()),
                        other => {
                            return Err(format!(
                                "--fault-file {shown}: rules holds strings, not {}", other.type_str()
                            ))
                        }
                    }
                }
            }
            ("seed", toml::Value::Integer(n)) if *n >= 0 => seed = Some(*n as u64),
            _ => {
                return Err(format!(
                    "--fault-file {shown}: unexpected {key:?} (expected rules = [\"...\"] and seed = N)"
                ))
            }
        }
    }
    Ok((rules, seed))
}
