//! The relay's next-hop choice from the command line: `--relay-order spread` shares the
//! connections over the healthy next hops, `in-order` (the default) keeps the later ones as
//! fallbacks; `--relay-connections` and `--relay-messages-per-connection` are checked at
//! start. Real binaries over loopback, bounded waits.

mod util;

use std::process::Command;
use util::relay::{numbered, send, start_relay, Sink};

#[test]
fn spread_shares_the_mail_over_both_next_hops_and_in_order_keeps_the_second_idle() {
    for (order, both) in [("spread", true), ("in-order", false)] {
        let dir = util::scratch_dir(&format!("relay-hops-{order}"));
        let first = Sink::start(&dir.join("first"), &[], &[]);
        let second = Sink::start(&dir.join("second"), &[], &[]);
        // One message per connection: every message opens a connection of its own.
        let (_relay, relay) = start_relay(
            &dir,
            &[first.addr, second.addr],
            &[
                "--relay-order",
                order,
                "--relay-messages-per-connection",
                "1",
            ],
        );
        for n in 0..20 {
            let reply = send(relay, "a@x.test", &["r@y.test"], &numbered(n));
            assert!(reply.starts_with("250 "), "{reply}");
        }
        let start = std::time::Instant::now();
        while first.arrived().len() + second.arrived().len() < 20 {
            assert!(
                start.elapsed() < util::relay::SETTLE_WAIT,
                "not all arrived"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let (a, b) = (first.arrived().len(), second.arrived().len());
        assert_eq!(a + b, 20);
        if both {
            assert!(a > 0 && b > 0, "spread: {a} and {b}");
        } else {
            assert_eq!((a, b), (20, 0), "in order: the second is a fallback");
        }
    }
}

#[test]
fn bad_connection_limits_stop_the_server_at_start() {
    for args in [
        ["--relay-connections", "0"],
        ["--relay-connections", "1001"],
        ["--relay-messages-per-connection", "0"],
        ["--relay-order", "random"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_fastsmtpd"))
            .args(["--listen", &util::free_local_addr()])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(args[0]), "{args:?}: {stderr}");
    }
}
