//! The queue tools' text: `queue list` as `postqueue -p` prints it, `queue show`, and `queue
//! shape` as Postfix's `qshape` counts (age buckets in minutes, rows per recipient domain or
//! next hop, the total first).
//!
//! What it does: pure writers over [`MessageInfo`]s and the [`Shape`] counter. What it does
//! not do: reach the queue, or choose JSON (the tool's job).

use super::model::{MessageInfo, QueueState};
use crate::relay::dsn::field::date;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// `qshape`'s age buckets, their upper bounds in minutes: a recipient younger than 5 minutes
/// counts under `5`, one from 5 to 10 under `10`, ..., one older than 1280 under `1280+`.
pub const SHAPE_BUCKET_MINUTES: [u64; 9] = [5, 10, 20, 40, 80, 160, 320, 640, 1280];

/// How many age columns a row has (the buckets and `1280+`).
pub const SHAPE_COLUMNS: usize = SHAPE_BUCKET_MINUTES.len() + 1;

/// The header line of `queue list`.
const LIST_HEADER: &str =
    "-Queue ID-        --Size-- -------Arrival Time----------- -Sender/Recipient-------\n";
/// Where the recipients and reasons of `queue list` start, in columns.
const LIST_INDENT: usize = 58;

/// The column of an age: the first bucket whose bound it is under, else the last.
pub fn shape_column(age_ms: u64) -> usize {
    SHAPE_BUCKET_MINUTES
        .iter()
        .position(|&minutes| age_ms < minutes * 60_000)
        .unwrap_or(SHAPE_BUCKET_MINUTES.len())
}

/// The arrival time as the text tools print it (RFC 5322, UTC).
fn arrival(message: &MessageInfo) -> String {
    date(message.arrival_unix_ms / 1000)
}

/// The sender as the tools print it (`<>` for a notification).
fn sender(message: &MessageInfo) -> &str {
    if message.sender.is_empty() {
        "<>"
    } else {
        &message.sender
    }
}

/// What `queue list` says under a finishing message (JSON `"queue": "finishing"`): Postfix
/// has no such state to copy, so it is said in words where the reasons go.
const FINISHING_LINE: &str =
    "(finishing: every recipient delivered or failed, removed once any notification is queued)";

/// Writes one message as `postqueue -p` does: id (`*` when a connection has it), size,
/// arrival, sender, then each recipient not final, under its last reply in parentheses
/// when that differs from the one above; a blank line. A finishing message (every
/// recipient final, its notification being queued) says so in the reasons' column, then
/// lists its recipients with their final state (`r@x: failed`).
pub fn list_entry_into(message: &MessageInfo, out: &mut String) {
    let mark = if message.queue == QueueState::Active {
        '*'
    } else {
        ' '
    };
    let _ = writeln!(
        out,
        "{}{mark} {:>8} {:<31} {}",
        message.id,
        message.size_bytes,
        arrival(message),
        sender(message)
    );
    if message.queue == QueueState::Finishing {
        let _ = writeln!(out, "{:LIST_INDENT$}{FINISHING_LINE}", "");
        for recipient in &message.recipients {
            let _ = writeln!(
                out,
                "{:LIST_INDENT$} {}: {}",
                "", recipient.address, recipient.state
            );
        }
        out.push('\n');
        return;
    }
    let mut last_reason: Option<&str> = None;
    for recipient in &message.recipients {
        if recipient.state == "delivered" || recipient.state == "failed" {
            continue;
        }
        let reason = recipient.last_reply.as_deref();
        if reason.is_some() && reason != last_reason {
            let _ = writeln!(out, "{:LIST_INDENT$}({})", "", reason.unwrap_or_default());
        }
        last_reason = reason;
        let _ = writeln!(out, "{:LIST_INDENT$} {}", "", recipient.address);
    }
    out.push('\n');
}

/// The header of `queue list`.
pub fn list_header() -> &'static str {
    LIST_HEADER
}

/// The last line of `queue list`: the total size and count, or that the queue is empty.
pub fn list_trailer(count: u64, bytes: u64) -> String {
    if count == 0 {
        "Mail queue is empty\n".to_owned()
    } else {
        format!("-- {} Kbytes in {count} Requests.\n", bytes.div_ceil(1024))
    }
}

/// `when` relative to `now_ms`: `42s ago`, `in 3s`.
fn relative(when_ms: u64, now_ms: u64) -> String {
    if when_ms <= now_ms {
        format!("{}s ago", (now_ms - when_ms) / 1000)
    } else {
        format!("in {}s", (when_ms - now_ms).div_ceil(1000))
    }
}

/// Writes one message in full for `queue show`: its envelope and every recipient with its
/// state, attempts, next attempt, last reply and the next hop that gave it.
pub fn show_into(message: &MessageInfo, now_ms: u64, out: &mut String) {
    let _ = writeln!(out, "id:           {}", message.id);
    let _ = writeln!(out, "queue:        {}", message.queue.as_str());
    let _ = writeln!(
        out,
        "arrival:      {} ({})",
        arrival(message),
        relative(message.arrival_unix_ms, now_ms)
    );
    let _ = writeln!(out, "size:         {} bytes", message.size_bytes);
    let _ = writeln!(out, "sender:       {}", sender(message));
    let _ = writeln!(
        out,
        "client:       [{}] helo={}",
        message.client_address, message.helo
    );
    if let Some(envid) = &message.envid {
        let _ = writeln!(out, "envid:        {envid}");
    }
    if let Some(ret) = &message.ret {
        let _ = writeln!(out, "ret:          {ret}");
    }
    if message.smtputf8 {
        let _ = writeln!(out, "smtputf8:     yes");
    }
    if let Some(next) = message.next_attempt_unix_ms {
        let _ = writeln!(
            out,
            "next attempt: {} ({})",
            date(next / 1000),
            relative(next, now_ms)
        );
    }
    for recipient in &message.recipients {
        let _ = writeln!(out, "recipient:    {}", recipient.address);
        let _ = write!(out, "  state:      {}", recipient.state);
        if recipient.state == "deferred" {
            let plural = if recipient.attempts == 1 { "" } else { "s" };
            let _ = write!(out, " after {} attempt{plural}", recipient.attempts);
            if let Some(next) = recipient.next_attempt_unix_ms {
                let _ = write!(out, ", next {}", relative(next, now_ms));
            }
        }
        out.push('\n');
        if let Some(reply) = &recipient.last_reply {
            let _ = writeln!(out, "  last reply: {reply}");
        }
        if let Some(hop) = &recipient.remote_mta {
            let _ = writeln!(out, "  next hop:   {hop}");
        }
    }
}

/// What `queue shape` groups recipients by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeBy {
    /// The recipient's domain (after the last `@`, lower case).
    Domain,
    /// The next hop (in smarthost mode, the relay's `--relay-to` list for every message).
    Hop,
}

/// One row of `queue shape`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShapeRow {
    /// The domain or next hop (`TOTAL` for the first row).
    pub name: String,
    /// Recipients not final in this row.
    pub total: u64,
    /// The same by age, one count per column of [`SHAPE_BUCKET_MINUTES`] and `1280+`.
    pub counts: [u64; SHAPE_COLUMNS],
}

/// `qshape`'s counts: recipients not final (the work left), by row and age.
#[derive(Debug, Clone)]
pub struct Shape {
    /// What the rows are.
    by: ShapeBy,
    /// Now, Unix milliseconds (ages are taken from it).
    now_ms: u64,
    /// The rows by name.
    rows: BTreeMap<String, [u64; SHAPE_COLUMNS]>,
    /// Every row added up.
    total: [u64; SHAPE_COLUMNS],
}

impl Shape {
    /// An empty count at `now_ms`.
    pub fn new(by: ShapeBy, now_ms: u64) -> Shape {
        Shape {
            by,
            now_ms,
            rows: BTreeMap::new(),
            total: [0; SHAPE_COLUMNS],
        }
    }

    /// Counts `message`'s recipients that are not final; `hop` names the row when grouping by
    /// next hop.
    pub fn add(&mut self, message: &MessageInfo, hop: &str) {
        let column = shape_column(self.now_ms.saturating_sub(message.arrival_unix_ms));
        for recipient in &message.recipients {
            if recipient.state == "delivered" || recipient.state == "failed" {
                continue;
            }
            let name = match self.by {
                ShapeBy::Domain => match recipient.address.rsplit_once('@') {
                    Some((_, domain)) => domain.to_ascii_lowercase(),
                    None => "(no domain)".to_owned(),
                },
                ShapeBy::Hop => hop.to_owned(),
            };
            self.rows.entry(name).or_insert([0; SHAPE_COLUMNS])[column] += 1;
            self.total[column] += 1;
        }
    }

    /// The rows: `TOTAL` first, then the others by their total, largest first (ties by
    /// name).
    pub fn rows(&self) -> Vec<ShapeRow> {
        let row = |name: &str, counts: &[u64; SHAPE_COLUMNS]| ShapeRow {
            name: name.to_owned(),
            total: counts.iter().sum(),
            counts: *counts,
        };
        let mut rows: Vec<ShapeRow> = self
            .rows
            .iter()
            .map(|(name, counts)| row(name, counts))
            .collect();
        rows.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.name.cmp(&b.name)));
        rows.insert(0, row("TOTAL", &self.total));
        rows
    }

    /// The table as `qshape` prints it.
    pub fn text(&self) -> String {
        shape_text(&self.rows())
    }
}

/// `rows` as `qshape` prints them: a header of the age buckets, then each row's name, total
/// and counts.
pub fn shape_text(rows: &[ShapeRow]) -> String {
    let name_width = rows.iter().map(|r| r.name.len()).max().unwrap_or(5);
    let mut out = String::new();
    let _ = write!(out, "{:>name_width$} {:>6}", "", "T");
    for minutes in SHAPE_BUCKET_MINUTES {
        let _ = write!(out, " {minutes:>5}");
    }
    let _ = writeln!(out, " {:>5}", "1280+");
    for row in rows {
        let _ = write!(out, "{:>name_width$} {:>6}", row.name, row.total);
        for count in row.counts {
            let _ = write!(out, " {count:>5}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::admin::model::RecipientInfo;

    fn message(id: &str, arrival_ms: u64, rcpts: &[(&str, &str)]) -> MessageInfo {
        MessageInfo {
            id: id.into(),
            queue: QueueState::Deferred,
            arrival_unix_ms: arrival_ms,
            size_bytes: 1500,
            sender: "s@example.org".into(),
            next_attempt_unix_ms: None,
            client_address: "127.0.0.1".into(),
            helo: "client".into(),
            envid: None,
            ret: None,
            smtputf8: false,
            recipients: rcpts
                .iter()
                .map(|(address, state)| RecipientInfo {
                    address: (*address).into(),
                    state: (*state).into(),
                    attempts: 1,
                    next_attempt_unix_ms: None,
                    last_reply: Some("451 4.3.0 later".into()),
                    remote_mta: None,
                })
                .collect(),
        }
    }

    #[test]
    fn ages_fall_in_qshapes_buckets() {
        let minute = 60_000;
        let cases = [
            (0, 0),
            (5 * minute - 1, 0),
            (5 * minute, 1),
            (10 * minute - 1, 1),
            (10 * minute, 2),
            (20 * minute, 3),
            (40 * minute, 4),
            (80 * minute, 5),
            (160 * minute, 6),
            (320 * minute, 7),
            (640 * minute, 8),
            (1280 * minute - 1, 8),
            (1280 * minute, 9),
            (u64::MAX, 9),
        ];
        for (age, column) in cases {
            assert_eq!(shape_column(age), column, "age {age} ms");
        }
    }

    #[test]
    fn shape_counts_recipients_left_per_domain_total_first() {
        let now = 100 * 60_000 * 60;
        let mut shape = Shape::new(ShapeBy::Domain, now);
        shape.add(
            &message(
                "1",
                now - 60_000,
                &[
                    ("a@B.example", "deferred"),
                    ("b@b.example", "pending"),
                    ("c@c.example", "delivered"),
                ],
            ),
            "-",
        );
        shape.add(
            &message("2", now - 30 * 60_000, &[("d@c.example", "deferred")]),
            "-",
        );
        shape.add(&message("3", now + 5, &[("postmaster", "pending")]), "-");
        let rows = shape.rows();
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["TOTAL", "b.example", "(no domain)", "c.example"]);
        assert_eq!(rows[0].total, 4);
        assert_eq!(rows[0].counts, [3, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(rows[1].counts[0], 2);
        assert_eq!(rows[3].counts[3], 1);
        let text = shape.text();
        assert!(
            text.lines().next().unwrap().ends_with(" 1280 1280+"),
            "{text}"
        );
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .trim_start()
                .starts_with("TOTAL      4     3"),
            "{text}"
        );
        let mut by_hop = Shape::new(ShapeBy::Hop, now);
        by_hop.add(
            &message("1", now, &[("a@x", "pending"), ("b@y", "pending")]),
            "h:25",
        );
        assert_eq!(by_hop.rows()[1].name, "h:25");
        assert_eq!(by_hop.rows()[1].total, 2);
    }

    #[test]
    fn list_prints_like_postqueue() {
        let mut m = message(
            "00000000000000AB",
            0,
            &[
                ("r@x", "deferred"),
                ("q@x", "deferred"),
                ("d@x", "delivered"),
            ],
        );
        m.queue = QueueState::Active;
        let mut out = String::new();
        list_entry_into(&m, &mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].starts_with("00000000000000AB*     1500 Thu, 1 Jan 1970 00:00:00 +0000"),
            "{out}"
        );
        assert!(lines[0].ends_with(" s@example.org"), "{out}");
        assert_eq!(lines[1].trim(), "(451 4.3.0 later)");
        assert_eq!(lines[2].trim(), "r@x");
        assert_eq!(lines[3].trim(), "q@x");
        assert_eq!(lines.len(), 5, "{out}");
        // Finishing (nit 8): said in words, as the JSON says `finishing`, with the
        // recipients' final states.
        let mut done = message(
            "00000000000000AC",
            0,
            &[("f@x", "failed"), ("d@x", "delivered")],
        );
        done.queue = QueueState::Finishing;
        let mut out = String::new();
        list_entry_into(&done, &mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("00000000000000AC  "), "{out}");
        assert_eq!(lines[1], format!("{:LIST_INDENT$}{FINISHING_LINE}", ""));
        assert_eq!(lines[2].trim(), "f@x: failed");
        assert_eq!(lines[3].trim(), "d@x: delivered");
        assert_eq!(lines.len(), 5, "{out}");
        assert_eq!(list_trailer(0, 0), "Mail queue is empty\n");
        assert_eq!(list_trailer(2, 1500), "-- 2 Kbytes in 2 Requests.\n");
    }
}
