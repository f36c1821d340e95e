//! smtp-loadgen's rooms, checked (the rule is stated in `src/lib.rs`):
//! * no import cycle between the modules of `src/` (each file a module; a file's inline
//!   modules are part of it; `#[cfg(test)]` code is left out: it is not part of the built
//!   program, and tests may reach across);
//! * layers, lowest first: `units` and `stdout`; the `drive` wing; the `report` wing; the
//!   hall (everything else). A module imports only from its own layer or lower ones, so
//!   `drive` never imports `report`;
//! * `report` reads `drive` only through the record types: `drive::record`, `drive::slots`
//!   and `drive::client::Stage`.
//!
//! Imports are read from the source text: every path that starts with `crate::`, `super::`,
//! `self::` or a child module's name, `use` groups (`{a, b::c}`) expanded, resolved to the
//! deepest module of `src/` it names. A change that bends a rule fails here with the file,
//! line and path that bent it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path below the crate root (`["drive", "engine"]`; the root is empty).
type ModPath = Vec<String>;

/// The layers, lowest first: a module's layer is the first that lists its first segment;
/// modules no layer lists are in the hall, above the rest.
const LAYERS: &[&[&str]] = &[&["units", "stdout"], &["drive"], &["report"]];

/// What `report` may import from `drive` (a path that starts with one of these).
const REPORT_READS_FROM_DRIVE: &[&[&str]] = &[
    &["drive", "record"],
    &["drive", "slots"],
    &["drive", "client", "Stage"],
];

/// One import found in a file: the path as written (made absolute), where, and the module
/// it resolves to.
#[derive(Debug, Clone)]
struct Import {
    /// The absolute path, below the crate root.
    path: ModPath,
    /// The module of `src/` it resolves to (the deepest one the path names).
    target: ModPath,
    /// 1-based line of the path's first segment.
    line: usize,
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// The module a file under `src/` holds (`drive/mod.rs` and `drive.rs`: `["drive"]`;
/// `lib.rs`: the root); `None` for the binary's `main.rs`.
fn module_of(relative: &Path) -> Option<ModPath> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    match stem {
        "main" if parts.is_empty() => None,
        "lib" if parts.is_empty() => Some(Vec::new()),
        "mod" => Some(parts),
        _ => {
            parts.push(stem.to_string());
            Some(parts)
        }
    }
}

/// `text` with comments, string literals and character literals blanked (line ends kept),
/// so that only code is scanned.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            out.push(b' ');
            for &x in &b[i + 1..=j] {
                blank(&mut out, x);
            }
            i = j + 1;
            while i < b.len() && !b[i..].starts_with(&close) {
                blank(&mut out, b[i]);
                i += 1;
            }
            let n = close.len().min(b.len() - i);
            out.extend(std::iter::repeat_n(b' ', n));
            i += n;
        } else if c == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    out.push(b' ');
                    i += 1;
                }
                if i < b.len() {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
            out.push(b' ');
            i += 1;
        } else if c == b'\'' {
            // A character literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&x| x == b'\'')
                    .map(|p| i + 2 + p)
            } else {
                let ch_len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch_len) == Some(&b'\'')).then_some(i + 1 + ch_len)
            };
            match end {
                Some(end) => {
                    out.extend(std::iter::repeat_n(b' ', end + 1 - i));
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A token of code: an identifier (or keyword), `::`, or one other character.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An identifier or keyword.
    Ident(String),
    /// `::`.
    Path,
    /// Any other character that is not white space.
    Punct(char),
}

/// The tokens of `code` (see [`code_only`]) with their 1-based lines.
fn tokens(code: &str) -> Vec<(Tok, usize)> {
    let mut toks = Vec::new();
    let mut line = 1;
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
        } else if c.is_whitespace() {
        } else if c.is_alphanumeric() || c == '_' {
            let mut ident = c.to_string();
            while let Some(&n) = chars.peek() {
                if n.is_alphanumeric() || n == '_' {
                    ident.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            toks.push((Tok::Ident(ident), line));
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            toks.push((Tok::Path, line));
        } else {
            toks.push((Tok::Punct(c), line));
        }
    }
    toks
}

/// Index just past the item that starts at `i` (up to its `;`, or its balanced `{..}`
/// block, whichever comes first), for skipping `#[cfg(test)]` items.
fn skip_item(toks: &[(Tok, usize)], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < toks.len() {
        match toks[i].0 {
            Tok::Punct(';') if depth == 0 => return i + 1,
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// Whether `#[cfg(test)]` starts at `i`.
fn is_cfg_test(toks: &[(Tok, usize)], i: usize) -> bool {
    let want = [
        Tok::Punct('#'),
        Tok::Punct('['),
        Tok::Ident("cfg".into()),
        Tok::Punct('('),
        Tok::Ident("test".into()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    toks.len() >= i + want.len()
        && toks[i..i + want.len()]
            .iter()
            .zip(&want)
            .all(|(a, b)| a.0 == *b)
}

/// Parses the path that starts at `i` (an identifier followed by `::`), expanding `use`
/// groups; returns the paths (as written) and the index after them.
fn parse_path(toks: &[(Tok, usize)], mut i: usize, prefix: &[String]) -> (Vec<Vec<String>>, usize) {
    let mut path = prefix.to_vec();
    loop {
        match toks.get(i).map(|t| &t.0) {
            Some(Tok::Ident(name)) => {
                path.push(name.clone());
                i += 1;
            }
            Some(Tok::Punct('*')) => return (vec![path], i + 1),
            Some(Tok::Punct('{')) => {
                // A group: comma-separated sub-paths, each relative to `path`.
                let mut all = Vec::new();
                i += 1;
                loop {
                    match toks.get(i).map(|t| &t.0) {
                        Some(Tok::Punct('}')) => return (all, i + 1),
                        Some(Tok::Punct(',')) => i += 1,
                        Some(Tok::Ident(s)) if s == "self" => {
                            all.push(path.clone());
                            i += 1;
                        }
                        Some(Tok::Ident(s)) if s == "as" => i += 2,
                        Some(_) => {
                            let (sub, next) = parse_path(toks, i, &path);
                            all.extend(sub);
                            i = next.max(i + 1);
                        }
                        None => return (all, i),
                    }
                }
            }
            _ => return (vec![path], i),
        }
        if toks.get(i).map(|t| &t.0) == Some(&Tok::Path) {
            i += 1;
        } else {
            return (vec![path], i);
        }
    }
}

/// The imports of the file holding module `module`: every path resolved against `modules`
/// (the modules of `src/`). Paths into the file's own module (or its inline modules) and
/// into nothing of `src/` (std, other crates) are left out, as is `#[cfg(test)]` code.
fn imports(code: &str, module: &ModPath, modules: &BTreeSet<ModPath>) -> Vec<Import> {
    let toks = tokens(code);
    let mut found = Vec::new();
    // The inline modules the scan is in, with the brace depth each opened at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        if is_cfg_test(&toks, i) {
            i = skip_item(&toks, i + 7);
            continue;
        }
        match &toks[i].0 {
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
                continue;
            }
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
                continue;
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let (Some((Tok::Ident(name), _)), Some((Tok::Punct('{'), _))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    inline.push((name.clone(), depth + 1));
                }
                i += 1;
                continue;
            }
            Tok::Ident(_) => {}
            _ => {
                i += 1;
                continue;
            }
        }
        // A path starts at an identifier followed by `::` and not preceded by one.
        let preceded = i > 0 && toks[i - 1].0 == Tok::Path;
        let followed = toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Path);
        if preceded || !followed {
            i += 1;
            continue;
        }
        let line = toks[i].1;
        let (paths, next) = parse_path(&toks, i, &[]);
        i = next.max(i + 1);
        let here: ModPath = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(n, _)| n.clone()))
            .collect();
        for written in paths {
            let Some(path) = absolute(&written, &here, modules) else {
                continue;
            };
            let target = (0..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| modules.contains(p))
                .unwrap_or_default();
            // Into its own file (the module, or an inline module of it).
            if target == *module || path.is_empty() {
                continue;
            }
            found.push(Import { path, target, line });
        }
    }
    found
}

/// `written` (a path as written in module `here`) made absolute, or `None` when it names
/// nothing of the crate (std, another crate, a local name).
fn absolute(written: &[String], here: &ModPath, modules: &BTreeSet<ModPath>) -> Option<ModPath> {
    let first = written.first()?;
    let mut path = match first.as_str() {
        "crate" => return Some(written[1..].to_vec()),
        "self" => here.clone(),
        "super" => {
            let mut base = here.clone();
            let mut rest = written;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            return Some(base);
        }
        // A child module named relatively (`use results::Results` in `report/mod.rs`).
        name => {
            let mut child = here.clone();
            child.push(name.to_string());
            if !modules.contains(&child) {
                return None;
            }
            here.clone()
        }
    };
    if first == "self" {
        path.extend(written[1..].iter().cloned());
    } else {
        path.extend(written.iter().cloned());
    }
    Some(path)
}

/// The layer of `module` (see [`LAYERS`]).
fn layer(module: &ModPath) -> usize {
    let first = module.first().map(String::as_str).unwrap_or("");
    LAYERS
        .iter()
        .position(|names| names.contains(&first))
        .unwrap_or(LAYERS.len())
}

/// The files of `src/` by module (test-only files left out), with their code.
fn sources() -> BTreeMap<ModPath, (PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut all = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap().to_path_buf();
        if let Some(module) = module_of(&relative) {
            let code = code_only(&std::fs::read_to_string(&file).unwrap());
            all.insert(module, (relative, code));
        }
    }
    // Files declared `#[cfg(test)] mod x;` are tests: not part of the program.
    let mut test_only = BTreeSet::new();
    for (module, (_, code)) in &all {
        let toks = tokens(code);
        for i in 0..toks.len() {
            if is_cfg_test(&toks, i) {
                let rest = &toks[i + 7..];
                let at = usize::from(
                    rest.first()
                        .is_some_and(|t| t.0 == Tok::Ident("pub".into())),
                );
                if let (
                    Some((Tok::Ident(m), _)),
                    Some((Tok::Ident(name), _)),
                    Some((Tok::Punct(';'), _)),
                ) = (rest.get(at), rest.get(at + 1), rest.get(at + 2))
                {
                    if m == "mod" {
                        let mut child = module.clone();
                        child.push(name.clone());
                        test_only.insert(child);
                    }
                }
            }
        }
    }
    all.retain(|m, _| !test_only.iter().any(|t| m.starts_with(t)));
    all
}

/// The import graph: for each module, its imports.
fn graph() -> (BTreeMap<ModPath, Vec<Import>>, BTreeMap<ModPath, PathBuf>) {
    let sources = sources();
    let modules: BTreeSet<ModPath> = sources.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    let mut files = BTreeMap::new();
    for (module, (file, code)) in &sources {
        graph.insert(module.clone(), imports(code, module, &modules));
        files.insert(module.clone(), file.clone());
    }
    (graph, files)
}

/// A module path as Rust writes it.
fn name(module: &ModPath) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

/// An import cycle among `edges`, as the modules along it, if there is one.
fn find_cycle(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Option<Vec<ModPath>> {
    /// Depth-first search: 1 on the current path, 2 done.
    fn visit(
        node: &ModPath,
        edges: &BTreeMap<ModPath, BTreeSet<ModPath>>,
        state: &mut BTreeMap<ModPath, u8>,
        stack: &mut Vec<ModPath>,
    ) -> Option<Vec<ModPath>> {
        state.insert(node.clone(), 1);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next) {
                Some(1) => {
                    let from = stack.iter().position(|m| m == next).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(cycle) = visit(next, edges, state, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if !state.contains_key(node) {
            if let Some(cycle) = visit(node, edges, &mut state, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

/// The module-to-module edges of `graph`.
fn edges(graph: &BTreeMap<ModPath, Vec<Import>>) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    graph
        .iter()
        .map(|(m, imports)| {
            (
                m.clone(),
                imports.iter().map(|i| i.target.clone()).collect(),
            )
        })
        .collect()
}

/// The module paths of a list of names (`"drive::engine"`).
fn path(text: &str) -> ModPath {
    text.split("::").map(String::from).collect()
}

#[test]
fn the_scan_sees_the_imports_it_must() {
    let (graph, _) = graph();
    let edges = edges(&graph);
    assert!(edges.len() >= 35, "only {} modules found", edges.len());
    for (from, to) in [
        ("drive::engine", "drive::client"),
        ("drive::engine", "drive::pacer"),
        ("report::results", "report::codec"),
        ("report::interval_log", "report::codec"),
        ("report::render", "drive::record"),
        ("runner", "drive::engine"),
        // A room of a directory module (`drive/engine/wire.rs`), and its parent.
        ("drive::engine::wire", "drive::reply"),
        ("drive::engine::wire", "drive::engine"),
        ("commands", "report"),
        // A relative child path in a `mod.rs`: `pub use results::Results`.
        ("report", "report::results"),
    ] {
        assert!(
            edges[&path(from)].contains(&path(to)),
            "{from} -> {to} not seen; {from} imports {:?}",
            edges[&path(from)].iter().map(name).collect::<Vec<_>>()
        );
    }
    // Test code is not scanned: `drive::client`'s tests (a file of their own) and
    // `report`'s inline tests import much more.
    assert!(!edges.contains_key(&path("drive::client::tests")));
}

#[test]
fn no_import_cycle_among_loadgen_modules() {
    let (graph, files) = graph();
    if let Some(cycle) = find_cycle(&edges(&graph)) {
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|w| {
                let import = graph[&w[0]].iter().find(|i| i.target == w[1]).unwrap();
                format!(
                    "  {} -> {} ({}:{}: {})",
                    name(&w[0]),
                    name(&w[1]),
                    files[&w[0]].display(),
                    import.line,
                    name(&import.path)
                )
            })
            .collect();
        panic!("an import cycle in loadgen/src:\n{}", steps.join("\n"));
    }
}

#[test]
fn no_module_imports_from_a_higher_layer_and_report_reads_drive_only_through_records() {
    let (graph, files) = graph();
    let mut bent = Vec::new();
    for (module, imports) in &graph {
        for import in imports {
            let why = if layer(&import.target) > layer(module) {
                Some("a lower layer imports a higher one")
            } else if module.first().is_some_and(|s| s == "report")
                && import.target.first().is_some_and(|s| s == "drive")
                && !REPORT_READS_FROM_DRIVE.iter().any(|allowed| {
                    import
                        .path
                        .starts_with(&allowed.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                })
            {
                Some("report reads drive only through its record types")
            } else {
                None
            };
            if let Some(why) = why {
                bent.push(format!(
                    "{}:{}: {} imports {} ({why})",
                    files[module].display(),
                    import.line,
                    name(module),
                    name(&import.path)
                ));
            }
        }
    }
    assert!(
        bent.is_empty(),
        "the rooms' rule is bent:\n{}",
        bent.join("\n")
    );
}

#[test]
fn the_checker_finds_a_cycle_a_group_import_and_ignores_test_code() {
    let modules: BTreeSet<ModPath> = ["a", "a::b", "a::c", "d"].iter().map(|m| path(m)).collect();
    let b = code_only(
        "use super::{c::Thing, self as parent};\n\
         // use crate::d; (a comment)\n\
         const S: &str = \"crate::d::X\";\n\
         #[cfg(test)]\nmod tests { use crate::d::Y; }\n",
    );
    let c = code_only("fn f() { crate::a::b::g(); let ch = '{'; }\n");
    let mut graph = BTreeMap::new();
    graph.insert(path("a::b"), imports(&b, &path("a::b"), &modules));
    graph.insert(path("a::c"), imports(&c, &path("a::c"), &modules));
    let e = edges(&graph);
    assert_eq!(
        e[&path("a::b")],
        [path("a"), path("a::c")]
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(e[&path("a::c")], [path("a::b")].into_iter().collect());
    let cycle = find_cycle(&e).expect("a::b -> a::c -> a::b");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(layer(&path("drive::engine")), 1);
    assert_eq!(layer(&path("report::codec")), 2);
    assert_eq!(layer(&path("settings")), 3);
}
