//! The web UI driven as a user would in headless Chromium: `tests/ui/ui_chromium.py`
//! (Python Playwright with the system `chromium`) against the real binary with `--api`. It
//! opens the page, sees mail arrive live, checks that a message's script neither runs nor
//! loads anything, searches, reads the text/raw/envelope/headers tabs, deletes, creates a
//! per-test mailbox and sees its mail counted in the sidebar and alone when it is clicked, and
//! requires no console error; its screenshots land in `target/tmp/ui-screenshots/` for a person to look at.
//!
//! Needs `python3 -m pip install playwright` and `chromium` (CI's `.ci/run` installs both and
//! sets `FASTSMTPD_REQUIRE_UI_TEST=1`, so there the test cannot pass by skipping).

mod util;

use std::process::Command;

#[test]
fn the_web_ui_shows_mail_live_searches_reads_and_deletes_in_chromium() {
    let playwright = Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .status()
        .is_ok_and(|s| s.success());
    let chromium = std::path::Path::new("/usr/bin/chromium").exists();
    if !(playwright && chromium) {
        assert!(
            std::env::var_os("FASTSMTPD_REQUIRE_UI_TEST").is_none(),
            "FASTSMTPD_REQUIRE_UI_TEST is set but Playwright ({playwright}) or /usr/bin/chromium ({chromium}) is missing"
        );
        eprintln!("skipped: needs `pip install playwright` and /usr/bin/chromium");
        return;
    }
    let (mut server, smtp, api) = util::start_binary_with_api(1, "127.0.0.1", &[]);
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let output = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/ui/ui_chromium.py"
        ))
        .arg(format!("http://{api}"))
        .arg(smtp.to_string())
        .arg(&shots)
        .output()
        .expect("python3 runs");
    server.kill();
    // Its figures (the sidebar's octets per refresh) for `--nocapture`.
    print!("{}", String::from_utf8_lossy(&output.stdout));
    assert!(
        output.status.success(),
        "the UI test failed:\n{}\n{}\nserver: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        server.stderr()
    );
}
