//! The import graph of a crate's modules, read from its source, and the two rules checked on
//! it: rooms import only rooms in lower layers, and no module imports around a circle.
//!
//! What it does: walk a source directory (`src/`, `loadgen/src/`), give each file its module
//! path (`store/sink.rs` is `store::sink`, `store/mod.rs` and `metrics.rs` are `store` and
//! `metrics`), and collect every `crate::a::b` and `super::x` path in its code (not in
//! comments, and not in the `#[cfg(test)]` tail of a file) as an import of the module it
//! names. Two modules are compared under their nearest common parent: a file of
//! `store::sink` naming `wake::Notify` is the room `store` importing the room `wake`; a file
//! of `report::results` naming `super::interval_log` is `results` importing `interval_log`
//! inside `report`. A module naming its own parent or child is not counted (a parent
//! re-exports its children's items; children use their parent's).
//!
//! What it does not do: run the compiler (the paths are read as text, which the crate's
//! style makes exact: every cross-module import is spelled from `crate::` or `super::`), or
//! know about macros that expand to paths.
//!
//! Shared by `tests/architecture.rs` and `loadgen/tests/architecture.rs` (through
//! `#[path]`), so both crates are held to the same rules by one reader.

#![allow(dead_code)] // each test file uses a part

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One import: a module of `from` names something in `to` (both module paths from the
/// crate root), at `file:line`.
#[derive(Debug, Clone)]
pub struct Import {
    /// The importing module.
    pub from: Vec<String>,
    /// The module named.
    pub to: Vec<String>,
    /// Where.
    pub file: PathBuf,
    /// The line, from 1.
    pub line: usize,
    /// The line's text, trimmed.
    pub text: String,
}

impl Import {
    /// `file:line: text`, for a failure message.
    pub fn place(&self) -> String {
        format!("{}:{}: {}", self.file.display(), self.line, self.text)
    }
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap_or_else(|e| panic!("{}: {e}", at.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The module path of `file` under the crate root `root` (`lib.rs` and `main.rs` are the
/// root itself).
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(root).unwrap();
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    let at_root = parts.is_empty() && (stem == "lib" || stem == "main");
    if stem != "mod" && !at_root {
        parts.push(stem.to_string());
    }
    parts
}

/// `line` without a `//` comment (one outside a string literal: quotes before it are even).
fn code_of(line: &str) -> &str {
    let mut from = 0;
    while let Some(at) = line[from..].find("//") {
        let at = from + at;
        if line[..at].matches('"').count() % 2 == 0 {
            return &line[..at];
        }
        from = at + 2;
    }
    line
}

/// The identifiers of a path starting at `rest` (after `crate::` or `super::`), up to the
/// first character that cannot continue it: `a::b::C` gives `[a, b, C]`.
fn path_after(rest: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = rest;
    loop {
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        parts.push(rest[..end].to_string());
        match rest[end..].strip_prefix("::") {
            Some(next) => rest = next,
            None => break,
        }
    }
    parts
}

/// Whether `c` may stand just before a path (so `crate::` is not the tail of a longer name).
fn starts_path(before: Option<char>) -> bool {
    before.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
}

/// The text of `tree` split at its top-level commas (not those inside `{}`).
fn top_level(tree: &str) -> Vec<&str> {
    let (mut depth, mut from, mut parts) = (0, 0, Vec::new());
    for (at, c) in tree.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&tree[from..at]);
                from = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&tree[from..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// The paths a `use` tree names: `a::{b, c::{d, self}}` gives `a::b`, `a::c::d`, `a::c`.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim();
    let tree = tree.split(" as ").next().unwrap_or(tree).trim();
    let (head, group) = match tree.find('{') {
        Some(open) => (
            &tree[..open],
            Some(&tree[open + 1..tree.rfind('}').unwrap_or(tree.len())]),
        ),
        None => (tree, None),
    };
    let prefix: Vec<String> = head
        .split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "*")
        .map(str::to_string)
        .collect();
    let Some(group) = group else {
        return vec![prefix];
    };
    let mut paths = Vec::new();
    for part in top_level(group) {
        for tail in expand(part) {
            let mut path = prefix.clone();
            path.extend(tail.into_iter().filter(|s| s != "self"));
            paths.push(path);
        }
    }
    paths
}

/// The module path a path written in module `from` starts from, with the rest of the path:
/// `crate::a::b` and `super::c` resolve; others (extern crates, children) give `None`.
fn resolve(from: &[String], path: &[String]) -> Option<Vec<String>> {
    let first = path.first()?;
    match first.as_str() {
        "crate" | "$crate" => Some(path[1..].to_vec()),
        "super" => {
            let mut base = from.to_vec();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            Some(base)
        }
        _ => None,
    }
}

/// Every import in the crate whose root is `root` (see the module docs).
pub fn imports(root: &Path) -> Vec<Import> {
    let files = rust_files(root);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(root, f)).collect();
    // The longest prefix of `path` that is a module (items are not modules).
    let module_named = |path: &[String]| -> Vec<String> {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|prefix| modules.contains(prefix))
            .unwrap_or_default()
    };
    let mut found = Vec::new();
    for file in &files {
        let from = module_of(root, file);
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut index = 0;
        while index < lines.len() {
            let line = lines[index];
            let first = index;
            index += 1;
            if line.trim_start().starts_with("#[cfg(test)]") {
                break; // the tests at the end of a file: not the module's own imports
            }
            let code = code_of(line).trim();
            let mut named: Vec<Vec<String>> = Vec::new();
            let use_tree = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
                .iter()
                .find_map(|start| code.strip_prefix(start));
            if let Some(tree) = use_tree {
                // A `use` statement, possibly over several lines.
                let mut statement = tree.to_string();
                while !statement.contains(';') && index < lines.len() {
                    statement.push(' ');
                    statement.push_str(code_of(lines[index]).trim());
                    index += 1;
                }
                let statement = statement.trim_end().trim_end_matches(';');
                named.extend(expand(statement).iter().filter_map(|p| resolve(&from, p)));
            } else {
                for prefix in ["crate::", "super::"] {
                    for (at, _) in code.match_indices(prefix) {
                        let before = code[..at].chars().next_back();
                        if !starts_path(before.filter(|c| *c != '$')) {
                            continue; // the tail of a longer path (`super::super::`)
                        }
                        let mut path = vec![prefix.trim_end_matches(':').to_string()];
                        path.extend(path_after(&code[at + prefix.len()..]));
                        named.extend(resolve(&from, &path));
                    }
                }
            }
            for path in named {
                let to = module_named(&path);
                let related = to.starts_with(&from) || from.starts_with(&to);
                if !related {
                    found.push(Import {
                        from: from.clone(),
                        to,
                        file: file.clone(),
                        line: first + 1,
                        text: line.trim().to_string(),
                    });
                }
            }
        }
    }
    found
}

/// For an import, the two sibling modules it joins: the children of the nearest common
/// parent that hold each end, with that parent.
pub fn siblings(import: &Import) -> (Vec<String>, String, String) {
    let common = import
        .from
        .iter()
        .zip(&import.to)
        .take_while(|(a, b)| a == b)
        .count();
    (
        import.from[..common].to_vec(),
        import.from[common].clone(),
        import.to[common].clone(),
    )
}

/// The layer table of a crate root's docs: rows `//! | N | `a`, `b` |` under a `# Layers`
/// heading, as a map from room to layer.
pub fn layer_table(root_file: &Path) -> BTreeMap<String, u32> {
    let text = std::fs::read_to_string(root_file).unwrap();
    let mut table = BTreeMap::new();
    let mut in_section = false;
    for line in text.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.trim();
        if doc.starts_with('#') {
            in_section = doc == "# Layers";
            continue;
        }
        if !in_section {
            continue;
        }
        let cells: Vec<&str> = doc.split('|').map(str::trim).collect();
        let [_, layer, rooms, ..] = cells[..] else {
            continue;
        };
        let Ok(layer) = layer.parse::<u32>() else {
            continue;
        };
        for room in rooms.split(',') {
            let room = room.trim().trim_matches('`');
            assert!(
                table.insert(room.to_string(), layer).is_none(),
                "{room} is in two layers"
            );
        }
    }
    table
}

/// The imports between top-level rooms that do not go to a lower layer, as `file:line`
/// messages. A room missing from the table is reported too.
pub fn layer_violations(imports: &[Import], layers: &BTreeMap<String, u32>) -> Vec<String> {
    let mut bent = Vec::new();
    for import in imports {
        let (parent, from, to) = siblings(import);
        if !parent.is_empty() {
            continue;
        }
        match (layers.get(&from), layers.get(&to)) {
            (Some(a), Some(b)) if b < a => {}
            (Some(a), Some(b)) => bent.push(format!(
                "{} ({from}, layer {a}, imports {to}, layer {b})",
                import.place()
            )),
            _ => bent.push(format!(
                "{} ({from} or {to} is in no layer of the table)",
                import.place()
            )),
        }
    }
    bent
}

/// Circles among sibling modules (under any one parent), each as the modules around it and
/// one `file:line` per step.
pub fn cycles(imports: &[Import]) -> Vec<String> {
    // Per parent: edges between its children, with one import as the witness.
    let mut graphs: BTreeMap<Vec<String>, BTreeMap<String, BTreeMap<String, &Import>>> =
        BTreeMap::new();
    for import in imports {
        let (parent, from, to) = siblings(import);
        graphs
            .entry(parent)
            .or_default()
            .entry(from)
            .or_default()
            .entry(to)
            .or_insert(import);
    }
    let mut found = Vec::new();
    for (parent, graph) in &graphs {
        // Depth-first search for a back edge, from every node in turn.
        let mut done: BTreeSet<&String> = BTreeSet::new();
        for start in graph.keys() {
            let mut path: Vec<&String> = Vec::new();
            visit(start, graph, &mut path, &mut done, parent, &mut found);
        }
    }
    found
}

fn visit<'g>(
    node: &'g String,
    graph: &'g BTreeMap<String, BTreeMap<String, &Import>>,
    path: &mut Vec<&'g String>,
    done: &mut BTreeSet<&'g String>,
    parent: &[String],
    found: &mut Vec<String>,
) {
    if done.contains(node) {
        return;
    }
    if let Some(at) = path.iter().position(|n| *n == node) {
        let circle: Vec<&String> = path[at..].to_vec();
        let mut steps = Vec::new();
        for (i, from) in circle.iter().enumerate() {
            let to = circle[(i + 1) % circle.len()];
            steps.push(format!("  {from} -> {to}: {}", graph[*from][to].place()));
        }
        let names: Vec<&str> = circle.iter().map(|s| s.as_str()).collect();
        found.push(format!(
            "in {}: {} -> {}\n{}",
            if parent.is_empty() {
                "the crate root".to_string()
            } else {
                parent.join("::")
            },
            names.join(" -> "),
            names[0],
            steps.join("\n")
        ));
        return;
    }
    path.push(node);
    if let Some(next) = graph.get(node) {
        for to in next.keys() {
            visit(to, graph, path, done, parent, found);
        }
    }
    path.pop();
    done.insert(node);
}
