//! The password file of `--auth file:PATH`: one `user:hash` a line, and checking a password
//! against a hash.
//!
//! Format: blank lines and lines starting with `#` are ignored; every other line is
//! `user:secret`, split at the first `:` (as `htpasswd` files are: a user name holds no `:`,
//! a `{PLAIN}` password may), where
//! `secret` is one of
//! * an Argon2 PHC string, `$argon2id$v=19$m=...,t=...,p=...$salt$hash` (also `argon2i`,
//!   `argon2d`), checked with the `argon2` crate (RustCrypto);
//! * a bcrypt hash, `$2b$`, `$2a$`, `$2y$` (cost 4 to 31), checked with the `bcrypt` crate;
//! * `{PLAIN}password`: the password itself, for tests only (compared in constant time).
//!
//! Any other form is an error naming the line, so a typo does not lock a user out silently.
//! So are a user listed twice, an empty `{PLAIN}` password, a hash so costly that checking it
//! would hold a verifier thread for seconds (Argon2 memory over 1 GiB or more than 16
//! passes, bcrypt cost over 16), and a file with no user at all. A UTF-8 byte-order mark at
//! the start is skipped.
//!
//! What it does not do: run anywhere in particular (hash checks are slow on purpose and run
//! on the verifier thread, see [`super`]), or hash passwords (use `argon2` or `htpasswd -B`).

use std::collections::HashMap;
use std::path::Path;

/// How a user's password is kept.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// `{PLAIN}...`: the password itself (tests only).
    Plain(Vec<u8>),
    /// An Argon2 PHC string.
    Argon2(String),
    /// A bcrypt hash.
    Bcrypt(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Plain(_) => "Secret::Plain(..)",
            Secret::Argon2(_) => "Secret::Argon2(..)",
            Secret::Bcrypt(_) => "Secret::Bcrypt(..)",
        })
    }
}

impl Secret {
    /// Parses the part after the `:`; `None` when it is none of the forms above.
    fn parse(text: &str) -> Option<Secret> {
        if let Some(password) = text.strip_prefix("{PLAIN}") {
            return (!password.is_empty()).then(|| Secret::Plain(password.as_bytes().to_vec()));
        }
        if text.starts_with("$argon2") {
            // A PHC string with a salt and a hash (the parser alone accepts `$argon2id$x`),
            // at a cost a verifier thread can afford.
            let hash = argon2::PasswordHash::new(text).ok()?;
            let params = argon2::Params::try_from(&hash).ok()?;
            let affordable =
                params.m_cost() <= MAX_ARGON2_MEMORY_KIB && params.t_cost() <= MAX_ARGON2_PASSES;
            let complete = hash.salt.is_some() && hash.hash.is_some();
            return (complete && affordable).then(|| Secret::Argon2(text.to_string()));
        }
        if ["$2b$", "$2a$", "$2y$"].iter().any(|p| text.starts_with(p)) {
            // Validate the form now: `$2b$NN$` then 53 characters of salt and hash.
            let cost: u32 = text.get(4..6)?.parse().ok()?;
            let ok = (4..=MAX_BCRYPT_COST).contains(&cost)
                && text.len() == 60
                && text.as_bytes()[6] == b'$';
            return ok.then(|| Secret::Bcrypt(text.to_string()));
        }
        None
    }

    /// What makes two hashes cost the same to check: the algorithm and its cost parameters.
    fn cost_class(&self) -> Option<String> {
        match self {
            Secret::Plain(_) => None,
            Secret::Bcrypt(hash) => Some(hash[..6].to_string()),
            Secret::Argon2(phc) => {
                let hash = argon2::PasswordHash::new(phc).ok()?;
                let params = argon2::Params::try_from(&hash).ok()?;
                Some(format!(
                    "{} {:?} {} {} {}",
                    hash.algorithm,
                    hash.version,
                    params.m_cost(),
                    params.t_cost(),
                    params.p_cost()
                ))
            }
        }
    }

    /// A secret of the same algorithm and cost as `self`, for a random password: checking
    /// any password against it takes as long as against `self`, and never matches.
    fn dummy_like(&self) -> Secret {
        let random = rustls::crypto::ring::default_provider().secure_random;
        let mut password = [0u8; 32];
        let mut salt = [0u8; 16];
        if random.fill(&mut password).is_err() || random.fill(&mut salt).is_err() {
            return Secret::Plain(Vec::new()); // matches nothing: `matches` needs equal bytes
        }
        let made = match self {
            Secret::Plain(_) => None,
            Secret::Bcrypt(hash) => {
                let cost = hash[4..6].parse().unwrap_or(bcrypt::DEFAULT_COST);
                bcrypt::hash_with_salt(password, cost, salt)
                    .ok()
                    .map(|h| Secret::Bcrypt(h.format_for_version(bcrypt::Version::TwoB)))
            }
            Secret::Argon2(phc) => (|| {
                use argon2::password_hash::{PasswordHasher as _, SaltString};
                let hash = argon2::PasswordHash::new(phc).ok()?;
                let params = argon2::Params::try_from(&hash).ok()?;
                let algorithm = argon2::Algorithm::try_from(hash.algorithm).ok()?;
                let version = argon2::Version::try_from(hash.version.unwrap_or(0x13)).ok()?;
                let salt = SaltString::encode_b64(&salt).ok()?;
                let argon = argon2::Argon2::new(algorithm, version, params);
                let made = argon.hash_password(&password, &salt).ok()?;
                Some(Secret::Argon2(made.to_string()))
            })(),
        };
        made.unwrap_or(Secret::Plain(Vec::new()))
    }

    /// What a check of this secret costs, for people: `bcrypt cost 12`, `argon2id m=19456
    /// t=2 p=1`, `{PLAIN}`. Secrets with the same text take the same time to check (the
    /// bcrypt variants `$2a$`, `$2b$`, `$2y$` are one algorithm).
    fn cost_text(&self) -> String {
        match self {
            Secret::Plain(_) => "{PLAIN}".to_string(),
            Secret::Bcrypt(hash) => format!("bcrypt cost {}", hash[4..6].trim_start_matches('0')),
            Secret::Argon2(phc) => (|| {
                let hash = argon2::PasswordHash::new(phc).ok()?;
                let params = argon2::Params::try_from(&hash).ok()?;
                Some(format!(
                    "{} m={} t={} p={}",
                    hash.algorithm,
                    params.m_cost(),
                    params.t_cost(),
                    params.p_cost()
                ))
            })()
            .unwrap_or_else(|| "argon2".to_string()),
        }
    }

    /// Whether the check is cheap enough for the event loop (no hashing).
    pub fn is_cheap(&self) -> bool {
        matches!(self, Secret::Plain(_))
    }

    /// Whether `password` matches. Slow for hashes, on purpose.
    pub fn matches(&self, password: &[u8]) -> bool {
        match self {
            Secret::Plain(expected) => constant_time_eq(expected, password),
            Secret::Argon2(phc) => {
                use argon2::PasswordVerifier as _;
                match argon2::PasswordHash::new(phc) {
                    Ok(hash) => argon2::Argon2::default()
                        .verify_password(password, &hash)
                        .is_ok(),
                    Err(_) => false,
                }
            }
            Secret::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
        }
    }
}

/// Argon2 memory cost (KiB) a password file may ask for: 1 GiB.
const MAX_ARGON2_MEMORY_KIB: u32 = 1024 * 1024;
/// Argon2 passes a password file may ask for.
const MAX_ARGON2_PASSES: u32 = 16;
/// bcrypt cost a password file may ask for (cost 16 takes seconds already).
const MAX_BCRYPT_COST: u32 = 16;

/// The largest password file read: 64 MiB, a million users with lines of 64 octets (an
/// Argon2 PHC string is about 100 octets, a bcrypt hash 60). The file is read whole, at start
/// and again on SIGHUP while the old users are still held, so the bound keeps a device or a
/// runaway file from filling memory.
pub const MAX_PASSWORD_FILE: u64 = 64 << 20;

/// Compares two byte strings in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// The users of a password file.
#[derive(Debug, Default, Clone)]
pub struct Users {
    /// Secret per user name.
    by_name: HashMap<Vec<u8>, Secret>,
}

impl Users {
    /// Reads and checks `path`; the error names the file and the line.
    pub fn load(path: &Path) -> Result<Users, String> {
        let text = crate::named_file::read_text(
            path,
            MAX_PASSWORD_FILE,
            "a million users of 64-octet lines; the file is read whole, at start and on SIGHUP",
        )
        .map_err(|e| format!("--auth file:{}: {e}", path.display()))?;
        Users::parse(&text).map_err(|e| format!("--auth file:{}: {e}", path.display()))
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Users, String> {
        let mut by_name = HashMap::new();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (number, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let number = number + 1;
            let Some((user, secret)) = line.split_once(':') else {
                return Err(format!("line {number}: expected user:hash"));
            };
            if user.is_empty() || !crate::proto::sasl::is_acceptable_user(user.as_bytes()) {
                return Err(format!("line {number}: empty or unprintable user name"));
            }
            let Some(secret) = Secret::parse(secret) else {
                return Err(format!(
                    "line {number}: the hash is not an Argon2 PHC string ($argon2id$..., at most m=1048576 and t=16), a bcrypt hash ($2b$..., cost at most 16) or {{PLAIN}}password (not empty)"
                ));
            };
            if by_name.insert(user.as_bytes().to_vec(), secret).is_some() {
                return Err(format!("line {number}: user {user:?} is listed twice"));
            }
        }
        if by_name.is_empty() {
            return Err("no user in the file (lines are user:hash)".into());
        }
        Ok(Users { by_name })
    }

    /// A secret for unknown users that costs what most of the file's entries cost to check
    /// (the same algorithm and parameters, a random password): the time an attempt takes
    /// does not tell whether its user exists. A `{PLAIN}`-only file gets a `{PLAIN}` one.
    pub fn dummy_like_most(&self) -> Secret {
        let mut classes: HashMap<String, (usize, &Secret)> = HashMap::new();
        for secret in self.by_name.values() {
            if let Some(class) = secret.cost_class() {
                classes.entry(class).or_insert((0, secret)).0 += 1;
            }
        }
        let most = classes
            .into_iter()
            .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then_with(|| b.0.cmp(&a.0)));
        match most {
            Some((_, (_, secret))) => secret.dummy_like(),
            None => Secret::Plain(Vec::new()),
        }
    }

    /// When the entries do not all cost the same to check (algorithm and cost: bcrypt cost
    /// 5 and 12, Argon2 and bcrypt, `{PLAIN}` and hashes), a warning naming the users of
    /// each kind; `None` when they all do. The time a login takes then tells which kind a
    /// user is, and an unknown user is checked against the most common kind only
    /// ([`Users::dummy_like_most`]): the users of the other kinds can be told apart from
    /// users that do not exist (a bcrypt cost 5 entry answers in milliseconds, an unknown
    /// user as slowly as cost 12).
    pub fn mixed_costs(&self) -> Option<String> {
        /// Users named per kind at most (the rest are counted).
        const NAMED: usize = 8;
        let mut kinds: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (user, secret) in &self.by_name {
            kinds
                .entry(secret.cost_text())
                .or_default()
                .push(String::from_utf8_lossy(user).into_owned());
        }
        if kinds.len() < 2 {
            return None;
        }
        let mut kinds: Vec<(String, Vec<String>)> = kinds.into_iter().collect();
        // The most common kind first (the one unknown users are checked against).
        kinds.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
        let groups: Vec<String> = kinds
            .into_iter()
            .map(|(kind, mut users)| {
                users.sort();
                let more = users.len().saturating_sub(NAMED);
                users.truncate(NAMED);
                let mut names = users.join(", ");
                if more > 0 {
                    names.push_str(&format!(" and {more} more"));
                }
                format!("{kind}: {names}")
            })
            .collect();
        Some(format!(
            "the password hashes differ in algorithm or cost ({}): the time a login takes tells which group a user is in, and users outside the first group can be told apart from users that do not exist; hash every password alike (e.g. htpasswd -nbB -C 12 USER PASSWORD)",
            groups.join("; ")
        ))
    }

    /// The secret of `user`, if listed.
    pub fn get(&self, user: &[u8]) -> Option<&Secret> {
        self.by_name.get(user)
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `argon2id` of "hunter2" with small parameters (m=64 KiB, t=1), made with the argon2 crate.
    fn argon2_hash(password: &str) -> String {
        use argon2::password_hash::{PasswordHasher as _, SaltString};
        let params = argon2::Params::new(64, 1, 1, None).unwrap();
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"fixed salt for a test").unwrap();
        argon
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[test]
    fn each_form_checks_the_password() {
        let bcrypt = bcrypt::hash("s3cret", 4).unwrap();
        let text = format!(
            "# users\n\nalice:{}\nbob:{bcrypt}\ncarol:{{PLAIN}}pa:ss\n",
            argon2_hash("hunter2")
        );
        let users = Users::parse(&text).unwrap();
        assert_eq!(users.len(), 3);
        assert!(users.get(b"alice").unwrap().matches(b"hunter2"));
        assert!(!users.get(b"alice").unwrap().matches(b"hunter3"));
        assert!(users.get(b"bob").unwrap().matches(b"s3cret"));
        assert!(!users.get(b"bob").unwrap().matches(b""));
        // Split at the first colon: a {PLAIN} password may hold one.
        assert!(users.get(b"carol").unwrap().matches(b"pa:ss"));
        assert!(!users.get(b"carol").unwrap().matches(b"pa"));
        assert!(users.get(b"nobody").is_none());
        assert!(users.get(b"carol").unwrap().is_cheap());
        assert!(!users.get(b"bob").unwrap().is_cheap());
    }

    #[test]
    fn a_byte_order_mark_is_skipped_and_the_dummy_costs_what_most_entries_cost() {
        let bcrypt5 = bcrypt::hash("x", 5).unwrap();
        let bcrypt4 = bcrypt::hash("y", 4).unwrap();
        let text = format!("\u{feff}alice:{bcrypt5}\nbob:{bcrypt5}\ncarol:{bcrypt4}\n");
        let users = Users::parse(&text).unwrap();
        assert!(
            users.get(b"alice").is_some(),
            "the BOM is not part of the first user"
        );
        let dummy = users.dummy_like_most();
        match &dummy {
            Secret::Bcrypt(hash) => assert!(hash.starts_with("$2b$05$"), "{hash}"),
            other => panic!("{other:?}"),
        }
        assert!(!dummy.matches(b"x") && !dummy.matches(b""));
        let argon = Users::parse(&format!("a:{}\n", argon2_hash("p"))).unwrap();
        match argon.dummy_like_most() {
            Secret::Argon2(phc) => {
                assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}")
            }
            other => panic!("{other:?}"),
        }
        let plain = Users::parse("a:{PLAIN}p\n").unwrap();
        assert!(plain.dummy_like_most().is_cheap());
        assert!(!plain.dummy_like_most().matches(b"p"));
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, expect) in [
            ("alice\n", "line 1: expected user:hash"),
            ("# c\nalice:secret\n", "line 2: the hash is not"),
            ("alice:$2b$99$abc\n", "line 1: the hash is not"),
            ("alice:$argon2id$garbage\n", "line 1: the hash is not"),
            (
                "a:{PLAIN}x\na:{PLAIN}y\n",
                "line 2: user \"a\" is listed twice",
            ),
            (":{PLAIN}x\n", "line 1: empty or unprintable"),
            ("a:{PLAIN}\n", "line 1: the hash is not"),
            (
                "a:$2b$17$abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012\n",
                "line 1: the hash is not",
            ),
            (
                "a:$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n",
                "line 1: the hash is not",
            ),
            ("# nobody\n\n", "no user in the file"),
        ] {
            let error = Users::parse(text).unwrap_err();
            assert!(error.starts_with(expect), "{text:?}: {error}");
        }
        let error = Users::load(Path::new("/nonexistent/users")).unwrap_err();
        assert!(error.contains("--auth file:/nonexistent/users"), "{error}");
    }

    /// Review of issue 17, F1: `--auth file:/dev/zero` grew memory without end (at start or
    /// on SIGHUP) and a FIFO hung; now only a regular file of at most 64 MiB is read.
    #[test]
    fn only_a_regular_file_of_bounded_size_is_read() {
        let error = Users::load(Path::new("/dev/zero")).unwrap_err();
        assert!(
            error.starts_with("--auth file:/dev/zero: not a regular file"),
            "{error}"
        );
        let dir = std::env::temp_dir().join(format!("fastsmtpd-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("users.fifo");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let error = Users::load(&fifo).unwrap_err();
        assert!(error.contains("users.fifo: not a regular file"), "{error}");
        std::fs::remove_file(&fifo).unwrap();
        // Over the bound: a sparse file, so the test writes nothing to disk.
        let large = dir.join("users.large");
        let file = std::fs::File::create(&large).unwrap();
        file.set_len(MAX_PASSWORD_FILE + 1).unwrap();
        let error = Users::load(&large).unwrap_err();
        assert!(
            error.contains("users.large: larger than 64 MiB: a million users"),
            "{error}"
        );
        std::fs::remove_file(&large).unwrap();
    }

    /// Reviewer B, F9: a file mixing bcrypt costs (Python's `gensalt()` makes cost 12,
    /// `htpasswd -nbB` cost 5) let the answer time tell which users exist. Such a file is
    /// now named with its users grouped by cost.
    #[test]
    fn entries_of_different_costs_are_named_by_group() {
        let cost4 = bcrypt::hash("x", 4).unwrap();
        let cost5 = bcrypt::hash("y", 5).unwrap();
        let alike = Users::parse(&format!("alice:{cost4}\nbob:{cost4}\n")).unwrap();
        assert_eq!(alike.mixed_costs(), None);
        // `$2a$` and `$2b$` of one cost cost the same.
        let two_a = cost4.replacen("$2b$", "$2a$", 1);
        let variants = Users::parse(&format!("alice:{cost4}\nbob:{two_a}\n")).unwrap();
        assert_eq!(variants.mixed_costs(), None);
        let mixed = Users::parse(&format!(
            "carol:{cost5}\nalice:{cost5}\nbob:{cost4}\ndave:{{PLAIN}}d\n"
        ))
        .unwrap();
        let warning = mixed.mixed_costs().unwrap();
        assert!(
            warning.starts_with(
                "the password hashes differ in algorithm or cost (bcrypt cost 5: alice, carol; bcrypt cost 4: bob; {PLAIN}: dave): "
            ),
            "{warning}"
        );
        assert!(warning.contains("htpasswd -nbB -C 12"), "{warning}");
        let argon = Users::parse(&format!("a:{}\nb:{cost4}\n", argon2_hash("p"))).unwrap();
        let warning = argon.mixed_costs().unwrap();
        assert!(warning.contains("argon2id m=64 t=1 p=1: a"), "{warning}");
        let many: String = (0..12).map(|i| format!("u{i:02}:{cost4}\n")).collect();
        let many = Users::parse(&format!("{many}z:{{PLAIN}}z\n")).unwrap();
        let warning = many.mixed_costs().unwrap();
        assert!(
            warning.contains(
                "bcrypt cost 4: u00, u01, u02, u03, u04, u05, u06, u07 and 4 more; {PLAIN}: z)"
            ),
            "{warning}"
        );
    }

    #[test]
    fn secrets_never_print() {
        let users = Users::parse("a:{PLAIN}topsecret\n").unwrap();
        assert!(!format!("{users:?}").contains("topsecret"));
    }
}
