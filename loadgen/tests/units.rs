//! One grammar for durations and sizes in both binaries: fastsmtpd's parsers
//! (`fastsmtpd::units`) read every input of smtp-loadgen's table (`loadgen/src/units/cases.rs`,
//! which smtp-loadgen's own parsers are tested against) the same way, refusals included, and
//! refuse with the same words as smtp-loadgen's parsers (`loadgen/src/units/mod.rs`, loaded
//! here with #[path]: smtp-loadgen is a binary, with no library to link).

#[path = "../src/units/mod.rs"]
#[allow(dead_code)]
mod loadgen_units;

use loadgen_units::cases;
use std::time::Duration;

#[test]
fn fastsmtpd_reads_every_duration_and_size_of_the_shared_table_as_smtp_loadgen_does() {
    let mut differences = Vec::new();
    for &(text, expected) in cases::DURATION_CASES {
        let server = fastsmtpd::units::parse_duration(text).ok();
        let table = expected.map(|(secs, nanos)| Duration::new(secs, nanos));
        if server != table {
            differences.push(format!(
                "duration {text:?}: fastsmtpd {server:?}, table {table:?}"
            ));
        }
    }
    for &(text, expected) in cases::SIZE_CASES {
        let server = fastsmtpd::units::parse_bytes(text).ok();
        if server != expected {
            differences.push(format!(
                "size {text:?}: fastsmtpd {server:?}, table {expected:?}"
            ));
        }
    }
    assert!(differences.is_empty(), "\n{}", differences.join("\n"));
}

#[test]
fn both_binaries_refuse_with_the_same_words() {
    let mut differences = Vec::new();
    for &(text, _) in cases::DURATION_CASES {
        let server = fastsmtpd::units::parse_duration(text).err();
        let loadgen = loadgen_units::parse_duration(text).err();
        if server != loadgen {
            differences.push(format!(
                "duration {text:?}: fastsmtpd {server:?}, smtp-loadgen {loadgen:?}"
            ));
        }
    }
    for &(text, _) in cases::SIZE_CASES {
        let server = fastsmtpd::units::parse_bytes(text).err();
        let loadgen = loadgen_units::parse_bytes(text).err();
        if server != loadgen {
            differences.push(format!(
                "size {text:?}: fastsmtpd {server:?}, smtp-loadgen {loadgen:?}"
            ));
        }
    }
    assert!(differences.is_empty(), "\n{}", differences.join("\n"));
}
