//! One client, as the server's limits see it: the key a client is counted under, work shared
//! fairly between clients, and how often a client did something within a window.
//!
//! What it does: [`counted_as`] maps an address to its client key (an IPv4 address, or an
//! IPv6 /64: the smallest usual allocation to one subscriber, who can use any address in it,
//! so counting single IPv6 addresses would be no limit at all; an IPv4-mapped IPv6 address
//! counts as its IPv4 address). [`FairQueue`] holds work per client key and hands it out
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

use std::net::IpAddr;

/// The key a client is counted under: its IPv4 address, or its IPv6 /64.
pub fn counted_as(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::counted_as;
    use std::net::IpAddr;

    #[test]
    fn ipv6_counts_by_its_slash_64_and_mapped_ipv4_as_ipv4() {
        let key = |text: &str| counted_as(text.parse::<IpAddr>().unwrap());
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:10.0.0.1"), key("10.0.0.1"));
        assert_eq!(key("10.0.0.1"), "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_ne!(key("10.0.0.1"), key("10.0.0.2"));
    }
}
