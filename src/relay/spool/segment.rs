//! Segment files: what a message record holds, and reading a segment back.
//!
//! What it does: names segment files ([`segment_path`], [`parse_segment_name`]); encodes a
//! message record (its envelope, then its raw body) and a seal record ([`message_record_into`],
//! [`seal_record_into`]) and decodes them ([`parse_message`]); [`scan_segment`] reads a whole
//! segment from the start, record by record, verifying each CRC, and says where the trusted
//! part ends.
//!
//! What it does not do: decide when to write, sync, rotate or delete a segment (the spool
//! does, in `mod.rs`), or keep bodies in memory (a scan keeps each record's place and
//! envelope; bodies are read on demand).
//!
//! A message record's payload: `u64` spool id, `u64` arrival time (Unix milliseconds), the
//! reverse path, the MAIL parameters (RET, ENVID, BODY, SMTPUTF8, SIZE), the client's identity
//! (HELO name, address, protocol word for the `Received:` line), the recipients (address,
//! NOTIFY, ORCPT), each as a length-prefixed field; then the body, the rest of the payload.
//! The envelope comes first with its own `u32` length, so the body's place is known without
//! decoding the envelope.

use super::frame::{
    self, check_record, parse_header, record_into, record_parts_into, Bad, FieldReader,
    FieldWriter, Malformed, HEADER_LEN,
};
use super::{BodyType, ClientIdentity, Envelope, MailParams, Notify, Recipient, Ret};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

/// The magic that starts every segment record.
pub(super) const SEGMENT_MAGIC: &[u8; 4] = b"FSPS";

/// Record kind: a message (envelope and body).
pub(super) const KIND_MESSAGE: u8 = 1;

/// Record kind: a seal, "segment N is trusted only up to length L" (written after a commit
/// failed and its segment could not be cut back).
pub(super) const KIND_SEAL: u8 = 2;

/// The file of segment `number` in the spool's segment directory.
pub(super) fn segment_path(seg_dir: &Path, number: u64) -> PathBuf {
    seg_dir.join(format!("{number:016}.seg"))
}

/// The number of a segment file's name (`0000000000000042.seg` is 42), or `None` for any
/// other name.
pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The bytes of a message record's payload before the body: the envelope's length field and
/// the envelope. Errors when a field is too long for the format.
fn envelope_into(out: &mut Vec<u8>, id: u64, envelope: &Envelope) -> io::Result<()> {
    let too_long = || io::Error::new(io::ErrorKind::InvalidInput, "envelope field too long");
    let start = out.len();
    out.extend_from_slice(&[0; 4]); // the envelope's length, filled in below
    let mut w = FieldWriter::new(out);
    w.u64(id);
    w.u64(envelope.arrival_unix_ms);
    w.bytes(&envelope.reverse_path);
    let params = &envelope.params;
    w.u8(match params.ret {
        None => 0,
        Some(Ret::Full) => 1,
        Some(Ret::Headers) => 2,
    });
    w.optional_bytes(params.envid.as_deref());
    w.u8(match params.body {
        BodyType::Unspecified => 0,
        BodyType::SevenBit => 1,
        BodyType::EightBitMime => 2,
        BodyType::BinaryMime => 3,
    });
    w.u8(u8::from(params.smtputf8));
    w.optional_u64(params.size);
    w.bytes(&envelope.client.helo);
    w.bytes(&envelope.client.address);
    w.bytes(&envelope.client.protocol);
    w.u32(u32::try_from(envelope.recipients.len()).map_err(|_| too_long())?);
    for recipient in &envelope.recipients {
        w.bytes(&recipient.address);
        w.u8(recipient.notify.bits());
        w.optional_bytes(recipient.orcpt.as_deref());
    }
    let len = out.len() - start - 4;
    let len = u32::try_from(len).map_err(|_| too_long())?;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Appends a framed message record (envelope, then `body`) to `out`; returns the body's
/// offset from the start of the record. Errors (appending nothing) when the record would
/// pass [`frame::MAX_PAYLOAD_BYTES`].
pub(super) fn message_record_into(
    out: &mut Vec<u8>,
    id: u64,
    envelope: &Envelope,
    body: &[u8],
) -> io::Result<u64> {
    let mut head = Vec::with_capacity(256);
    envelope_into(&mut head, id, envelope)?;
    let body_at = (HEADER_LEN + head.len()) as u64;
    if head.len().saturating_add(body.len()) > frame::MAX_PAYLOAD_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "message too large for one spool record",
        ));
    }
    record_parts_into(out, SEGMENT_MAGIC, KIND_MESSAGE, &[&head, body]);
    Ok(body_at)
}

/// Appends a framed seal record: segment `segment` is trusted only up to `len` bytes.
pub(super) fn seal_record_into(out: &mut Vec<u8>, segment: u64, len: u64) {
    let mut payload = Vec::with_capacity(16);
    let mut w = FieldWriter::new(&mut payload);
    w.u64(segment);
    w.u64(len);
    record_into(out, SEGMENT_MAGIC, KIND_SEAL, &payload);
}

/// A message record's payload, decoded: the spool id, the envelope, and where the body starts
/// in the payload.
pub(super) fn parse_message(payload: &[u8]) -> Result<(u64, Envelope, usize), Malformed> {
    let mut outer = FieldReader::new(payload);
    let envelope_bytes = outer.bytes()?;
    let body_at = outer.position();
    let mut r = FieldReader::new(envelope_bytes);
    let id = r.u64()?;
    let arrival_unix_ms = r.u64()?;
    let reverse_path = r.bytes()?.to_vec();
    let ret = match r.u8()? {
        0 => None,
        1 => Some(Ret::Full),
        2 => Some(Ret::Headers),
        _ => return Err(Malformed),
    };
    let envid = r.optional_bytes()?.map(<[u8]>::to_vec);
    let body = match r.u8()? {
        0 => BodyType::Unspecified,
        1 => BodyType::SevenBit,
        2 => BodyType::EightBitMime,
        3 => BodyType::BinaryMime,
        _ => return Err(Malformed),
    };
    let smtputf8 = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(Malformed),
    };
    let size = r.optional_u64()?;
    let client = ClientIdentity {
        helo: r.bytes()?.to_vec(),
        address: r.bytes()?.to_vec(),
        protocol: r.bytes()?.to_vec(),
    };
    let count = r.u32()? as usize;
    // Each recipient takes at least 6 bytes: a bound from the payload, not from the count.
    let mut recipients = Vec::with_capacity(count.min(r.rest().len() / 6));
    for _ in 0..count {
        let address = r.bytes()?.to_vec();
        let notify = Notify::from_bits(r.u8()?).ok_or(Malformed)?;
        let orcpt = r.optional_bytes()?.map(<[u8]>::to_vec);
        recipients.push(Recipient {
            address,
            notify,
            orcpt,
        });
    }
    r.end()?;
    let envelope = Envelope {
        arrival_unix_ms,
        reverse_path,
        params: MailParams {
            ret,
            envid,
            body,
            smtputf8,
            size,
        },
        client,
        recipients,
    };
    Ok((id, envelope, body_at))
}

/// A seal record's payload: (segment, trusted length).
pub(super) fn parse_seal(payload: &[u8]) -> Result<(u64, u64), Malformed> {
    let mut r = FieldReader::new(payload);
    let seal = (r.u64()?, r.u64()?);
    r.end()?;
    Ok(seal)
}

/// One message found by a scan.
#[derive(Debug)]
pub(super) struct Scanned {
    /// Its spool id.
    pub(super) id: u64,
    /// Where its record starts in the segment.
    pub(super) offset: u64,
    /// Its record's length, header included.
    pub(super) record_len: u64,
    /// Where its body starts in the segment.
    pub(super) body_offset: u64,
    /// Its body's length.
    pub(super) body_len: u64,
    /// Its envelope.
    pub(super) envelope: Envelope,
}

/// What a scan of one segment found.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// The messages, in order.
    pub(super) messages: Vec<Scanned>,
    /// The seals, (segment, trusted length), in order.
    pub(super) seals: Vec<(u64, u64)>,
    /// Where the trusted part ends: the end of the last good record.
    pub(super) trusted_len: u64,
    /// The file's length (more than `trusted_len` when a tail is torn or damaged).
    pub(super) file_len: u64,
}

/// Reads segment `path` from the start: every record up to the first one that is torn, fails
/// its CRC or is not a record. That one and everything after it is untrusted: records are
/// only ever appended, so a record that fails its CRC was never wholly written, or was
/// damaged since; the bytes after it cannot be framed with confidence (a length inside them
/// may be garbage), so the rest of the segment is left out too.
///
/// Errors: I/O, and a record with a valid CRC that cannot be read (another format version,
/// or a payload that does not decode), which means another fastsmtpd wrote it: opening fails
/// rather than drop its mail.
pub(super) fn scan_segment(path: &Path) -> io::Result<Scan> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut scan = Scan {
        file_len,
        ..Scan::default()
    };
    let mut header_bytes = [0u8; HEADER_LEN];
    let mut payload = Vec::new();
    let mut at = 0u64;
    loop {
        if file_len - at < HEADER_LEN as u64 {
            break; // the end, or a torn header
        }
        reader.read_exact(&mut header_bytes)?;
        let Ok(header) = parse_header(&header_bytes, SEGMENT_MAGIC) else {
            break;
        };
        let end = at + HEADER_LEN as u64 + u64::from(header.len);
        if end > file_len {
            break; // torn: runs past the end of the file
        }
        payload.resize(header.len as usize, 0);
        reader.read_exact(&mut payload)?;
        match check_record(&header, &payload) {
            Ok(()) => {}
            Err(Bad::Crc | Bad::Short | Bad::NotAHeader) => break,
        }
        let unreadable = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: {what} at offset {at} (written by another version of fastsmtpd?)",
                    path.display()
                ),
            )
        };
        if header.version != frame::FORMAT_VERSION {
            return Err(unreadable("a record of an unknown format version"));
        }
        match header.kind {
            KIND_MESSAGE => {
                let (id, envelope, body_at) =
                    parse_message(&payload).map_err(|_| unreadable("an unreadable message"))?;
                let body_offset = at + (HEADER_LEN + body_at) as u64;
                scan.messages.push(Scanned {
                    id,
                    offset: at,
                    record_len: end - at,
                    body_offset,
                    body_len: end - body_offset,
                    envelope,
                });
            }
            KIND_SEAL => {
                let seal = parse_seal(&payload).map_err(|_| unreadable("an unreadable seal"))?;
                scan.seals.push(seal);
            }
            _ => return Err(unreadable("a record of an unknown kind")),
        }
        at = end;
        scan.trusted_len = at;
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_others_are_not_segments() {
        let path = segment_path(Path::new("/s/seg"), 42);
        assert_eq!(path, Path::new("/s/seg/0000000000000042.seg"));
        assert_eq!(parse_segment_name("0000000000000042.seg"), Some(42));
        for other in [
            "42.seg",
            "000000000000004a.seg",
            "0000000000000042.seg.tmp",
            "0000000000000042",
            "+000000000000042.seg",
        ] {
            assert_eq!(parse_segment_name(other), None, "{other}");
        }
    }

    #[test]
    fn a_message_record_decodes_to_what_was_encoded_and_every_cut_is_malformed() {
        let envelope = super::super::tests::sample_envelope(3);
        let mut out = Vec::new();
        let body_at = message_record_into(&mut out, 77, &envelope, b"Subject: x\r\n\r\nhi\r\n")
            .unwrap() as usize;
        assert_eq!(&out[body_at..], b"Subject: x\r\n\r\nhi\r\n");
        let (id, decoded, payload_body_at) = parse_message(&out[HEADER_LEN..]).unwrap();
        assert_eq!((id, &decoded), (77, &envelope));
        assert_eq!(HEADER_LEN + payload_body_at, body_at);
        let envelope_end = body_at - HEADER_LEN;
        for cut in 0..envelope_end {
            assert!(parse_message(&out[HEADER_LEN..HEADER_LEN + cut]).is_err());
        }
    }
}
