//! `--max-connections-per-ip`: how many connections each client holds, over all workers.
//!
//! What it does: count open connections per client in one shared table, touched only
//! when a connection is accepted and when it closes (never per command), and refuse a new one
//! past the limit. A client is counted by its key ([`ClientKey`]: an IPv4
//! address, or an IPv6 /64). The table holds only clients with a connection open, so it
//! is bounded by the connection cap.
//!
//! What it does not do: reply (the acceptor says `421 4.7.0`), or rate-limit connection
//! attempts over time (the `connect` fault rules with `rate=` do that).

use crate::lock::lock;
use crate::peer::ClientKey;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Open connections per client key.
#[derive(Debug)]
pub struct PerClientConnections {
    /// Most connections one client may hold.
    limit: usize,
    /// Open connections per client key (keys with none are removed).
    open: Mutex<HashMap<ClientKey, usize>>,
}

impl PerClientConnections {
    /// A table allowing `limit` connections per client.
    pub fn new(limit: usize) -> PerClientConnections {
        PerClientConnections {
            limit,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a new connection from `client`; false (and nothing counted) past the limit.
    pub fn try_open(&self, client: IpAddr) -> bool {
        let client = ClientKey::of(client);
        let mut open = lock(&self.open);
        let count = open.entry(client).or_insert(0);
        if *count >= self.limit {
            if *count == 0 {
                open.remove(&client);
            }
            return false;
        }
        *count += 1;
        true
    }

    /// A connection from `client` closed.
    pub fn close(&self, client: IpAddr) {
        let client = ClientKey::of(client);
        let mut open = lock(&self.open);
        if let Some(count) = open.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_count_and_closed_ones_are_forgotten() {
        let table = PerClientConnections::new(2);
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        assert!(table.try_open(a) && table.try_open(a));
        assert!(!table.try_open(a), "the third from one address");
        assert!(table.try_open(b));
        table.close(a);
        assert!(table.try_open(a));
        table.close(a);
        table.close(a);
        table.close(b);
        assert!(table.open.lock().unwrap().is_empty());
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_slash_64() {
        let table = PerClientConnections::new(1);
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(table.try_open(one));
        assert!(!table.try_open(same_64));
        assert!(table.try_open(other_64));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(table.try_open(mapped));
        assert!(!table.try_open(IpAddr::from([10, 0, 0, 1])));
        table.close(same_64);
        assert!(table.try_open(one));
    }
}
