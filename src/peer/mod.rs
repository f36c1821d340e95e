//! One client, as the server's limits see it: the key a client is counted under, work shared
//! fairly between clients, and how often a client did something within a window.
//!
//! What it does: [`ClientKey::of`] maps an address to its client key (an IPv4 address, or an
//! IPv6 /64; the rule is stated once, on [`ClientKey`]). [`FairQueue`] holds work per client key and hands it out
//! round-robin, so one client (or many) flooding it cannot push another's work far back:
//! the AUTH verifier threads and each worker's TLS handshakes are shared this way.
//! [`RateBook`] counts events per client key against a limit of N per window (the model is
//! Postfix anvil's per-client rates): AUTH failures, full TLS handshakes.
//!
//! What it does not do: decide what happens past a limit (the caller replies or refuses),
//! lock (callers put these structures behind their own lock, or keep them per worker), or
//! read the clock (every call takes `now`, so tests drive time by hand).

mod fair;
mod rate;

pub use fair::FairQueue;
pub use rate::{RateBook, RateLimit};

use std::fmt;
use std::net::IpAddr;

/// One client, as every limit counts it: its IPv4 address, or its IPv6 /64.
///
/// The /64 rule, stated here once: a unicast IPv6 address is a 64-bit subnet prefix and a
/// 64-bit interface identifier (RFC 4291 §2.5.1; RFC 7421 on why the boundary stays at 64), so
/// a /64 is one link, the least a subscriber is given, and every address in it is theirs to
/// use at will: counting single IPv6 addresses would be no limit at all.
/// An IPv4-mapped IPv6 address (RFC 4291 §2.5.5.2) is the IPv4 client it maps. Connection
/// caps, AUTH's failure and pending bounds, TLS handshake turns and rates, and the fault
/// rules' `rate=` and greylisting all count by this key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The key `client` is counted under.
    pub fn of(client: IpAddr) -> ClientKey {
        ClientKey(match client {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(prefix.into())
                }
            },
        })
    }

    /// The key as an address: the IPv4 address, or the /64's first address.
    pub fn addr(self) -> IpAddr {
        self.0
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => v4.fmt(f),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ClientKey;
    use std::net::IpAddr;

    #[test]
    fn ipv6_counts_by_its_slash_64_and_mapped_ipv4_as_ipv4() {
        let key = |text: &str| ClientKey::of(text.parse::<IpAddr>().unwrap());
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:10.0.0.1"), key("10.0.0.1"));
        assert_eq!(
            key("10.0.0.1").addr(),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_ne!(key("10.0.0.1"), key("10.0.0.2"));
        assert_eq!(key("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(key("::ffff:10.0.0.1").to_string(), "10.0.0.1");
    }
}
