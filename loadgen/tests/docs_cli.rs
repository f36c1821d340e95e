//! smtp-loadgen's half of the docs check (fastsmtpd's is `tests/docs.rs`): every flag of
//! `smtp-loadgen --help` and of each subcommand's `--help` has a row in `docs/cli.md`, every
//! row names a real flag, and every subcommand has its section.

#[path = "../../tests/cli_docs/mod.rs"]
mod cli_docs;

use std::path::Path;

#[test]
fn every_smtp_loadgen_flag_is_documented_in_docs_cli_md_and_every_documented_flag_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (docs, file) = cli_docs::read_docs(&root);
    let binary = Path::new(env!("CARGO_BIN_EXE_smtp-loadgen"));
    let errors = cli_docs::check_binary(binary, "smtp-loadgen", &docs, &file);
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));
}
