//! A connection's outgoing stream, sans I/O: command bytes, and in their midst the places
//! where a corpus message's content goes.
//!
//! What it does: the client and the workload append commands (and generated content) as
//! bytes, and a corpus message as a [`Body`] reference at the current end ([`Output::push_body`]).
//! The engine takes the stream in order ([`Output::next`]): bytes up to the next body, then
//! the body (which it streams from the file itself), then the bytes after it. Bytes are
//! appended to one buffer that is cleared whenever everything was taken, so steady state
//! allocates nothing.
//!
//! What it does not do: read files or write sockets (the engine and `corpus` do).

use crate::drive::corpus::wire::Form;
use std::collections::VecDeque;

/// A corpus message's content, to be streamed in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Body {
    /// The message's number in the corpus.
    pub message: u32,
    /// DATA (dot-stuffed, with the `.` line) or BDAT (exact octets).
    pub form: Form,
}

/// What comes next in an [`Output`].
#[derive(Debug, PartialEq, Eq)]
pub enum Next<'a> {
    /// Bytes, up to the next body or the end.
    Bytes(&'a [u8]),
    /// A body.
    Body(Body),
    /// Nothing is pending.
    Empty,
}

/// A connection's outgoing stream.
#[derive(Debug, Default)]
pub struct Output {
    /// Bytes appended since the stream was last empty.
    bytes: Vec<u8>,
    /// How many of `bytes` were taken.
    pos: usize,
    /// Bodies not yet taken, each with the offset in `bytes` it comes before.
    bodies: VecDeque<(usize, Body)>,
}

impl Output {
    /// An empty stream with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Output {
        Output {
            bytes: Vec::with_capacity(capacity),
            pos: 0,
            bodies: VecDeque::new(),
        }
    }

    /// Appends bytes.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// Appends a corpus message's content.
    pub fn push_body(&mut self, body: Body) {
        self.bodies.push_back((self.bytes.len(), body));
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pos == self.bytes.len() && self.bodies.is_empty()
    }

    /// Whether a body is pending (the engine then goes through its staging buffer).
    pub fn has_bodies(&self) -> bool {
        !self.bodies.is_empty()
    }

    /// What comes next.
    pub fn next(&self) -> Next<'_> {
        let end = self.bodies.front().map_or(self.bytes.len(), |(at, _)| *at);
        if self.pos < end {
            Next::Bytes(&self.bytes[self.pos..end])
        } else if let Some((_, body)) = self.bodies.front() {
            Next::Body(*body)
        } else {
            Next::Empty
        }
    }

    /// `n` bytes of [`Next::Bytes`] were taken.
    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        debug_assert!(self.pos <= self.bytes.len());
        self.compact();
    }

    /// The body [`Output::next`] returned was taken.
    pub fn take_body(&mut self) -> Option<Body> {
        match self.bodies.front() {
            Some((at, _)) if *at == self.pos => {
                let body = self.bodies.pop_front().map(|(_, b)| b);
                self.compact();
                body
            }
            _ => None,
        }
    }

    /// Starts the buffer over once everything was taken.
    fn compact(&mut self) {
        if self.is_empty() {
            self.bytes.clear();
            self.pos = 0;
        }
    }

    /// Every byte appended since the stream was last empty, taken or not (tests, transcripts).
    pub fn written(&self) -> &[u8] {
        &self.bytes
    }

    /// The bodies not yet taken, with the offset in [`Output::written`] each comes before.
    pub fn bodies(&self) -> impl Iterator<Item = (usize, Body)> + '_ {
        self.bodies.iter().copied()
    }
}

impl std::io::Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_bodies_come_out_in_order() {
        let body = |message| Body {
            message,
            form: Form::Data,
        };
        let mut out = Output::with_capacity(16);
        assert_eq!(out.next(), Next::Empty);
        out.extend_from_slice(b"MAIL\r\n");
        out.push_body(body(1));
        out.push_body(body(2));
        out.extend_from_slice(b"QUIT\r\n");
        assert_eq!(out.next(), Next::Bytes(b"MAIL\r\n"));
        assert_eq!(out.take_body(), None, "bytes come first");
        out.consume(4);
        assert_eq!(out.next(), Next::Bytes(b"\r\n"));
        out.consume(2);
        assert_eq!(out.next(), Next::Body(body(1)));
        assert_eq!(out.take_body(), Some(body(1)));
        assert_eq!(out.next(), Next::Body(body(2)));
        assert_eq!(out.take_body(), Some(body(2)));
        out.extend_from_slice(b"!");
        assert_eq!(out.next(), Next::Bytes(b"QUIT\r\n!"));
        out.consume(7);
        assert!(out.is_empty());
        assert!(out.written().is_empty(), "the buffer starts over");
        // A body with nothing around it.
        out.push_body(body(3));
        assert!(!out.is_empty());
        assert_eq!(out.take_body(), Some(body(3)));
        assert!(out.is_empty());
    }
}
