//! `--fault-file FILE`: fault rules kept in a TOML file, for rule sets too long for a command
//! line.
//!
//! The file holds `rules = ["...", ...]` (each in the `--fault` syntax) and an optional
//! `seed = N`; anything else is an error that names the key, so a typo is not silently ignored.
//!
//! Each rule is checked as it is read ([`super::rule`] parses it), so a broken one is reported
//! with the file, its place in `rules` and the reason, at start.
//!
//! What it does not do: decide the rules' order against command-line rules (the caller does).

use super::rule::Rule;
use std::path::Path;

/// Reads the rules and the seed from `path`.
pub(super) fn read_rules(path: &Path) -> Result<(Vec<String>, Option<u64>), String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("--fault-file {shown}: {e}"))?;
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
                        toml::Value::String(rule) => {
                            Rule::parse(rule).map_err(|e| {
                                format!("--fault-file {shown}: rules[{}] {rule:?}: {e}", rules.len())
                            })?;
                            rules.push(rule.clone());
                        }
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
