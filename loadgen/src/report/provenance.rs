//! Provenance: how, when, where and with what a run (or a merge, or a sweep) was made, so a
//! published report can be checked and repeated.
//!
//! What it does: capture it for this process ([`Provenance::capture`]: the date in UTC as
//! RFC 3339, smtp-loadgen's version and the git commit it was built from, the full command
//! line shell-quoted with `--auth`'s password hidden, the host's CPU model, cores and kernel),
//! hold the run's description (the header line), its warm-up and its settings (the `config`
//! object of `--json`: targets, connections, message size, mode), and say it all as JSON (the
//! `provenance` object of `--json`, and one comment line of an interval log, read back by
//! `report` and `merge`), as text lines (the summary, `report`, the interval log's `#` lines)
//! and as table rows (the HTML pages).
//!
//! What it does not do: decide the run's settings (`settings`) or its warm-up rule
//! (`warmup`), or write files.

use crate::units::bytes_text;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The git commit smtp-loadgen was built from (`build.rs`): short hash, `-dirty` if tracked
/// files differed from it, `unknown` outside a git checkout.
pub const COMMIT: &str = env!("SMTP_LOADGEN_COMMIT");
/// smtp-loadgen's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What made the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A load run (or one step of a sweep).
    Run,
    /// A rate sweep (its steps are runs).
    Sweep,
    /// `merge`: several hosts' logs added up (their provenance kept as inputs).
    Merge,
}

impl Kind {
    /// The JSON value.
    fn name(self) -> &'static str {
        match self {
            Kind::Run => "run",
            Kind::Sweep => "sweep",
            Kind::Merge => "merge",
        }
    }

    /// The kind from its JSON value (an unknown one reads as a run).
    fn parse(text: &str) -> Kind {
        match text {
            "sweep" => Kind::Sweep,
            "merge" => Kind::Merge,
            _ => Kind::Run,
        }
    }
}

/// The machine the load ran on.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// The CPU model (`/proc/cpuinfo`), or `unknown CPU`.
    pub cpu: String,
    /// Cores this process could use (`available_parallelism`: affinity and cgroup limits
    /// count).
    pub cores: usize,
    /// Cores the system has online, when it differs from `cores`.
    pub cores_online: Option<usize>,
    /// The kernel: type and release (`Linux 6.1.0-18-amd64`).
    pub kernel: String,
    /// The CPU architecture (`x86_64`).
    pub arch: String,
}

impl Host {
    /// This machine.
    pub fn probe() -> Host {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let online = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .ok()
                .filter(|s| !s.is_empty())
        };
        let kernel = match (
            read("/proc/sys/kernel/ostype"),
            read("/proc/sys/kernel/osrelease"),
        ) {
            (Some(kind), Some(release)) => format!("{kind} {release}"),
            _ => std::env::consts::OS.to_string(),
        };
        Host {
            cpu: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown CPU".to_string()),
            cores,
            cores_online: (online > 0 && online != cores).then_some(online),
            kernel,
            arch: std::env::consts::ARCH.to_string(),
        }
    }

    /// One line: `Intel(R) Xeon(R) CPU @ 2.20GHz, 2 cores, Linux 6.1.0 (x86_64)`.
    pub fn text(&self) -> String {
        let cores = match self.cores_online {
            Some(online) => format!("{} of {online} cores", self.cores),
            None if self.cores == 1 => "1 core".to_string(),
            None => format!("{} cores", self.cores),
        };
        format!("{}, {cores}, {} ({})", self.cpu, self.kernel, self.arch)
    }

    /// As JSON.
    fn json(&self) -> Value {
        json!({
            "cpu": self.cpu,
            "cores": self.cores,
            "cores_online": self.cores_online,
            "kernel": self.kernel,
            "arch": self.arch,
        })
    }

    /// From JSON (missing fields read as unknown).
    fn from_json(value: &Value) -> Host {
        let text = |key: &str| value[key].as_str().unwrap_or("unknown").to_string();
        Host {
            cpu: text("cpu"),
            cores: value["cores"].as_u64().unwrap_or(0) as usize,
            cores_online: value["cores_online"].as_u64().map(|n| n as usize),
            kernel: text("kernel"),
            arch: text("arch"),
        }
    }
}

/// The CPU model from `/proc/cpuinfo`'s text: `model name` (x86), else `Model` or
/// `Hardware` (ARM boards), else `cpu` (POWER), else `uarch` (RISC-V).
fn cpu_model(cpuinfo: &str) -> Option<String> {
    ["model name", "Model", "Hardware", "cpu", "uarch"]
        .iter()
        .find_map(|key| {
            cpuinfo.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                (k.trim() == *key && !v.trim().is_empty())
                    .then(|| v.split_whitespace().collect::<Vec<_>>().join(" "))
            })
        })
}

/// How, when and where figures were made.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// A run, a sweep, or a merge.
    pub kind: Kind,
    /// When it started, UTC, RFC 3339 (`2025-06-01T12:00:00Z`).
    pub date: String,
    /// smtp-loadgen's version.
    pub version: String,
    /// The git commit smtp-loadgen was built from (`unknown` if not known).
    pub commit: String,
    /// The command line, shell-quoted, `--auth`'s password replaced by `***`.
    pub command_line: String,
    /// The machine.
    pub host: Host,
    /// The run's header line: targets, connections, load model, mode, size (empty for a
    /// merge).
    pub description: String,
    /// The warm-up in seconds: intervals that start before it ends are left out of every
    /// figure.
    pub warmup_seconds: f64,
    /// The run's settings, as the `config` object of `--json` has them (typed: targets,
    /// connections, size, rate, pipelining, TLS...); `Null` for a merge.
    pub config: Value,
    /// A merge's input logs' provenance, in the order given (empty otherwise; a log
    /// without provenance has none here).
    pub inputs: Vec<Provenance>,
}

impl Provenance {
    /// The provenance of what this process does now: `kind`, started at `date`, described
    /// by `description` and `config`, with `warmup_seconds` of warm-up.
    pub fn capture(
        kind: Kind,
        date: SystemTime,
        description: &str,
        config: Value,
        warmup_seconds: f64,
    ) -> Provenance {
        Provenance {
            kind,
            date: rfc3339(date),
            version: VERSION.to_string(),
            commit: COMMIT.to_string(),
            command_line: command_line(std::env::args_os().map(|a| a.to_string_lossy().into())),
            host: Host::probe(),
            description: description.to_string(),
            warmup_seconds,
            config,
            inputs: Vec::new(),
        }
    }

    /// Fixed provenance for tests (golden files must not change with the date, the
    /// commit or the host): `description`, `warmup_seconds`, a sample config.
    #[cfg(test)]
    pub fn for_tests(description: &str, warmup_seconds: f64) -> Provenance {
        Provenance {
            kind: Kind::Run,
            date: "2023-11-14T22:13:20Z".into(),
            version: "0.0.0-test".into(),
            commit: "0123abc".into(),
            command_line: "smtp-loadgen --target 127.0.0.1:2525 -c 2 --warmup 1s".into(),
            host: Host {
                cpu: "Test CPU @ 1.00GHz".into(),
                cores: 2,
                cores_online: None,
                kernel: "Linux 6.1.0-test".into(),
                arch: "x86_64".into(),
            },
            description: description.into(),
            warmup_seconds,
            config: json!({
                "target": "127.0.0.1:2525", "connections": 2, "threads": 1,
                "size": {"fixed": 1024}, "rate": null, "pipelining": "auto",
                "bdat": false, "helo": false, "tls": null, "auth": null,
            }),
            inputs: Vec::new(),
        }
    }

    /// `smtp-loadgen 0.1.0 (commit 1a2b3c4)`.
    pub fn tool(&self) -> String {
        format!("smtp-loadgen {} (commit {})", self.version, self.commit)
    }

    /// As JSON: the `provenance` object of `--json`, and what an interval log records.
    pub fn json(&self) -> Value {
        let mut value = json!({
            "kind": self.kind.name(),
            "date": self.date,
            "smtp_loadgen": { "version": self.version, "commit": self.commit },
            "command_line": self.command_line,
            "host": self.host.json(),
            "description": self.description,
            "warmup_seconds": self.warmup_seconds,
            "config": self.config,
        });
        if !self.inputs.is_empty() {
            value["inputs"] = self.inputs.iter().map(Provenance::json).collect();
        }
        value
    }

    /// From JSON as [`Provenance::json`] writes it; `None` if it is not an object. Missing
    /// fields read as unknown (a later smtp-loadgen may add fields; unknown ones are
    /// skipped).
    pub fn from_json(value: &Value) -> Option<Provenance> {
        value.as_object()?;
        let text = |v: &Value| v.as_str().unwrap_or("unknown").to_string();
        Some(Provenance {
            kind: Kind::parse(value["kind"].as_str().unwrap_or("run")),
            date: text(&value["date"]),
            version: text(&value["smtp_loadgen"]["version"]),
            commit: text(&value["smtp_loadgen"]["commit"]),
            command_line: text(&value["command_line"]),
            host: Host::from_json(&value["host"]),
            description: value["description"].as_str().unwrap_or("").to_string(),
            warmup_seconds: value["warmup_seconds"].as_f64().unwrap_or(0.0),
            config: value["config"].clone(),
            inputs: value["inputs"]
                .as_array()
                .map(|list| list.iter().filter_map(Provenance::from_json).collect())
                .unwrap_or_default(),
        })
    }

    /// The text lines (without the description): when and with what, the command, the
    /// host; a merge's inputs follow, indented.
    pub fn lines(&self) -> Vec<String> {
        let verb = match self.kind {
            Kind::Run => "run",
            Kind::Sweep => "sweep",
            Kind::Merge => "merged",
        };
        let mut lines = vec![
            format!("{verb} {} by {}", self.date, self.tool()),
            format!("command: {}", self.command_line),
            format!("host: {}", self.host.text()),
        ];
        for (i, input) in self.inputs.iter().enumerate() {
            lines.push(format!("input {}: {}", i + 1, input.description));
            lines.extend(input.lines().into_iter().map(|l| format!("  {l}")));
        }
        lines
    }

    /// The table rows of the HTML pages: `(what, text)`.
    pub fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            ("date (UTC)".to_string(), self.date.clone()),
            ("smtp-loadgen".to_string(), self.tool()),
            ("command".to_string(), self.command_line.clone()),
            ("host".to_string(), self.host.text()),
        ];
        rows.extend(load_rows(&self.config));
        for (i, input) in self.inputs.iter().enumerate() {
            rows.push((
                format!("input {}", i + 1),
                format!(
                    "{}; {} by {}; {}; host {}",
                    input.description,
                    input.date,
                    input.tool(),
                    input.command_line,
                    input.host.text()
                ),
            ));
        }
        rows
    }
}

/// What a run's `config` says about its load, as `(what, text)` rows: target(s),
/// connections, message size, mode. Fields a config lacks are left out.
pub fn load_rows(config: &Value) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    if config.is_null() {
        return rows;
    }
    let targets = match config["targets"].as_array() {
        Some(list) => list
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        None => config["target"].as_str().unwrap_or("").to_string(),
    };
    if !targets.is_empty() {
        rows.push(("target(s)".to_string(), targets));
    }
    if let Some(c) = config["connections"].as_u64() {
        let threads = config["threads"].as_u64().unwrap_or(1);
        rows.push((
            "connections".to_string(),
            format!("{c} on {threads} thread(s)"),
        ));
    }
    if let Some(size) = size_text(&config["size"]) {
        rows.push(("message size".to_string(), size));
    }
    rows.push(("mode".to_string(), mode_text(config)));
    rows
}

/// A typed `size` as text: `1 KiB`, `1 KiB..64 KiB`, `corpus (312 bytes..1 MiB)`.
fn size_text(size: &Value) -> Option<String> {
    let bytes = |v: &Value| v.as_u64().map(|n| bytes_text(n as usize));
    if let Some(n) = bytes(&size["fixed"]) {
        Some(n)
    } else if let (Some(a), Some(b)) = (bytes(&size["range"]["min"]), bytes(&size["range"]["max"]))
    {
        Some(format!("{a}..{b}"))
    } else if let (Some(a), Some(b)) =
        (bytes(&size["corpus"]["min"]), bytes(&size["corpus"]["max"]))
    {
        Some(format!("corpus messages, {a}..{b}"))
    } else {
        None
    }
}

/// The mode as text: load model, transfer, pipelining, TLS, AUTH, and (open loop) the
/// pacing flags in use.
fn mode_text(config: &Value) -> String {
    let sweep = &config["sweep"];
    let mut parts = vec![match (config["rate"].as_f64(), sweep["low"].as_f64()) {
        (_, Some(low)) => format!(
            "open-loop rate sweep {low}..{} msgs/s in {} steps",
            sweep["high"].as_f64().unwrap_or(low),
            sweep["steps"].as_u64().unwrap_or(0)
        ),
        (Some(rate), None) => format!("open loop at {rate} msgs/s"),
        (None, None) => "closed loop".to_string(),
    }];
    if config["bdat"].as_bool() == Some(true) {
        parts.push(format!(
            "BDAT (inflight {})",
            config["inflight"].as_u64().unwrap_or(1)
        ));
    } else {
        parts.push("DATA".to_string());
    }
    if let Some(p) = config["pipelining"].as_str() {
        parts.push(format!("pipelining {p}"));
    }
    if config["helo"].as_bool() == Some(true) {
        parts.push("HELO".to_string());
    }
    match config["tls"]["mode"].as_str() {
        Some(mode) => parts.push(format!(
            "{} ({})",
            if mode == "implicit" {
                "implicit TLS"
            } else {
                "STARTTLS"
            },
            config["tls"]["certificate"]
                .as_str()
                .unwrap_or("certificate check unknown")
        )),
        None => parts.push("no TLS".to_string()),
    }
    if let Some(mech) = config["auth"]["mechanism"].as_str() {
        parts.push(format!("AUTH {mech}"));
    }
    // Open loop: the pacing flags in use (older configs lack them).
    let seconds = |key: &str| {
        config[key]
            .as_f64()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
    };
    if let Some(spin) = seconds("pace_spin_seconds") {
        parts.push(format!("pace spin {spin:?}"));
    }
    if let Some(limit) = seconds("late_send_limit_seconds") {
        parts.push(format!("late-send limit {limit:?}"));
    }
    parts.join(", ")
}

/// The command line `args` (program first) as one shell-quoted line, `--auth`'s password
/// replaced by `***` (the run's output never shows it), control characters replaced.
pub fn command_line(args: impl Iterator<Item = String>) -> String {
    let mut words = Vec::new();
    let mut auth_next = false;
    for arg in args {
        let word = if auth_next {
            auth_next = false;
            hide_password(&arg)
        } else if let Some(value) = arg.strip_prefix("--auth=") {
            format!("--auth={}", hide_password(value))
        } else {
            auth_next = arg == "--auth";
            arg
        };
        // Arguments cannot hold NUL; quoting cannot fail on anything else.
        let quoted = shlex::try_quote(&word).map_or_else(|_| word.clone(), |q| q.into_owned());
        words.push(super::printable(&quoted));
    }
    words.join(" ")
}

/// `USER:PASS` with the password hidden.
fn hide_password(credentials: &str) -> String {
    match credentials.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    }
}

/// A time as RFC 3339 UTC to the second: `2025-06-01T12:00:00Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day): Howard Hinnant's
/// `civil_from_days` (eras of 400 years, March-based years so that leap days come last).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc() {
        let at = |secs: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
        // A leap day, the day after, and the end of a leap year.
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(at(951_868_800), "2000-03-01T00:00:00Z");
        assert_eq!(at(1_735_603_200), "2024-12-31T00:00:00Z");
        assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn the_command_line_is_quoted_and_hides_the_password() {
        let line = command_line(
            [
                "smtp-loadgen",
                "--target",
                "127.0.0.1:2525",
                "--auth",
                "alice:s3cr:et",
                "--auth=bob:pw",
                "--from",
                "a b{n}@x",
                "--label",
                "it's",
                "--label",
                "x\u{1}y",
            ]
            .map(String::from)
            .into_iter(),
        );
        assert_eq!(
            line,
            "smtp-loadgen --target 127.0.0.1:2525 --auth 'alice:***' '--auth=bob:***' \
             --from 'a b{n}@x' --label \"it's\" --label 'x\u{FFFD}y'"
        );
        assert!(!line.contains("s3cr") && !line.contains("pw"));
    }

    #[test]
    fn cpu_models_of_several_architectures() {
        assert_eq!(
            cpu_model("processor\t: 0\nmodel name\t: Intel(R)  Xeon(R) CPU @ 2.20GHz\n"),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz".to_string())
        );
        assert_eq!(
            cpu_model("processor : 0\nBogoMIPS : 108\n\nModel : Raspberry Pi 4 Model B\n"),
            Some("Raspberry Pi 4 Model B".to_string())
        );
        assert_eq!(cpu_model("processor : 0\nBogoMIPS : 108\n"), None);
        let host = Host::probe();
        assert!(host.cores >= 1);
        assert!(!host.text().is_empty());
    }

    #[test]
    fn json_round_trip_and_text() {
        let config = json!({
            "target": "127.0.0.1:2525", "connections": 4, "threads": 1,
            "size": {"range": {"min": 1024, "max": 65536}}, "rate": 400.0,
            "pipelining": "auto", "bdat": false, "helo": false,
            "tls": {"mode": "starttls", "certificate": "certificate not verified"},
            "auth": {"mechanism": "PLAIN", "user": "u"},
        });
        let mut p = Provenance::capture(
            Kind::Run,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            "smtp-loadgen -> 127.0.0.1:2525: ...",
            config,
            1.0,
        );
        assert_eq!(p.date, "2023-11-14T22:13:20Z");
        assert_eq!(Provenance::from_json(&p.json()), Some(p.clone()));
        let rows = p.rows();
        let row = |what: &str| rows.iter().find(|r| r.0 == what).unwrap().1.clone();
        assert_eq!(row("message size"), "1 KiB..64 KiB");
        assert_eq!(row("connections"), "4 on 1 thread(s)");
        assert_eq!(
            row("mode"),
            "open loop at 400 msgs/s, DATA, pipelining auto, STARTTLS (certificate not \
             verified), AUTH PLAIN"
        );
        assert!(p.lines()[0].starts_with("run 2023-11-14T22:13:20Z by smtp-loadgen "));
        // A merge keeps its inputs.
        let input = p.clone();
        p.kind = Kind::Merge;
        p.inputs = vec![input];
        let back = Provenance::from_json(&p.json()).unwrap();
        assert_eq!(back.inputs.len(), 1);
        assert!(back.lines().iter().any(|l| l.starts_with("  run 2023")));
        // Older or foreign JSON: unknowns, no panic.
        let bare = Provenance::from_json(&json!({})).unwrap();
        assert_eq!(bare.version, "unknown");
        assert!(load_rows(&Value::Null).is_empty());
        // Open loop: the pacing flags in use are part of the mode.
        let open = json!({"rate": 100.0, "pace_spin_seconds": 50e-6,
                          "late_send_limit_seconds": 0.01});
        assert_eq!(
            mode_text(&open),
            "open loop at 100 msgs/s, DATA, no TLS, pace spin 50µs, late-send limit 10ms"
        );
        assert_eq!(Provenance::from_json(&json!("text")), None);
    }
}
