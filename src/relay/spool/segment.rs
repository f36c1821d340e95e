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
    self, check_record, parse_header, record_into, record_parts_into, FieldReader, FieldWriter,
    Malformed, Seed, HEADER_LEN,
};
use super::{BodyType, ClientIdentity, Envelope, MailParams, Notify, Recipient, Ret};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
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
    seed: Seed,
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
    record_parts_into(out, seed, SEGMENT_MAGIC, KIND_MESSAGE, &[&head, body]);
    Ok(body_at)
}

/// Appends a framed seal record: segment `segment` is trusted only up to `len` bytes.
pub(super) fn seal_record_into(out: &mut Vec<u8>, seed: Seed, segment: u64, len: u64) {
    let mut payload = Vec::with_capacity(16);
    let mut w = FieldWriter::new(&mut payload);
    w.u64(segment);
    w.u64(len);
    record_into(out, seed, SEGMENT_MAGIC, KIND_SEAL, &payload);
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
    /// Where the trusted part ends: the end of the last good record, wherever it was found.
    pub(super) trusted_len: u64,
    /// The stretches before `trusted_len` that hold no good record, `(start, end)`: damage
    /// the scan stepped over to reach good records after it.
    pub(super) gaps: Vec<(u64, u64)>,
    /// The file's length (more than `trusted_len` when a tail is torn or damaged).
    pub(super) file_len: u64,
    /// Whole records (their header sound, their length inside the file) that failed their
    /// check: many of them and few good ones mean the key is not this spool's.
    pub(super) bad_records: u64,
    /// The record at offset 0 passed its check.
    pub(super) first_good: bool,
}

/// How many bytes a scan may read while looking for good records after damage, as a
/// multiple of the segment's length (plus [`RESYNC_READ_FLOOR_BYTES`]). Each candidate
/// costs a read of the length its header claims; a damaged stretch full of record-like
/// headers (message bodies may hold anything) could otherwise make the search quadratic.
const RESYNC_READ_BUDGET_FACTOR: u64 = 4;

/// The part of the search budget that does not scale with the segment (bytes).
const RESYNC_READ_FLOOR_BYTES: u64 = 64 * 1024 * 1024;

/// Bytes read at a time while searching damage for the next record's magic.
const RESYNC_CHUNK_BYTES: usize = 1024 * 1024;

/// A good record read at some place: its header and where it ends.
struct Found {
    /// Its header.
    header: frame::Header,
    /// Where it ends in the file.
    end: u64,
}

/// Reads segment `path` from the start, record by record, verifying each CRC.
///
/// A record that is torn, fails its CRC or is not a record ends the run of records framed
/// one after another. What follows is searched for good records, because one damaged record
/// (a flipped bit, a sector gone bad) must not cost the intact messages after it:
/// - first at the end the bad record's header claims (when only its content is damaged, the
///   next record starts exactly there);
/// - else at each later `FSPS` magic, a candidate being good only when its whole record
///   passes its CRC and decodes, and, for a message, its id is above the last one kept
///   before the damage: ids only grow within a segment, which also refuses most records
///   that a message body quotes (a body may hold anything, even a record). A message kept
///   after the damage is dropped again when a later one has an id not above its own: it
///   was quoted, not written (`keep_message`). A quote whose id falls between its true
///   neighbours' would pass (or displace a true record with a higher id); it takes damage to
///   exactly the header of the record that quotes it, and ids its author cannot see.
///
/// The stretches stepped over are [`Scan::gaps`]; a tail with no good record after it is
/// left out of [`Scan::trusted_len`]. A crash leaves only a torn tail (every commit syncs
/// the whole file before its `250`), so a good record found after damage in the newest
/// segment may be one whose commit was never acknowledged: kept all the same, it is
/// delivered once more than asked at worst, the failure RFC 5321 §6.1 tolerates.
///
/// Errors: I/O, and a record framed in the first run with a valid CRC that cannot be read
/// (another format version, or a payload that does not decode), which means another
/// fastsmtpd wrote it: opening fails rather than drop its mail.
pub(super) fn scan_segment(path: &Path, seed: Seed) -> io::Result<Scan> {
    let file = super::open_to_read(path)?;
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut scan = Scan {
        file_len,
        ..Scan::default()
    };
    let mut header_bytes = [0u8; HEADER_LEN];
    let mut payload = Vec::new();
    let mut at = 0u64;
    // Whether each kept message came after damage, found by a search or framed after one
    // that was (see `keep_message`).
    let mut searched_flags: Vec<bool> = Vec::new();
    // Where the seals kept are, and whether any damage was stepped over (for `Scan::gaps`).
    let mut seal_extents: Vec<(u64, u64)> = Vec::new();
    let mut stepped_over = false;
    let mut budget = file_len
        .saturating_mul(RESYNC_READ_BUDGET_FACTOR)
        .saturating_add(RESYNC_READ_FLOOR_BYTES);
    while at < file_len {
        // The next record, framed right after the last one.
        let mut claimed_end = None;
        let mut framed = None;
        if file_len - at >= HEADER_LEN as u64 {
            reader.read_exact(&mut header_bytes)?;
            if let Ok(header) = parse_header(&header_bytes, SEGMENT_MAGIC) {
                let end = at + HEADER_LEN as u64 + u64::from(header.len);
                if end <= file_len {
                    claimed_end = Some(end);
                    payload.resize(header.len as usize, 0);
                    reader.read_exact(&mut payload)?;
                    if check_record(seed, &header, &payload).is_ok() {
                        scan.first_good |= at == 0;
                        framed = Some(Found { header, end });
                    } else {
                        scan.bad_records += 1;
                    }
                }
            }
        }
        let (found, searched) = match framed {
            Some(found) => (found, stepped_over),
            None => {
                // Damage (or a torn tail): look for the next good record after it.
                let file = reader.get_ref();
                let floor = id_floor(&scan, &searched_flags);
                let segment = Segment {
                    file,
                    seed,
                    len: file_len,
                    bad: std::cell::Cell::new(0),
                };
                let Some((start, found)) =
                    resync(&segment, at, claimed_end, floor, &mut payload, &mut budget)
                        .inspect(|_| scan.bad_records += segment.bad.get())?
                else {
                    break; // nothing good after it: a torn tail, or damage to its end
                };
                stepped_over = true;
                reader.seek(io::SeekFrom::Start(found.end))?;
                at = start;
                (found, true)
            }
        };
        let end = found.end;
        match decode(path, at, &found, &payload) {
            Ok(Decoded::Message(scanned)) => {
                keep_message(&mut scan, &mut searched_flags, scanned, searched);
            }
            Ok(Decoded::Seal(seal)) => {
                scan.seals.push(seal);
                seal_extents.push((at, end));
            }
            // Before any damage: another fastsmtpd's record, and opening fails (see above).
            Err(e) if !stepped_over => return Err(e),
            // After damage the framing may run inside a damaged message's body, where a quoted
            // record of any version can sit: stepped over, never a reason to refuse the spool.
            Err(_) => {}
        }
        at = end;
        scan.trusted_len = at;
    }
    if stepped_over {
        // The gaps: what no kept record covers (a message dropped as quoted is damage too).
        let mut kept: Vec<(u64, u64)> = scan
            .messages
            .iter()
            .map(|m| (m.offset, m.offset + m.record_len))
            .chain(seal_extents)
            .collect();
        kept.sort_unstable();
        let mut covered = 0;
        for (start, end) in kept {
            if start > covered {
                scan.gaps.push((covered, start));
            }
            covered = covered.max(end);
        }
    }
    Ok(scan)
}

/// The id a message found by a search must be above: that of the last message kept from
/// before the first damage (those after it may yet be dropped, see `keep_message`).
fn id_floor(scan: &Scan, searched_flags: &[bool]) -> Option<u64> {
    scan.messages
        .iter()
        .zip(searched_flags)
        .rev()
        .find(|(_, &searched)| !searched)
        .map(|(message, _)| message.id)
}

/// Keeps `scanned` unless ids say it or messages before it are records quoted in a body.
/// Ids only grow within a segment, so when `scanned`'s id is not above the last kept one's,
/// the kept messages from after the damage whose ids are not below it are dropped as quoted
/// (a quote's id is whatever its author wrote: a high one would otherwise shut out every
/// record written after it); one from before the damage is never dropped, `scanned` is.
fn keep_message(scan: &mut Scan, searched_flags: &mut Vec<bool>, scanned: Scanned, searched: bool) {
    while let (Some(last), Some(&true)) = (scan.messages.last(), searched_flags.last()) {
        if scanned.id <= last.id {
            scan.messages.pop();
            searched_flags.pop();
        } else {
            break;
        }
    }
    if scan
        .messages
        .last()
        .is_some_and(|last| scanned.id <= last.id)
    {
        return;
    }
    scan.messages.push(scanned);
    searched_flags.push(searched);
}

/// A good record, decoded.
enum Decoded {
    /// A message.
    Message(Scanned),
    /// A seal, (segment, trusted length).
    Seal((u64, u64)),
}

/// Decodes the good record `found` at `at` whose payload is `payload`. Errors as
/// [`scan_segment`] says, naming the place.
fn decode(path: &Path, at: u64, found: &Found, payload: &[u8]) -> io::Result<Decoded> {
    let unreadable = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: {what} at offset {at} (written by another version of fastsmtpd?)",
                path.display()
            ),
        )
    };
    let header = &found.header;
    if header.version != frame::FORMAT_VERSION {
        return Err(unreadable("a record of an unknown format version"));
    }
    match header.kind {
        KIND_MESSAGE => {
            let (id, envelope, body_at) =
                parse_message(payload).map_err(|_| unreadable("an unreadable message"))?;
            let body_offset = at + (HEADER_LEN + body_at) as u64;
            Ok(Decoded::Message(Scanned {
                id,
                offset: at,
                record_len: found.end - at,
                body_offset,
                body_len: found.end - body_offset,
                envelope,
            }))
        }
        KIND_SEAL => {
            let seal = parse_seal(payload).map_err(|_| unreadable("an unreadable seal"))?;
            Ok(Decoded::Seal(seal))
        }
        _ => Err(unreadable("a record of an unknown kind")),
    }
}

/// A segment file being searched after damage: the file, the spool's seed, its length.
struct Segment<'a> {
    /// The open file.
    file: &'a File,
    /// The spool's CRC seed.
    seed: Seed,
    /// The file's length.
    len: u64,
    /// Whole records with a sound header that failed their check, counted.
    bad: std::cell::Cell<u64>,
}

/// After the bad record at `bad_at`: the first good record after it, `(start, record)`,
/// with its payload in `payload`, or `None` when there is none (or the read `budget` ran
/// out). Tries `claimed_end` (the bad record's claimed end) first, then every later magic.
fn resync(
    segment: &Segment<'_>,
    bad_at: u64,
    claimed_end: Option<u64>,
    floor: Option<u64>,
    payload: &mut Vec<u8>,
    budget: &mut u64,
) -> io::Result<Option<(u64, Found)>> {
    let (file, file_len) = (segment.file, segment.len);
    if let Some(end) = claimed_end.filter(|&end| end > bad_at && end < file_len) {
        if let Some(found) = candidate(segment, end, floor, payload, budget)? {
            return Ok(Some((end, found)));
        }
    }
    let finder = memchr::memmem::Finder::new(SEGMENT_MAGIC);
    let mut chunk = vec![0u8; RESYNC_CHUNK_BYTES];
    let mut from = bad_at + 1;
    while from < file_len && *budget > 0 {
        let want = (file_len - from).min(chunk.len() as u64) as usize;
        read_exact_at(file, &mut chunk[..want], from)?;
        *budget = budget.saturating_sub(want as u64);
        for hit in finder.find_iter(&chunk[..want]) {
            let start = from + hit as u64;
            if let Some(found) = candidate(segment, start, floor, payload, budget)? {
                return Ok(Some((start, found)));
            }
        }
        // The next chunk overlaps this one by a magic's length less one, so a magic that
        // straddles the boundary is seen whole.
        if from + want as u64 >= file_len {
            break;
        }
        from += (want - (SEGMENT_MAGIC.len() - 1)) as u64;
    }
    Ok(None)
}

/// The record at `start`, when it is good: whole, its CRC right, of this format, decoding,
/// and (a message) with an id above `floor`. Its payload is left in `payload`.
fn candidate(
    segment: &Segment<'_>,
    start: u64,
    floor: Option<u64>,
    payload: &mut Vec<u8>,
    budget: &mut u64,
) -> io::Result<Option<Found>> {
    let (file, seed, file_len) = (segment.file, segment.seed, segment.len);
    if file_len - start < HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut header_bytes = [0u8; HEADER_LEN];
    read_exact_at(file, &mut header_bytes, start)?;
    let Ok(header) = parse_header(&header_bytes, SEGMENT_MAGIC) else {
        return Ok(None);
    };
    let end = start + HEADER_LEN as u64 + u64::from(header.len);
    if end > file_len || u64::from(header.len) > *budget || header.version != frame::FORMAT_VERSION
    {
        return Ok(None);
    }
    *budget -= u64::from(header.len);
    payload.resize(header.len as usize, 0);
    read_exact_at(file, payload, start + HEADER_LEN as u64)?;
    if check_record(seed, &header, payload).is_err() {
        segment.bad.set(segment.bad.get() + 1);
        return Ok(None);
    }
    let good = match header.kind {
        KIND_MESSAGE => {
            parse_message(payload).is_ok_and(|(id, _, _)| floor.is_none_or(|floor| id > floor))
        }
        KIND_SEAL => parse_seal(payload).is_ok(),
        _ => false,
    };
    Ok(good.then_some(Found { header, end }))
}

/// `pread` of exactly `buf.len()` bytes at `offset`.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
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
        let body_at = message_record_into(
            &mut out,
            Seed(3),
            77,
            &envelope,
            b"Subject: x\r\n\r\nhi\r\n",
        )
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
