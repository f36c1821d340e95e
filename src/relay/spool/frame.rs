//! The spool's record framing, shared by segments and the journal: a fixed header that says
//! what follows and how long it is, a CRC over all of it, and the length-prefixed fields
//! inside.
//!
//! What it does: [`record_into`] frames a payload; [`parse_header`] reads a header and
//! [`check_record`] verifies a payload against it, telling a record apart from a torn or
//! corrupt one; [`FieldWriter`] and [`FieldReader`] write and read the fields of a payload
//! (integers little-endian, byte strings with a `u32` length), never panicking on bad input.
//!
//! What it does not do: file I/O (the segment and journal modules read and write files), or
//! know what any kind of record means.
//!
//! The header, [`HEADER_LEN`] bytes:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic: `FSPS` in a segment, `FSPJ` in the journal |
//! | 4 | format version ([`FORMAT_VERSION`]) |
//! | 5 | kind of record (each file has its own table) |
//! | 6..8 | reserved, zero |
//! | 8..12 | payload length, `u32` little-endian |
//! | 12..16 | CRC-32 (IEEE) of bytes 4..12 and of the payload |
//!
//! The CRC covers the length, so a length damaged by a torn write or a flipped bit is caught
//! like damaged content (it then either runs past the end of the file or fails the CRC).

/// Bytes in a record header.
pub(super) const HEADER_LEN: usize = 16;

/// The record format written by this version of fastsmtpd. A record with a valid CRC and
/// another version was written by another fastsmtpd, and opening the spool fails rather than
/// drop mail it cannot read.
pub(super) const FORMAT_VERSION: u8 = 1;

/// The largest payload a record holds, in bytes (the header's length is a `u32`).
pub(super) const MAX_PAYLOAD_BYTES: usize = u32::MAX as usize;

/// A record header, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    /// Format version.
    pub(super) version: u8,
    /// Kind of record.
    pub(super) kind: u8,
    /// Payload length in bytes.
    pub(super) len: u32,
    /// The CRC the header claims.
    crc: u32,
}

/// What the bytes at a place in a file are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bad {
    /// Not a header: wrong magic or reserved bytes.
    NotAHeader,
    /// The record runs past the end of the file (a torn write).
    Short,
    /// The CRC does not match (a torn or damaged write).
    Crc,
}

/// The spool's CRC seed: the CRC-32's initial state, random per spool (kept in `DIR/key`),
/// so a record is good only for the spool that wrote it. Why: a message body may hold
/// anything, a spool record included; after damage, recovery looks for good records past
/// it, and a record quoted in a body (an attacker's, with a forged envelope) must not pass
/// for one of ours. Without the seed nobody outside the spool can make a CRC that passes
/// (one chance in 2^32). [`Seed::LEGACY`] (0, the plain CRC-32) reads spools made before
/// seeds were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seed(pub(super) u32);

impl Seed {
    /// The plain CRC-32 (spools without a key file, written before seeds).
    pub(super) const LEGACY: Seed = Seed(0);
}

/// Appends one framed record (`magic`, `kind`, `payload`) to `out`, its CRC seeded by `seed`.
pub(super) fn record_into(
    out: &mut Vec<u8>,
    seed: Seed,
    magic: &[u8; 4],
    kind: u8,
    payload: &[u8],
) {
    record_parts_into(out, seed, magic, kind, &[payload]);
}

/// Appends one framed record whose payload is `parts` one after another (a message's
/// envelope and body, without copying the body twice). Callers keep the payload under
/// [`MAX_PAYLOAD_BYTES`].
pub(super) fn record_parts_into(
    out: &mut Vec<u8>,
    seed: Seed,
    magic: &[u8; 4],
    kind: u8,
    parts: &[&[u8]],
) {
    let total: usize = parts.iter().map(|part| part.len()).sum();
    let len = u32::try_from(total).unwrap_or(u32::MAX);
    let mut covered = [0u8; 8];
    covered[0] = FORMAT_VERSION;
    covered[1] = kind;
    covered[4..8].copy_from_slice(&len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new_with_initial(seed.0);
    crc.update(&covered);
    for part in parts {
        crc.update(part);
    }
    out.reserve(HEADER_LEN + total);
    out.extend_from_slice(magic);
    out.extend_from_slice(&covered);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// Reads the header in `bytes` (at least [`HEADER_LEN`] of them), checking its magic and
/// reserved bytes (the CRC is checked with the payload, by [`check_record`]).
pub(super) fn parse_header(bytes: &[u8], magic: &[u8; 4]) -> Result<Header, Bad> {
    let Some(bytes) = bytes.get(..HEADER_LEN) else {
        return Err(Bad::Short);
    };
    if &bytes[0..4] != magic || bytes[6..8] != [0, 0] {
        return Err(Bad::NotAHeader);
    }
    Ok(Header {
        version: bytes[4],
        kind: bytes[5],
        len: u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        crc: u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]),
    })
}

/// Whether `payload` is the one `header` was written with, by the spool of `seed`.
pub(super) fn check_record(seed: Seed, header: &Header, payload: &[u8]) -> Result<(), Bad> {
    if payload.len() != header.len as usize {
        return Err(Bad::Short);
    }
    let mut covered = [0u8; 8];
    covered[0] = header.version;
    covered[1] = header.kind;
    covered[4..8].copy_from_slice(&header.len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new_with_initial(seed.0);
    crc.update(&covered);
    crc.update(payload);
    if crc.finalize() == header.crc {
        Ok(())
    } else {
        Err(Bad::Crc)
    }
}

/// Writes the fields of a payload.
#[derive(Debug)]
pub(super) struct FieldWriter<'a> {
    /// Where they go.
    out: &'a mut Vec<u8>,
}

impl<'a> FieldWriter<'a> {
    /// Writes into `out`, after what it holds.
    pub(super) fn new(out: &'a mut Vec<u8>) -> FieldWriter<'a> {
        FieldWriter { out }
    }

    /// One byte.
    pub(super) fn u8(&mut self, value: u8) {
        self.out.push(value);
    }

    /// A `u32`, little-endian.
    pub(super) fn u32(&mut self, value: u32) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    /// A `u64`, little-endian.
    pub(super) fn u64(&mut self, value: u64) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    /// A byte string: its length as a `u32`, then its bytes. Callers keep strings under
    /// [`MAX_PAYLOAD_BYTES`] (the record's length check refuses anything larger).
    pub(super) fn bytes(&mut self, value: &[u8]) {
        self.u32(u32::try_from(value.len()).unwrap_or(u32::MAX));
        self.out.extend_from_slice(value);
    }

    /// An optional byte string: `0`, or `1` and the string.
    pub(super) fn optional_bytes(&mut self, value: Option<&[u8]>) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                self.bytes(value);
            }
        }
    }

    /// An optional `u64`: `0`, or `1` and the number.
    pub(super) fn optional_u64(&mut self, value: Option<u64>) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                self.u64(value);
            }
        }
    }
}

/// A payload's fields did not parse (a record with a valid CRC that this code cannot read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Malformed;

/// Reads the fields of a payload, in the order [`FieldWriter`] wrote them.
#[derive(Debug)]
pub(super) struct FieldReader<'a> {
    /// The payload.
    bytes: &'a [u8],
    /// Bytes read so far.
    at: usize,
}

impl<'a> FieldReader<'a> {
    /// Reads `bytes` from the start.
    pub(super) fn new(bytes: &'a [u8]) -> FieldReader<'a> {
        FieldReader { bytes, at: 0 }
    }

    /// Bytes read so far.
    pub(super) fn position(&self) -> usize {
        self.at
    }

    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.at.checked_add(n).ok_or(Malformed)?;
        let taken = self.bytes.get(self.at..end).ok_or(Malformed)?;
        self.at = end;
        Ok(taken)
    }

    /// One byte.
    pub(super) fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    /// A `u32`.
    pub(super) fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A `u64`.
    pub(super) fn u64(&mut self) -> Result<u64, Malformed> {
        let b = self.take(8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(b);
        Ok(u64::from_le_bytes(array))
    }

    /// A byte string.
    pub(super) fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// An optional byte string.
    pub(super) fn optional_bytes(&mut self) -> Result<Option<&'a [u8]>, Malformed> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.bytes()?)),
            _ => Err(Malformed),
        }
    }

    /// An optional `u64`.
    pub(super) fn optional_u64(&mut self) -> Result<Option<u64>, Malformed> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.u64()?)),
            _ => Err(Malformed),
        }
    }

    /// The bytes not read yet.
    pub(super) fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.at..).unwrap_or_default()
    }

    /// Fails unless every byte was read (a payload with trailing bytes is not ours).
    pub(super) fn end(&self) -> Result<(), Malformed> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(Malformed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record passes only with the seed it was written with: another spool's (or the
    /// legacy plain CRC) fails, so a record quoted from elsewhere is never taken for ours.
    #[test]
    fn a_record_is_good_only_for_its_seed() {
        let mut out = Vec::new();
        record_into(&mut out, Seed(0x5eed_0001), b"FSPS", 1, b"payload");
        let header = parse_header(&out, b"FSPS").unwrap();
        let payload = &out[HEADER_LEN..];
        assert_eq!(check_record(Seed(0x5eed_0001), &header, payload), Ok(()));
        assert_eq!(
            check_record(Seed(0x5eed_0002), &header, payload),
            Err(Bad::Crc)
        );
        assert_eq!(check_record(Seed::LEGACY, &header, payload), Err(Bad::Crc));
        let mut legacy = Vec::new();
        record_into(&mut legacy, Seed::LEGACY, b"FSPS", 1, b"payload");
        let mut plain = crc32fast::Hasher::new();
        plain.update(&legacy[4..12]);
        plain.update(b"payload");
        assert_eq!(
            legacy[12..16],
            plain.finalize().to_le_bytes(),
            "LEGACY is the plain CRC-32"
        );
    }

    #[test]
    fn a_record_round_trips_and_every_damage_is_caught() {
        let mut out = Vec::new();
        record_into(&mut out, Seed(7), b"FSPS", 7, b"hello payload");
        assert_eq!(out.len(), HEADER_LEN + 13);
        let header = parse_header(&out, b"FSPS").unwrap();
        assert_eq!((header.version, header.kind, header.len), (1, 7, 13));
        assert_eq!(check_record(Seed(7), &header, &out[HEADER_LEN..]), Ok(()));
        assert_eq!(parse_header(&out, b"FSPJ"), Err(Bad::NotAHeader));
        assert_eq!(
            parse_header(&out[..HEADER_LEN - 1], b"FSPS"),
            Err(Bad::Short)
        );
        assert_eq!(
            check_record(Seed(7), &header, &out[HEADER_LEN..out.len() - 1]),
            Err(Bad::Short)
        );
        // Every single flipped bit after the magic is caught, by the header or by the CRC.
        for byte in 4..out.len() {
            for bit in 0..8 {
                let mut damaged = out.clone();
                damaged[byte] ^= 1 << bit;
                let caught = match parse_header(&damaged, b"FSPS") {
                    Err(_) => true,
                    Ok(h) => {
                        let payload = damaged.get(HEADER_LEN..).unwrap_or_default();
                        let payload = payload.get(..h.len as usize).unwrap_or(payload);
                        check_record(Seed(7), &h, payload).is_err()
                    }
                };
                assert!(caught, "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn fields_round_trip_and_a_short_payload_is_malformed() {
        let mut out = Vec::new();
        let mut w = FieldWriter::new(&mut out);
        w.u8(3);
        w.u32(70_000);
        w.u64(u64::MAX - 1);
        w.bytes(b"abc");
        w.optional_bytes(None);
        w.optional_bytes(Some(b""));
        w.optional_u64(Some(9));
        w.optional_u64(None);
        let mut r = FieldReader::new(&out);
        assert_eq!(r.u8(), Ok(3));
        assert_eq!(r.u32(), Ok(70_000));
        assert_eq!(r.u64(), Ok(u64::MAX - 1));
        assert_eq!(r.bytes(), Ok(&b"abc"[..]));
        assert_eq!(r.optional_bytes(), Ok(None));
        assert_eq!(r.optional_bytes(), Ok(Some(&b""[..])));
        assert_eq!(r.optional_u64(), Ok(Some(9)));
        assert_eq!(r.optional_u64(), Ok(None));
        assert_eq!(r.end(), Ok(()));
        for cut in 0..out.len() {
            let mut r = FieldReader::new(&out[..cut]);
            let all = (|| {
                r.u8()?;
                r.u32()?;
                r.u64()?;
                r.bytes()?;
                r.optional_bytes()?;
                r.optional_bytes()?;
                r.optional_u64()?;
                r.optional_u64()?;
                r.end()
            })();
            assert_eq!(all, Err(Malformed), "cut at {cut}");
        }
        // A length that claims more than there is.
        let mut r = FieldReader::new(&[0xff, 0xff, 0xff, 0xff, 1]);
        assert_eq!(r.bytes(), Err(Malformed));
    }
}
