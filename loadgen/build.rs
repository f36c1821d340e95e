//! Embeds the git commit smtp-loadgen is built from, for the provenance every report states
//! (`SMTP_LOADGEN_COMMIT`: the short hash, `-dirty` when tracked files differ from it).
//!
//! `SMTP_LOADGEN_COMMIT` set in the build's environment wins (a packager who knows the commit
//! of a tarball). Otherwise `git` is asked; without git or outside a checkout (a source
//! tarball, a crates.io package) the commit is `unknown`, and the build goes on.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SMTP_LOADGEN_COMMIT");
    // Our own sources: an edit can make the tree dirty (listing any path turns off cargo's
    // default of re-running on every change in the package, so list them).
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    let commit = match std::env::var("SMTP_LOADGEN_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_string(),
        _ => from_git().unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env=SMTP_LOADGEN_COMMIT={commit}");
}

/// Runs `git ARGS` in the package's directory; its trimmed output if it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The short commit hash, with `-dirty` if tracked files changed; `None` outside a checkout.
fn from_git() -> Option<String> {
    // A tarball unpacked inside some other checkout is not that checkout's commit: our own
    // build script must be a file git tracks there.
    git(&["ls-files", "--error-unmatch", "build.rs"])?;
    let hash = git(&["rev-parse", "--short", "HEAD"]).filter(|h| !h.is_empty())?;
    // Re-run when HEAD moves: a commit, a checkout, a branch's ref updated.
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let git_dir = PathBuf::from(git_dir);
        watch(&git_dir.join("HEAD"));
        watch(&git_dir.join("index"));
        if let (Some(reference), Some(common)) = (
            git(&["rev-parse", "--symbolic-full-name", "HEAD"]),
            git(&["rev-parse", "--git-common-dir"]),
        ) {
            let common = Path::new(&common);
            let common = if common.is_absolute() {
                common.to_path_buf()
            } else {
                Path::new(&std::env::var_os("CARGO_MANIFEST_DIR")?).join(common)
            };
            watch(&common.join(&reference));
            watch(&common.join("packed-refs"));
        }
    }
    // Tracked files only: untracked ones (build output, scratch files) are not the source.
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|status| !status.is_empty());
    Some(if dirty { format!("{hash}-dirty") } else { hash })
}

/// Asks cargo to re-run this script when `path` changes (if it exists).
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
