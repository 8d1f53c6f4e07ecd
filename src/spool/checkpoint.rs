//! Checkpoints: the [`State`] written whole to one file, so a restart replays only the log
//! written since, and compaction may delete the segments before it. The format, and the
//! rule recovery follows when one is damaged, are in the log's module documentation
//! ("Checkpoints"); this file is their code.
//!
//! The codec ([`encode`], [`decode`]) is pure: it never panics, and reserves nothing the
//! input does not hold (every entry it builds consumed at least one input byte).
//! [`write_state`] and [`write_snapshot`] are the thin I/O shell: a temporary file written and synced (256 KiB
//! at a time as it is encoded), renamed, the directory synced; [`read`] reads a file back
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
/// more than this at the disk ahead of the log's own fdatasyncs, which wait behind it (1 MiB
/// chunks stretched the log's commits from ~0.3 ms to 3–10 ms while a checkpoint was
/// written; BENCHMARKS.md, "Ack p99 at half rate").
const WRITE_CHUNK: usize = 256 << 10;

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
mod tests;
