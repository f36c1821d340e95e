//! Resolves the `path::name` code spans of `docs/tour.md` against the source in `src/`, so the
//! tour cannot name a function, type, variant or field that no longer exists.
//!
//! The rules are the tour's own (stated at its top): a span whose first segment is a module
//! of the crate (`server::conn::Conn::ready`) is walked module by module through `src/`; a
//! span that starts with a type (`Session::take_input`, `Wait::Store`) names a type defined
//! somewhere in `src/`. What follows the module is a function, or a type and one member: a
//! method (in a file of the type's module with an `impl` or `trait` for it), an enum variant
//! or a field. Spans that are not paths (flags, generics, calls with arguments) are not
//! checked; spans that look like repository paths (`src/store/queues.rs`) must exist.

use std::path::{Path, PathBuf};

/// What the tour names, as found in its prose.
#[derive(Debug, PartialEq, Eq)]
pub enum Name {
    /// `a::b::C::d`, split at `::`.
    Item(Vec<String>),
    /// `src/x/y.rs`: a file or directory of the repository.
    File(String),
}

/// The inline code spans of `md` outside fenced blocks, each with the 1-based line it starts
/// on. A span may continue on the next line (Markdown joins them with a space).
pub fn code_spans(md: &str) -> Vec<(usize, String)> {
    let mut spans = Vec::new();
    let mut in_fence = false;
    let mut open: Option<(usize, String)> = None;
    for (index, line) in md.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            open = None;
            continue;
        }
        if in_fence {
            continue;
        }
        let mut rest = line;
        if let Some((_, text)) = &mut open {
            text.push(' ');
        }
        while let Some(tick) = rest.find('`') {
            match open.take() {
                Some((start, mut text)) => {
                    text.push_str(&rest[..tick]);
                    spans.push((start, text));
                }
                None => open = Some((index + 1, String::new())),
            }
            rest = &rest[tick + 1..];
        }
        if let Some((_, text)) = &mut open {
            text.push_str(rest);
        }
    }
    spans
}

/// What a code span names, if it names something the check can resolve.
pub fn name_of(span: &str) -> Option<Name> {
    let span = span.trim();
    let is_word = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !s.starts_with(|c: char| c.is_ascii_digit())
    };
    for top in ["src/", "tests/", "docs/", "benches/", "loadgen/"] {
        if span.starts_with(top) && !span.contains(' ') {
            return Some(Name::File(span.to_string()));
        }
    }
    let segments: Vec<&str> = span.split("::").collect();
    if segments.len() < 2 || !segments.iter().all(|s| is_word(s)) {
        return None;
    }
    Some(Name::Item(segments.iter().map(|s| s.to_string()).collect()))
}

/// The `.rs` files of a module: its own file, and for a directory module every file below.
fn module_files(file: &Path) -> Vec<PathBuf> {
    let dir = if file.file_name().is_some_and(|n| n == "mod.rs") {
        file.parent().map(Path::to_path_buf)
    } else {
        let dir = file.with_extension("");
        dir.is_dir().then_some(dir)
    };
    let mut files = vec![file.to_path_buf()];
    if let Some(dir) = dir {
        let mut stack = vec![dir];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") && path != file {
                    files.push(path);
                }
            }
        }
    }
    files.sort();
    files
}

/// The file of module `name` inside the module directory `dir`.
fn submodule(dir: &Path, name: &str) -> Option<PathBuf> {
    let flat = dir.join(format!("{name}.rs"));
    let nested = dir.join(name).join("mod.rs");
    [flat, nested].into_iter().find(|p| p.is_file())
}

/// The directory a module's submodules live in.
fn module_dir(file: &Path) -> PathBuf {
    if file.file_name().is_some_and(|n| n == "mod.rs") {
        file.parent().unwrap().to_path_buf()
    } else {
        file.with_extension("")
    }
}

/// Whether `text` has `word` with no identifier character on either side.
fn has_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// Whether `source` defines a type (struct, enum, trait or alias) called `name`.
fn defines_type(source: &str, name: &str) -> bool {
    source.lines().any(|line| {
        let code = line.trim_start();
        ["struct ", "enum ", "trait ", "type "].iter().any(|kind| {
            code.split(kind).nth(1).is_some_and(|rest| {
                has_word(
                    rest.split(['<', '(', '{', ';', ' ', ':'])
                        .next()
                        .unwrap_or(""),
                    name,
                )
            }) && !code.starts_with("//")
                && (code.starts_with(kind) || code.starts_with("pub"))
        })
    })
}

/// Whether `source` defines a function `name`.
fn defines_fn(source: &str, name: &str) -> bool {
    source.lines().any(|line| {
        let code = line.trim_start();
        !code.starts_with("//")
            && code.match_indices("fn ").any(|(at, _)| {
                let after = &code[at + 3..];
                after.starts_with(name)
                    && after[name.len()..].starts_with(['(', '<'])
                    && (at == 0 || code[..at].ends_with(' '))
            })
    })
}

/// Whether `source` has a variant or field `name` (a line starting with it).
fn defines_member(source: &str, name: &str) -> bool {
    source.lines().any(|line| {
        let code = line.trim_start();
        let code = code.strip_prefix("pub ").unwrap_or(code);
        let code = code.strip_prefix("pub(super) ").unwrap_or(code);
        let code = code.strip_prefix("pub(crate) ").unwrap_or(code);
        code.starts_with(name) && code[name.len()..].starts_with(['(', '{', ',', ':', ' '])
            || code == name
    })
}

/// Whether `ty` has member `member` in one of `files`: a method in a file with an `impl` or
/// `trait` for the type, or a variant or field in the file that defines it.
fn has_member(files: &[PathBuf], ty: &str, member: &str) -> bool {
    files.iter().any(|file| {
        let source = std::fs::read_to_string(file).unwrap();
        let about_type = source.lines().any(|line| {
            let code = line.trim_start();
            (code.starts_with("impl") || code.contains("trait ")) && has_word(code, ty)
        });
        (about_type && defines_fn(&source, member))
            || (defines_type(&source, ty) && defines_member(&source, member))
    })
}

/// Every `.rs` file under `dir`.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    // `mod.rs` of the directory itself does not exist; its listing is what is wanted.
    module_files(&dir.join("mod.rs"))
        .into_iter()
        .filter(|p| p.is_file())
        .collect()
}

/// Resolves `name` against the repository at `root` (with the crate's source in `src/`):
/// `Ok(())`, or why it does not resolve.
pub fn resolve(root: &Path, name: &Name) -> Result<(), String> {
    let segments = match name {
        Name::File(path) => {
            return if root.join(path).exists() {
                Ok(())
            } else {
                Err(format!("no file {path}"))
            };
        }
        Name::Item(segments) => segments,
    };
    let src = root.join("src");
    let starts_with_module = submodule(&src, &segments[0]).is_some();
    if !starts_with_module {
        if !segments[0].starts_with(|c: char| c.is_ascii_uppercase()) {
            return Ok(()); // another crate's path (mio::Poll): not ours to check
        }
        // A type named alone: it must be defined somewhere in src/, with the member.
        let (ty, rest) = (&segments[0], &segments[1..]);
        if rest.len() != 1 {
            return Err(format!("{} is not Type::member", segments.join("::")));
        }
        let defining: Vec<PathBuf> = all_files(&src)
            .into_iter()
            .filter(|f| defines_type(&std::fs::read_to_string(f).unwrap(), ty))
            .collect();
        if defining.is_empty() {
            return Err(format!("no type {ty} in src/"));
        }
        let found = defining
            .iter()
            .any(|file| has_member(&module_files(file), ty, &rest[0]));
        return if found {
            Ok(())
        } else {
            Err(format!("{ty} has no member {}", rest[0]))
        };
    }
    // Walk the modules as far as they go.
    let mut file = submodule(&src, &segments[0]).unwrap();
    let mut at = 1;
    while at < segments.len() && segments[at].starts_with(|c: char| c.is_ascii_lowercase()) {
        match submodule(&module_dir(&file), &segments[at]) {
            Some(next) => {
                file = next;
                at += 1;
            }
            None => break,
        }
    }
    let files = module_files(&file);
    let read = |f: &PathBuf| std::fs::read_to_string(f).unwrap();
    let path = segments.join("::");
    match &segments[at..] {
        [] => Ok(()),
        [item] if item.starts_with(|c: char| c.is_ascii_uppercase()) => {
            if files.iter().any(|f| defines_type(&read(f), item)) {
                Ok(())
            } else {
                Err(format!("{path}: no type {item} in {}", file.display()))
            }
        }
        [function] => {
            if defines_fn(&read(&file), function) {
                Ok(())
            } else {
                Err(format!(
                    "{path}: no function {function} in {}",
                    file.display()
                ))
            }
        }
        [ty, member] => {
            if !files.iter().any(|f| defines_type(&read(f), ty)) {
                return Err(format!("{path}: no type {ty} in {}", file.display()));
            }
            if has_member(&files, ty, member) {
                Ok(())
            } else {
                Err(format!("{path}: {ty} has no member {member}"))
            }
        }
        _ => Err(format!("{path}: too many segments after the module")),
    }
}
