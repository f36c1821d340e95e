//! Listening sockets: one per worker per address, all bound with `SO_REUSEPORT`.
//!
//! What it does: create non-blocking listeners with socket2 so that every worker has its own
//! socket on the same address and the kernel spreads incoming connections over them (no shared
//! accept queue, no lock, no thundering herd). For port 0 the first socket picks the port and
//! the others bind that same port.
//!
//! What it does not do: accept connections (each worker does, in its own loop).
//!
//! Note: `SO_REUSEPORT` lets any process of the same user bind the port too; run the server
//! as a user of its own where that matters.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpListener};

/// Binds one listening socket on `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`.
pub fn bind_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // An IPv6 socket serves IPv6 only; IPv4 has its own --listen address.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Binds `workers` listeners for each address. Returns the listeners grouped per worker and
/// the actual addresses (with the port chosen by the kernel where port 0 was asked for).
pub fn bind_all(
    addrs: &[SocketAddr],
    workers: usize,
    backlog: i32,
) -> io::Result<(Vec<Vec<TcpListener>>, Vec<SocketAddr>)> {
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        if addr.port() != 0 {
            ensure_port_free(addr)?;
        }
        let first = bind_reuseport(addr, backlog)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        let actual = first.local_addr()?;
        per_worker[0].push(first);
        for listeners in per_worker.iter_mut().skip(1) {
            let listener = bind_reuseport(actual, backlog)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {actual}: {e}")))?;
            listeners.push(listener);
        }
        bound.push(actual);
    }
    Ok((per_worker, bound))
}

/// Fails if something already listens on `addr`. With `SO_REUSEPORT` alone, a second server
/// started by mistake would silently share the port and take half the connections; a probe
/// bound without `SO_REUSEPORT` is refused by the kernel when the port is taken.
fn ensure_port_free(addr: SocketAddr) -> io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    // SO_REUSEADDR only lets us past connections in TIME_WAIT, never past a live listener.
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {addr}: {e} (is another server running?)"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_server_on_the_same_port_is_refused() {
        let (_listeners, bound) = bind_all(&["127.0.0.1:0".parse().unwrap()], 2, 16).unwrap();
        let error = bind_all(&bound, 1, 16).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        assert!(error.to_string().contains("another server"), "{error}");
    }
}
