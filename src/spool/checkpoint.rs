//! Checkpoints: the [`State`] written whole to one file, so a restart replays only the log
//! written since, and compaction may delete the segments before it. The format, and the
//! rule recovery follows when one is damaged, are in the log's module documentation
//! ("Checkpoints"); this file is their code.
//!
//! The codec ([`encode`], [`decode`]) is pure: it never panics, and reserves nothing the
//! input does not hold (every entry it builds consumed at least one input byte).
//! [`write_state`] and [`write_snapshot`] are the thin I/O shell: a temporary file written and synced (a MiB at
//! a time as it is encoded), renamed, the directory synced; [`read`] reads a file back
//! through the same decoder, a block at a time. Never called on the ack path (see `compaction.rs`, which takes checkpoints).

use std::io;
use std::sync::Arc;

use super::record::{Out, RecordError, RouteId};
use super::state::{DeadEntry, Entry, Inconsistent, Location, Restore, Snapshot, State};
use super::storage::{SegmentFile, Storage};
use super::LogError;

/// Checkpoint files are named `<lsn, 20 digits>.ckpt`; one being written is
/// `<lsn>.ckpt.tmp` until it is synced and renamed.
pub const CHECKPOINT_SUFFIX: &str = ".ckpt";
pub const WRITING_SUFFIX: &str = ".ckpt.tmp";

pub const CHECKPOINT_MAGIC: [u8; 4] = *b"HFCK";
pub const CHECKPOINT_VERSION: u8 = 1;
pub const CHECKPOINT_HEADER_LEN: usize = 40;
/// The body is stored in blocks of at most this many bytes, each after its own checksum, so
/// a damaged byte is named to within a block.
pub const BLOCK: usize = 64 << 10;
const BLOCK_CRC: usize = 4;

/// The name of the checkpoint taken at `lsn`.
pub fn checkpoint_name(lsn: u64) -> String {
    format!("{lsn:020}{CHECKPOINT_SUFFIX}")
}

/// The lsn of a checkpoint file's name, if it is one.
pub fn checkpoint_lsn(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(CHECKPOINT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where a checkpoint stands in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointAt {
    /// The state holds every record below this lsn, and none at or after it.
    pub lsn: u64,
    /// Replay starts in this segment (the one of record `lsn - 1`; 0: from the first): every
    /// record at or after `lsn` is in it or a later one, every earlier segment holds only
    /// records below `lsn`.
    pub segment: u64,
}

impl CheckpointAt {
    /// Where a checkpoint of `state` stands.
    pub fn of(state: &State) -> CheckpointAt {
        CheckpointAt {
            lsn: state.next_lsn(),
            segment: state.tail_segment(),
        }
    }
}

/// A decoded checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    pub at: CheckpointAt,
    pub state: State,
}

/// Why a checkpoint file is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadCheckpoint {
    #[error("a checkpoint cut short or too long")]
    Length,
    #[error("no checkpoint magic")]
    Magic,
    #[error("an unknown checkpoint version")]
    Version,
    #[error("a reserved checkpoint byte is not zero")]
    Reserved,
    #[error("a checkpoint header checksum mismatch")]
    HeaderChecksum,
    #[error("a checkpoint checksum mismatch")]
    Checksum,
    /// The file's name and its header disagree (a file renamed by hand).
    #[error("the checkpoint's name and header disagree")]
    Name,
    /// The body's checksums held, but it does not decode: a bug or a foreign writer.
    #[error("the checkpoint does not decode: {0}")]
    Body(RecordError),
    /// The body decodes, but its parts contradict each other.
    #[error("the checkpoint does not hold together: {0}")]
    Inconsistent(Inconsistent),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The state's parts, in the order [`Restore`] takes them back.
pub fn encode_body(state: &State) -> Vec<u8> {
    let mut body = Vec::new();
    encode_parts(state, &mut body, usize::MAX, &mut |_| Ok(())).expect("nothing to flush");
    body
}

/// [`encode_body`] into `body`, handed to `flush` whenever it holds `flush_at` bytes or more
/// (`flush` takes what it wants from the front), so the whole body need never be in memory.
fn encode_parts(
    state: &State,
    body: &mut Vec<u8>,
    flush_at: usize,
    flush: &mut dyn FnMut(&mut Vec<u8>) -> io::Result<()>,
) -> io::Result<()> {
    let mut flushed = |body: &mut Vec<u8>| -> io::Result<()> {
        if body.len() >= flush_at {
            flush(body)?;
        }
        Ok(())
    };
    let mut o = Out(body);
    let [k0, k1] = state.keys();
    o.uint(k0);
    o.uint(k1);
    let names: Vec<(RouteId, &str)> = state.route_names().collect();
    o.uint(names.len() as u64);
    for (id, name) in names {
        o.uint(u64::from(id));
        o.str(name);
    }
    o.uint(state.live_events() as u64);
    let mut previous = 0;
    for (seq, meta) in state.events() {
        // Seqs grow: each one as the distance from the previous.
        o.uint(seq - previous);
        previous = seq;
        let location = meta.location();
        o.uint(location.segment);
        o.uint(location.offset);
        o.uint(u64::from(location.len));
        o.uint(meta.received_at_ms());
        flushed(o.0)?;
    }
    let routes: Vec<_> = state.routes().collect();
    o.uint(routes.len() as u64);
    for (id, queue) in routes {
        o.uint(u64::from(id));
        o.uint(queue.pending_len() as u64);
        for (due, seq, entry) in queue.pending() {
            o.uint(due);
            o.uint(seq);
            o.uint(u64::from(entry.attempts));
            o.uint(entry.not_before_ms);
            o.opt_str(entry.last_error.as_deref());
            o.uint(entry.group);
            flushed(o.0)?;
        }
        o.uint(queue.dead_len() as u64);
        for (seq, dead) in queue.dead() {
            o.uint(seq);
            o.uint(u64::from(dead.attempts));
            o.str(&dead.error);
            o.uint(dead.dead_at_ms);
            o.uint(dead.group);
            flushed(o.0)?;
        }
    }
    let ids = state.id_order().count();
    o.uint(ids as u64);
    for (received_at_ms, fingerprint, seq) in state.id_order() {
        o.uint(received_at_ms);
        o.uint(fingerprint);
        o.uint(seq);
        flushed(o.0)?;
    }
    Ok(())
}

/// The checkpoint file of `state`: header, then the body in checksummed blocks.
pub fn encode(state: &State) -> Vec<u8> {
    seal(CheckpointAt::of(state), &encode_body(state))
}

/// A checkpoint file around `body` (the state's parts, as [`encode`] writes them): the
/// header and every block's checksum. Public so the fuzz target can reach the body's decoder
/// past the checksums.
pub fn seal(at: CheckpointAt, body: &[u8]) -> Vec<u8> {
    let blocks = body.len().div_ceil(BLOCK);
    let mut out = Vec::with_capacity(CHECKPOINT_HEADER_LEN + body.len() + blocks * BLOCK_CRC);
    out.extend_from_slice(&header(at, body.len()));
    for block in body.chunks(BLOCK) {
        out.extend_from_slice(&crc32c::crc32c(block).to_le_bytes());
        out.extend_from_slice(block);
    }
    out
}

/// A checkpoint file's header, for a body of `body_len` bytes.
fn header(at: CheckpointAt, body_len: usize) -> [u8; CHECKPOINT_HEADER_LEN] {
    let mut h = [0; CHECKPOINT_HEADER_LEN];
    h[0..4].copy_from_slice(&CHECKPOINT_MAGIC);
    h[4] = CHECKPOINT_VERSION;
    h[8..16].copy_from_slice(&at.lsn.to_le_bytes());
    h[16..24].copy_from_slice(&at.segment.to_le_bytes());
    h[24..32].copy_from_slice(&(body_len as u64).to_le_bytes());
    let crc = crc32c::crc32c(&h[0..32]);
    h[32..36].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Where byte `at` of the body sits in the file.
fn file_offset(at: usize) -> u64 {
    (CHECKPOINT_HEADER_LEN + (at / BLOCK) * (BLOCK + BLOCK_CRC) + BLOCK_CRC + at % BLOCK) as u64
}

/// Reads a checkpoint held in memory (`spool verify`, repair, tests, the fuzz target). A
/// failure names the offset in the file where it was found.
pub fn decode(bytes: &[u8]) -> Result<Checkpoint, (u64, BadCheckpoint)> {
    let from_memory = |buf: &mut [u8], offset: u64| {
        let start = usize::try_from(offset).map_err(|_| BadCheckpoint::Length)?;
        let part = start
            .checked_add(buf.len())
            .and_then(|end| bytes.get(start..end))
            .ok_or(BadCheckpoint::Length)?;
        buf.copy_from_slice(part);
        Ok::<(), BadCheckpoint>(())
    };
    read_from(bytes.len() as u64, from_memory, &mut |_, _| ()).map_err(|stop| match stop {
        Stop::Bad(offset, why) => (offset, why),
        // Not reached: the length was checked against the header before any block was read.
        Stop::Source(why) => (0, why),
    })
}

/// Reads checkpoint `name` from `storage` a block at a time, each block's checksum checked
/// before any of its bytes is decoded: the file (tens of MiB for a million events) is never
/// whole in memory beside the state it rebuilds. The outer error is a failure to read the
/// file; the inner one is what is wrong with its bytes, at an offset in the file.
pub fn read(
    storage: &dyn Storage,
    name: &str,
) -> Result<Result<Checkpoint, (u64, BadCheckpoint)>, LogError> {
    read_watching(storage, name, &mut |_, _| ())
}

/// [`read`], calling `after_events` once the body's events are in (and checked), before
/// the queues and the dedup window: what knows where every event is can start on that
/// (recovery's check of the old segments) while the rest decodes.
pub fn read_watching(
    storage: &dyn Storage,
    name: &str,
    after_events: &mut dyn FnMut(&State, CheckpointAt),
) -> Result<Result<Checkpoint, (u64, BadCheckpoint)>, LogError> {
    let file = storage
        .open(name)
        .map_err(|e| LogError::io("open", name, e))?;
    let len = file.size().map_err(|e| LogError::io("stat", name, e))?;
    let from_file = |buf: &mut [u8], offset: u64| {
        if file.read_at(buf, offset)? == buf.len() {
            Ok(())
        } else {
            Err(io::Error::from(io::ErrorKind::UnexpectedEof))
        }
    };
    match read_from(len, from_file, after_events) {
        Ok(checkpoint) => Ok(Ok(checkpoint)),
        Err(Stop::Bad(offset, why)) => Ok(Err((offset, why))),
        Err(Stop::Source(e)) => Err(LogError::io("read", name, e)),
    }
}

/// Why reading a checkpoint stopped: its bytes (at an offset in the file), or its source.
enum Stop<E> {
    Bad(u64, BadCheckpoint),
    Source(E),
}

/// Reads the checkpoint file of `file_len` bytes whose bytes at an offset `source` reads
/// (exactly as many as the buffer holds).
fn read_from<E>(
    file_len: u64,
    mut source: impl FnMut(&mut [u8], u64) -> Result<(), E>,
    after_events: &mut dyn FnMut(&State, CheckpointAt),
) -> Result<Checkpoint, Stop<E>> {
    let bad = |offset, why| Err(Stop::Bad(offset, why));
    if file_len < CHECKPOINT_HEADER_LEN as u64 {
        return bad(0, BadCheckpoint::Length);
    }
    let mut h = [0u8; CHECKPOINT_HEADER_LEN];
    source(&mut h, 0).map_err(Stop::Source)?;
    if h[0..4] != CHECKPOINT_MAGIC {
        return bad(0, BadCheckpoint::Magic);
    }
    if crc32c::crc32c(&h[0..32]) != u32_at(&h, 32) {
        return bad(0, BadCheckpoint::HeaderChecksum);
    }
    if h[4] != CHECKPOINT_VERSION {
        return bad(4, BadCheckpoint::Version);
    }
    if h[5..8] != [0; 3] || h[36..40] != [0; 4] {
        return bad(5, BadCheckpoint::Reserved);
    }
    let at = CheckpointAt {
        lsn: u64_at(&h, 8),
        segment: u64_at(&h, 16),
    };
    // The file's length follows from the body's: checked before anything is read or
    // reserved.
    let body_len = usize::try_from(u64_at(&h, 24)).ok();
    let expected = body_len
        .and_then(|len| len.checked_add(len.div_ceil(BLOCK) * BLOCK_CRC))
        .and_then(|len| len.checked_add(CHECKPOINT_HEADER_LEN));
    let (Some(body_len), true) = (body_len, expected.map(|e| e as u64) == Some(file_len)) else {
        return bad(CHECKPOINT_HEADER_LEN as u64, BadCheckpoint::Length);
    };
    let mut body = BodyReader::new(source, body_len);
    let state = decode_body(&mut body, at, after_events)?;
    if body.consumed() != body_len {
        return Err(body.bad(BadCheckpoint::Body(RecordError::Trailing)));
    }
    Ok(Checkpoint { at, state })
}

/// A checkpoint's body, decoded as its blocks are read: one block (its checksum checked) in
/// memory at a time, and a string that spans two blocks gathered on the side. Reads what
/// `Out` writes, as `In` does from a slice.
struct BodyReader<F> {
    source: F,
    body_len: usize,
    /// The block being decoded: its checksum, then its bytes.
    block: Vec<u8>,
    /// Where the decoder is in `block`.
    pos: usize,
    /// Body offsets of the block's first byte and of the one after its last.
    start: usize,
    end: usize,
    /// A string's bytes that span blocks.
    spanning: Vec<u8>,
}

impl<E, F: FnMut(&mut [u8], u64) -> Result<(), E>> BodyReader<F> {
    fn new(source: F, body_len: usize) -> BodyReader<F> {
        BodyReader {
            source,
            body_len,
            block: Vec::new(),
            pos: 0,
            start: 0,
            end: 0,
            spanning: Vec::new(),
        }
    }

    /// Body bytes decoded so far.
    fn consumed(&self) -> usize {
        if self.block.is_empty() {
            0
        } else {
            self.start + (self.pos - BLOCK_CRC)
        }
    }

    /// `why`, named at the decoder's offset in the file.
    fn bad(&self, why: BadCheckpoint) -> Stop<E> {
        Stop::Bad(file_offset(self.consumed()), why)
    }

    fn record_error(&self, why: RecordError) -> Stop<E> {
        self.bad(BadCheckpoint::Body(why))
    }

    /// Reads the next block and checks its checksum.
    fn next_block(&mut self) -> Result<(), Stop<E>> {
        if self.end == self.body_len {
            return Err(self.record_error(RecordError::Truncated));
        }
        let len = (self.body_len - self.end).min(BLOCK);
        let at = (CHECKPOINT_HEADER_LEN + (self.end / BLOCK) * (BLOCK + BLOCK_CRC)) as u64;
        self.block.resize(BLOCK_CRC + len, 0);
        (self.source)(&mut self.block, at).map_err(Stop::Source)?;
        if crc32c::crc32c(&self.block[BLOCK_CRC..]) != u32_at(&self.block, 0) {
            return Err(Stop::Bad(at, BadCheckpoint::Checksum));
        }
        self.start = self.end;
        self.end += len;
        self.pos = BLOCK_CRC;
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, Stop<E>> {
        if self.pos == self.block.len() {
            self.next_block()?;
        }
        let b = self.block[self.pos];
        self.pos += 1;
        Ok(b)
    }

    fn uint(&mut self) -> Result<u64, Stop<E>> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err(self.record_error(RecordError::Overflow));
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.record_error(RecordError::Overflow))
    }

    fn u32(&mut self) -> Result<u32, Stop<E>> {
        let v = self.uint()?;
        u32::try_from(v).map_err(|_| self.record_error(RecordError::Overflow))
    }

    fn str(&mut self) -> Result<&str, Stop<E>> {
        let len = self.uint()?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= self.body_len - self.consumed())
            .ok_or_else(|| self.record_error(RecordError::Truncated))?;
        let bytes = if len <= self.block.len() - self.pos {
            self.pos += len;
            &self.block[self.pos - len..self.pos]
        } else {
            self.spanning.clear();
            while self.spanning.len() < len {
                if self.pos == self.block.len() {
                    self.next_block()?;
                }
                let take = (len - self.spanning.len()).min(self.block.len() - self.pos);
                self.spanning
                    .extend_from_slice(&self.block[self.pos..self.pos + take]);
                self.pos += take;
            }
            &self.spanning
        };
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s),
            Err(_) => Err(self.record_error(RecordError::Utf8)),
        }
    }

    fn opt_str(&mut self) -> Result<Option<&str>, Stop<E>> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            _ => Err(self.record_error(RecordError::OptionTag)),
        }
    }
}

fn decode_body<E, F: FnMut(&mut [u8], u64) -> Result<(), E>>(
    i: &mut BodyReader<F>,
    at: CheckpointAt,
    after_events: &mut dyn FnMut(&State, CheckpointAt),
) -> Result<State, Stop<E>> {
    let keys = [i.uint()?, i.uint()?];
    let mut restore = Restore::new(keys, at.lsn, at.segment);
    for _ in 0..i.uint()? {
        let id = i.u32()?;
        restore.name(id, i.str()?);
    }
    let mut seq = 0u64;
    for _ in 0..i.uint()? {
        let delta = i.uint()?;
        seq = seq
            .checked_add(delta)
            .ok_or_else(|| i.record_error(RecordError::Overflow))?;
        let location = Location {
            segment: i.uint()?,
            offset: i.uint()?,
            len: i.u32()?,
        };
        let received_at_ms = i.uint()?;
        restore
            .event(seq, location, received_at_ms)
            .map_err(|e| i.bad(BadCheckpoint::Inconsistent(e)))?;
    }
    after_events(restore.so_far(), at);
    for _ in 0..i.uint()? {
        let route = i.u32()?;
        for _ in 0..i.uint()? {
            let due = i.uint()?;
            let seq = i.uint()?;
            let entry = Entry {
                attempts: i.u32()?,
                not_before_ms: i.uint()?,
                last_error: i.opt_str()?.map(Into::into),
                group: i.uint()?,
            };
            restore
                .pending(route, due, seq, entry)
                .map_err(|e| i.bad(BadCheckpoint::Inconsistent(e)))?;
        }
        for _ in 0..i.uint()? {
            let seq = i.uint()?;
            let dead = DeadEntry {
                attempts: i.u32()?,
                error: i.str()?.into(),
                dead_at_ms: i.uint()?,
                group: i.uint()?,
            };
            restore
                .dead(route, seq, dead)
                .map_err(|e| i.bad(BadCheckpoint::Inconsistent(e)))?;
        }
    }
    let ids = i.uint()?;
    restore.ids_ahead(ids);
    for _ in 0..ids {
        let received_at_ms = i.uint()?;
        let fingerprint = i.uint()?;
        let seq = i.uint()?;
        restore.id(received_at_ms, fingerprint, seq);
    }
    restore
        .finish()
        .map_err(|e| i.bad(BadCheckpoint::Inconsistent(e)))
}

/// Bytes of a checkpoint written between two fdatasyncs: a large checkpoint never queues
/// tens of MiB at the disk ahead of the log's own fdatasyncs (which wait behind them).
const WRITE_CHUNK: usize = 1 << 20;

/// Writes the checkpoint of the state `snapshot` was taken of, which stood at `at`: as
/// [`write_state`].
pub fn write_snapshot(
    storage: &dyn Storage,
    at: CheckpointAt,
    snapshot: &Snapshot,
) -> io::Result<u64> {
    write_state(storage, at, snapshot.parts())
}

/// Writes the checkpoint of `state`, which stands at `at`, encoding its body a chunk at a
/// time (the whole body, tens of MiB for a million events, is never in memory). Returns the
/// body's size.
///
/// The file is `<lsn>.ckpt.tmp`, written a chunk at a time (each synced: no burst of dirty
/// pages ahead of the log's fdatasyncs), its header last (it holds the body's length),
/// then renamed to `<lsn>.ckpt` (replacing one of the same lsn) and the directory synced.
/// Once this returns, the checkpoint survives a crash; before, a crash leaves at most a
/// `.ckpt.tmp` that recovery removes.
pub fn write_state(storage: &dyn Storage, at: CheckpointAt, state: &State) -> io::Result<u64> {
    write_with(storage, at, |w| {
        let mut body = Vec::with_capacity(WRITE_CHUNK + BLOCK);
        encode_parts(state, &mut body, WRITE_CHUNK, &mut |b| {
            let whole = b.len() / BLOCK * BLOCK;
            w.blocks(&b[..whole], false)?;
            b.drain(..whole);
            Ok(())
        })?;
        w.blocks(&body, true)
    })
}

/// The body's blocks, each after its checksum, written to a checkpoint file being made.
struct BlockWriter {
    file: Arc<dyn SegmentFile>,
    /// Sealed blocks not yet written.
    chunk: Vec<u8>,
    /// Where `chunk` goes in the file.
    offset: u64,
    body_len: u64,
}

impl BlockWriter {
    /// Seals `bytes` into blocks (all whole but, when `last`, the final one) and writes
    /// every full chunk, synced.
    fn blocks(&mut self, bytes: &[u8], last: bool) -> io::Result<()> {
        debug_assert!(last || bytes.len().is_multiple_of(BLOCK));
        for block in bytes.chunks(BLOCK) {
            self.chunk
                .extend_from_slice(&crc32c::crc32c(block).to_le_bytes());
            self.chunk.extend_from_slice(block);
            self.body_len += block.len() as u64;
            if self.chunk.len() >= WRITE_CHUNK {
                self.file.write_at(&self.chunk, self.offset)?;
                self.file.sync_data()?;
                self.offset += self.chunk.len() as u64;
                self.chunk.clear();
            }
        }
        Ok(())
    }
}

/// Creates `<lsn>.ckpt.tmp`, lets `fill` write the body's blocks, then writes what is left
/// and the header, syncs, renames into place and syncs the directory.
fn write_with(
    storage: &dyn Storage,
    at: CheckpointAt,
    fill: impl FnOnce(&mut BlockWriter) -> io::Result<()>,
) -> io::Result<u64> {
    let name = checkpoint_name(at.lsn);
    let tmp = format!("{:020}{WRITING_SUFFIX}", at.lsn);
    match storage.remove(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut w = BlockWriter {
        file: storage.create(&tmp)?,
        chunk: Vec::with_capacity(WRITE_CHUNK + BLOCK + BLOCK_CRC),
        offset: CHECKPOINT_HEADER_LEN as u64,
        body_len: 0,
    };
    fill(&mut w)?;
    w.file.write_at(&w.chunk, w.offset)?;
    w.file.write_at(&header(at, w.body_len as usize), 0)?;
    // fdatasync also makes the new size durable (needed to read the data back).
    w.file.sync_data()?;
    storage.rename(&tmp, &name)?;
    storage.sync_dir()?;
    Ok(w.body_len)
}

#[cfg(test)]
mod tests {
    use super::super::record::{test_event as event, EventRecord, Record, RouteDue};
    use super::*;

    /// A state with something of every kind: names, pending (retried, held), dead letters,
    /// an event kept only for its id, an id taken over by a later event, a copied event.
    fn rich_state() -> State {
        let records = vec![
            Record::Route { id: 0, name: "a" },
            Record::Route { id: 7, name: "b" },
            event(Some("x"), 10, &[0, 7]),
            event(Some("y"), 11, &[0]),
            event(None, 12, &[7]),
            Record::Event(EventRecord {
                webhook_id: Some("g"),
                received_at_ms: 12,
                api_key: None,
                signature: "s",
                event_type: None,
                path: None,
                body: b"{}",
                routes: vec![RouteDue {
                    route: 7,
                    due_ms: 12,
                    group: 0xfeed,
                }]
                .into(),
            }),
            Record::Dead {
                route: 7,
                seq: 6,
                attempts: 1,
                error: "400",
                dead_at_ms: 12,
            },
            Record::Retry {
                route: 0,
                seq: 3,
                due_ms: 99,
                attempts: 2,
                error: "503",
            },
            Record::Hold {
                route: 7,
                seq: 3,
                not_before_ms: 50,
                attempts: 1,
                error: "timeout",
            },
            Record::Dead {
                route: 7,
                seq: 5,
                attempts: 3,
                error: "400",
                dead_at_ms: 13,
            },
            Record::Delivered { route: 0, seq: 4 },
            event(Some("x"), 14, &[0]),
        ];
        let mut state = State::new();
        for (i, r) in records.iter().enumerate() {
            let lsn = i as u64 + 1;
            let location = Location {
                segment: 1 + lsn / 4,
                offset: 40 + lsn * 8,
                len: 20,
            };
            state.apply(lsn, location, r);
        }
        let Record::Event(copied) = event(Some("y"), 11, &[]) else {
            unreachable!()
        };
        let copy = Record::Copy {
            seq: 4,
            event: copied,
        };
        let location = Location {
            segment: 9,
            offset: 48,
            len: 30,
        };
        state.apply(records.len() as u64 + 1, location, &copy);
        state
    }

    /// Everything a state shows, in one comparable value.
    fn view(s: &State) -> String {
        let routes: Vec<_> = s
            .routes()
            .map(|(id, q)| {
                let pending: Vec<_> = q.pending().map(|(d, seq, e)| (d, seq, e.clone())).collect();
                let dead: Vec<_> = q.dead().map(|(seq, d)| (seq, d.clone())).collect();
                (id, pending, dead)
            })
            .collect();
        let events: Vec<_> = s
            .events()
            .map(|(seq, m)| {
                (
                    seq,
                    m.location(),
                    m.received_at_ms(),
                    m.holders(),
                    m.remembered(),
                )
            })
            .collect();
        let names: Vec<_> = s.route_names().collect();
        let ids: Vec<_> = s.id_order().collect();
        let uses: Vec<_> = s.segment_uses().collect();
        format!(
            "{names:?} {routes:?} {events:?} {ids:?} {uses:?} {} {} {:?} {:?} {:?}",
            s.next_lsn(),
            s.tail_segment(),
            s.dedup_candidate("x"),
            s.dedup_candidate("y"),
            s.dedup_candidate("z"),
        )
    }

    #[test]
    fn a_checkpoint_gives_back_the_state_it_was_taken_of() {
        let state = rich_state();
        let back = decode(&encode(&state)).unwrap();
        assert_eq!(
            back.at,
            CheckpointAt {
                lsn: 14,
                segment: 9
            }
        );
        assert_eq!(view(&back.state), view(&state));
        // The same records applied to both from here on keep them equal (the keys came too).
        let mut a = state;
        let mut b = back.state;
        for s in [&mut a, &mut b] {
            let at = Location {
                segment: 10,
                offset: 40,
                len: 9,
            };
            s.apply(12, at, &event(Some("z"), 15, &[0]));
            s.apply(13, at, &Record::Delivered { route: 7, seq: 3 });
            s.expire_ids(12, 10);
        }
        assert_eq!(view(&a), view(&b));
        assert_eq!(a.dedup_candidate("z").unwrap().seq, 12);
    }

    #[test]
    fn an_empty_state_round_trips() {
        let state = State::new();
        let back = decode(&encode(&state)).unwrap();
        assert_eq!(back.at, CheckpointAt { lsn: 1, segment: 0 });
        assert_eq!(view(&back.state), view(&state));
    }

    #[test]
    fn a_byte_flipped_anywhere_is_refused_naming_its_block_or_the_header() {
        let bytes = encode(&rich_state());
        for at in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut bad = bytes.clone();
                bad[at] ^= bit;
                let (offset, why) = decode(&bad).unwrap_err();
                if at < CHECKPOINT_HEADER_LEN {
                    assert!(
                        offset < CHECKPOINT_HEADER_LEN as u64,
                        "{at}: {offset} {why}"
                    );
                } else {
                    assert_eq!(
                        (offset, why),
                        (CHECKPOINT_HEADER_LEN as u64, BadCheckpoint::Checksum),
                        "byte {at}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_damaged_block_of_a_large_checkpoint_is_named_by_its_offset() {
        let mut state = State::new();
        for lsn in 1..20_000u64 {
            let at = Location {
                segment: 1,
                offset: lsn * 8,
                len: 8,
            };
            let id = format!("id-{lsn}");
            state.apply(lsn, at, &event(Some(&id), lsn, &[0, 1]));
        }
        let bytes = encode(&state);
        assert!(bytes.len() > 3 * BLOCK, "{} bytes", bytes.len());
        let third = CHECKPOINT_HEADER_LEN + 2 * (BLOCK + BLOCK_CRC);
        let mut bad = bytes.clone();
        bad[third + 1000] ^= 0x10;
        assert_eq!(
            decode(&bad).unwrap_err(),
            (third as u64, BadCheckpoint::Checksum)
        );
        let back = decode(&bytes).unwrap();
        assert_eq!(view(&back.state), view(&state));
    }

    #[test]
    fn a_checkpoint_cut_short_or_lengthened_is_refused() {
        let bytes = encode(&rich_state());
        for len in [0, 10, CHECKPOINT_HEADER_LEN, bytes.len() - 1] {
            assert_eq!(
                decode(&bytes[..len]).unwrap_err().1,
                BadCheckpoint::Length,
                "{len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer).unwrap_err().1, BadCheckpoint::Length);
    }

    #[test]
    fn a_body_whose_parts_disagree_is_refused_though_its_checksums_hold() {
        // A route holding an event the checkpoint does not list.
        let mut body = Vec::new();
        let mut o = Out(&mut body);
        for v in [1, 2, 0, 0, 1, 3, 1] {
            o.uint(v); // keys, no names, no events, one route (3) with one pending...
        }
        for v in [5, 9, 0, 0] {
            o.uint(v); // due 5, seq 9, attempts 0, not before 0
        }
        o.u8(0); // no error
        o.uint(0); // no dead letters
        o.uint(0); // no ids
        let bytes = seal(
            CheckpointAt {
                lsn: 20,
                segment: 1,
            },
            &body,
        );
        let (_, why) = decode(&bytes).unwrap_err();
        assert_eq!(
            why,
            BadCheckpoint::Inconsistent(Inconsistent::Held { route: 3, seq: 9 })
        );
    }

    /// 100k events pending on routes 0 and 1, a thousand per segment; each with a webhook
    /// id (remembered for dedup) when `with_ids`.
    fn many_events(with_ids: bool) -> State {
        let mut state = State::new();
        for seq in 1..=100_000u64 {
            let location = Location {
                segment: seq / 1000 + 1,
                offset: seq * 40,
                len: 40,
            };
            let id = with_ids.then(|| format!("id-{seq}"));
            state.apply(seq, location, &event(id.as_deref(), seq, &[0, 1]));
        }
        state
    }

    #[test]
    fn a_checkpoint_of_many_chunks_is_written_and_read_back_whole() {
        let state = many_events(false);
        let body = encode_body(&state);
        assert!(body.len() > 2 * WRITE_CHUNK, "{} bytes", body.len());
        let disk = super::super::storage::SimDisk::new(1);
        let at = CheckpointAt::of(&state);
        write_state(&disk, at, &state).unwrap();
        let written = disk.bytes(&checkpoint_name(at.lsn)).unwrap();
        assert_eq!(
            written,
            encode(&state),
            "the same bytes as the file made at once"
        );
        let back = read(&disk, &checkpoint_name(at.lsn)).unwrap().unwrap();
        assert_eq!((back.at, view(&back.state)), (at, view(&state)));
    }

    #[test]
    fn a_snapshot_is_written_as_the_state_was_when_taken_however_it_changes_after() {
        let mut state = many_events(true);
        let at = CheckpointAt::of(&state);
        let before = encode_body(&state);
        let snapshot = state.snapshot();
        // Every kind of change, over pages and bitmaps old and new.
        let mut lsn = state.next_lsn();
        let mut apply = |state: &mut State, record: &Record<'_>| {
            let location = Location {
                segment: 200,
                offset: lsn * 8,
                len: 40,
            };
            state.apply(lsn, location, record);
            lsn += 1;
        };
        for seq in (1..=100_000u64).step_by(3) {
            apply(&mut state, &Record::Delivered { route: 0, seq });
        }
        for seq in (2..=100_000u64).step_by(1000) {
            let dead = Record::Dead {
                route: 1,
                seq,
                attempts: 2,
                error: "400",
                dead_at_ms: 3,
            };
            apply(&mut state, &dead);
            let retry = Record::Retry {
                route: 0,
                seq: seq + 1,
                due_ms: 50,
                attempts: 1,
                error: "503",
            };
            apply(&mut state, &retry);
        }
        let expire = Record::ExpireIds {
            before_ms: 50_000,
            limit: 10_000,
        };
        apply(&mut state, &expire);
        for i in 0..500 {
            apply(&mut state, &event(Some(&format!("new-{i}")), 7, &[0, 1]));
        }
        assert_ne!(encode_body(&state), before, "the state changed");
        assert_eq!(encode_body(snapshot.parts()), before);
        let disk = super::super::storage::SimDisk::new(5);
        write_snapshot(&disk, at, &snapshot).unwrap();
        let written = disk.bytes(&checkpoint_name(at.lsn)).unwrap();
        assert_eq!(written, seal(at, &before));
    }

    #[test]
    fn a_file_is_read_a_block_at_a_time_with_strings_across_blocks_and_damage_named() {
        // Dead letters whose errors are longer than a block: each spans two or three.
        let mut state = many_events(true);
        let long: Vec<String> = (0..3)
            .map(|i| format!("{i}").repeat(BLOCK + 1000 * i))
            .collect();
        for (seq, error) in (1..).zip(&long) {
            let dead = Record::Dead {
                route: 1,
                seq,
                attempts: 5,
                error,
                dead_at_ms: 7,
            };
            let location = Location {
                segment: 99,
                offset: 0,
                len: 8,
            };
            state.apply(state.next_lsn(), location, &dead);
        }
        let disk = super::super::storage::SimDisk::new(3);
        let at = CheckpointAt::of(&state);
        write_state(&disk, at, &state).unwrap();
        let name = checkpoint_name(at.lsn);
        let back = read(&disk, &name).unwrap().unwrap();
        assert_eq!((back.at, view(&back.state)), (at, view(&state)));
        assert!(
            view(&back.state).contains(&long[2]),
            "the long errors came back"
        );

        // A byte flipped in the third block: refused, named by that block's offset, as the
        // file held in memory is.
        let mut bytes = disk.bytes(&name).unwrap();
        let third = CHECKPOINT_HEADER_LEN + 2 * (BLOCK + BLOCK_CRC);
        bytes[third + 100] ^= 0x10;
        let file_of = |bytes: &[u8]| {
            let disk = super::super::storage::SimDisk::new(4);
            disk.create(&name).unwrap().write_at(bytes, 0).unwrap();
            disk
        };
        let expected = (third as u64, BadCheckpoint::Checksum);
        assert_eq!(
            read(&file_of(&bytes), &name).unwrap().unwrap_err(),
            expected
        );
        assert_eq!(decode(&bytes).unwrap_err(), expected);
        // Cut short: refused before any block is read.
        assert_eq!(
            read(&file_of(&bytes[..bytes.len() - 1]), &name)
                .unwrap()
                .unwrap_err(),
            (CHECKPOINT_HEADER_LEN as u64, BadCheckpoint::Length)
        );
    }

    #[test]
    fn a_state_encoded_as_it_is_written_makes_the_same_file_as_one_encoded_first() {
        for state in [State::new(), rich_state(), many_events(true)] {
            let disk = super::super::storage::SimDisk::new(2);
            let at = CheckpointAt::of(&state);
            let size = write_state(&disk, at, &state).unwrap();
            assert_eq!(size, encode_body(&state).len() as u64);
            let written = disk.bytes(&checkpoint_name(at.lsn)).unwrap();
            assert_eq!(written, encode(&state));
            assert!(disk
                .bytes(&format!("{:020}{WRITING_SUFFIX}", at.lsn))
                .is_none());
        }
    }

    #[test]
    fn a_flip_of_any_byte_of_a_checkpoint_is_refused() {
        for state in [State::new(), rich_state()] {
            let good = encode(&state);
            for at in 0..good.len() {
                let mut bad = good.clone();
                bad[at] ^= 0x20;
                assert!(
                    decode(&bad).is_err(),
                    "a flip at byte {at} of {} went unnoticed",
                    good.len()
                );
            }
            let mut longer = good.clone();
            longer.push(0);
            assert!(
                decode(&longer).is_err(),
                "a byte after the body went unnoticed"
            );
        }
    }

    #[test]
    fn checkpoint_names_sort_by_lsn_and_other_files_are_not_checkpoints() {
        assert_eq!(checkpoint_name(42), "00000000000000000042.ckpt");
        assert_eq!(checkpoint_lsn(&checkpoint_name(42)), Some(42));
        assert_eq!(checkpoint_lsn("00000000000000000042.ckpt.tmp"), None);
        assert_eq!(checkpoint_lsn("00000000000000000042.seg"), None);
    }

    #[test]
    fn the_hand_written_checkpoint_body_of_the_fuzz_corpus_decodes() {
        // fuzz/make-corpus.sh writes it with printf (after the mode byte); the target seals it.
        let body = b"\x05\x06\x01\x00\x01a\x01\x01\x01\x28\x08\x07\x01\x00\x01\x07\x01\x00\x00\x00\x00\x00\x01\x07\x2a\x01";
        let lsn = u64::from_le_bytes(body[..8].try_into().unwrap());
        let c = decode(&seal(
            CheckpointAt {
                lsn,
                segment: lsn >> 32,
            },
            body,
        ))
        .unwrap();
        assert_eq!(c.state.keys(), [5, 6]);
        assert_eq!(c.state.route_name(0), Some("a"));
        let meta = c.state.event(1).unwrap();
        assert_eq!((meta.holders(), meta.remembered()), (1, true));
        assert_eq!(c.state.route(0).unwrap().pending_len(), 1);
    }

    #[test]
    fn the_decoder_survives_any_bytes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let good = encode(&rich_state());
        let good_body = good[CHECKPOINT_HEADER_LEN + BLOCK_CRC..].to_vec();
        for _ in 0..2000 {
            // A body with its checksums right (as the fuzz target seals it), changed at random.
            let mut body = good_body.clone();
            let at = rng.random_range(0..body.len());
            body[at] = rng.random();
            body.truncate(rng.random_range(0..=body.len()));
            let _ = decode(&seal(
                CheckpointAt {
                    lsn: 12,
                    segment: 9,
                },
                &body,
            ));
            let mut bytes = if rng.random_bool(0.5) {
                good.clone()
            } else {
                let len = rng.random_range(0..200);
                (0..len).map(|_| rng.random()).collect()
            };
            if !bytes.is_empty() {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
            let _ = decode(&bytes);
        }
    }
}
