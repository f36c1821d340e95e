//! Helpers shared by the fuzz targets: decoding the small header that carries the fuzzer's
//! choices (limits, split points, a smuggling vector to insert) in front of the bytes under
//! test.
//!
//! A header is read from the front of the input, a byte at a time; when the input runs out
//! every further read gives 0, so every input decodes to something.

/// Reads fuzzer choices from the front of an input; the rest is the payload.
pub struct Header<'a> {
    data: &'a [u8],
}

impl<'a> Header<'a> {
    /// Starts reading `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Header { data }
    }

    /// One byte (0 once the input is exhausted).
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// Two bytes, little endian.
    pub fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }

    /// Split points: a count byte (0..=8), then that many `u16`s. They are positions in the
    /// payload once reduced modulo `payload.len() + 1` (see [`cut_bounds`]).
    pub fn cuts(&mut self) -> Vec<u16> {
        let n = self.u8() % 9;
        (0..n).map(|_| self.u16()).collect()
    }

    /// Everything not read yet.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// Turns raw cut values into sorted piece end offsets in `0..=len`, the last being `len`.
/// Duplicates are kept on purpose: an empty piece is a legitimate call.
pub fn cut_bounds(raw: &[u16], len: usize) -> Vec<usize> {
    let mut ends: Vec<usize> = raw.iter().map(|&c| c as usize % (len + 1)).collect();
    ends.sort_unstable();
    ends.push(len);
    ends
}

/// Position of the first `CR LF` in `buf`, by plain indexing.
pub fn naive_first_crlf(buf: &[u8]) -> Option<usize> {
    (0..buf.len().saturating_sub(1)).find(|&i| buf[i] == b'\r' && buf[i + 1] == b'\n')
}

/// A fuzzer's choice to insert one of the SMTP smuggling vectors
/// ([`fastsmtpd::proto::data::reference::SMUGGLING_VECTORS`]) into a payload, so the fake
/// ends of data come up often rather than by chance.
#[derive(Debug, Clone, Copy)]
pub struct Splice {
    /// Which vector (modulo the number of vectors).
    pub vector: u8,
    /// Where in the payload (modulo `payload.len() + 1`).
    pub at: u16,
}

impl Splice {
    /// Reads the choice from the header: one byte for the vector, a `u16` for the place.
    pub fn read(header: &mut Header<'_>) -> Splice {
        Splice {
            vector: header.u8(),
            at: header.u16(),
        }
    }

    /// `payload` with the chosen vector inserted at the chosen place.
    pub fn apply(&self, payload: &[u8]) -> Vec<u8> {
        use fastsmtpd::proto::data::reference::SMUGGLING_VECTORS;
        let vector = SMUGGLING_VECTORS[usize::from(self.vector) % SMUGGLING_VECTORS.len()];
        let at = usize::from(self.at) % (payload.len() + 1);
        [&payload[..at], vector.bytes, &payload[at..]].concat()
    }
}

/// Renders bytes as lowercase hex, for assertion messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
