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

use super::record::{RecordError, RouteId};
use super::state::{Inconsistent, Snapshot, State};
use super::storage::{SegmentFile, Storage};
use super::LogError;
use body_reader::BodyReader;

/// Checkpoint files are named `<lsn, 20 digits>.ckpt`; one being written is
/// `<lsn>.ckpt.tmp` until it is synced and renamed.
pub const CHECKPOINT_SUFFIX: &str = ".ckpt";
pub const WRITING_SUFFIX: &str = ".ckpt.tmp";

pub const CHECKPOINT_MAGIC: [u8; 4] = *b"HFCK";
/// The version written; version 1 is still read (see `checkpoint/v1.rs`).
pub const CHECKPOINT_VERSION: u8 = 2;
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

/// The state's parts, in the order [`Restore`](super::state::Restore) takes them back (see `checkpoint/body.rs`).
pub fn encode_body(state: &State) -> Vec<u8> {
    let mut body = Vec::new();
    body::encode_parts(state, &mut body, usize::MAX, &mut |_| Ok(())).expect("nothing to flush");
    body
}

/// The checkpoint file of `state`: header, then the body in checksummed blocks.
pub fn encode(state: &State) -> Vec<u8> {
    seal(
        CheckpointAt::of(state),
        CHECKPOINT_VERSION,
        &encode_body(state),
    )
}

/// A checkpoint file of `version` around `body` (the state's parts, as [`encode`] writes
/// them in the version it writes): the header and every block's checksum. Public so the
/// fuzz target can reach the body's decoders past the checksums.
pub fn seal(at: CheckpointAt, version: u8, body: &[u8]) -> Vec<u8> {
    let blocks = body.len().div_ceil(BLOCK);
    let mut out = Vec::with_capacity(CHECKPOINT_HEADER_LEN + body.len() + blocks * BLOCK_CRC);
    out.extend_from_slice(&header(at, version, body.len()));
    for block in body.chunks(BLOCK) {
        out.extend_from_slice(&crc32c::crc32c(block).to_le_bytes());
        out.extend_from_slice(block);
    }
    out
}

/// A checkpoint file's header, for a body of `body_len` bytes.
fn header(at: CheckpointAt, version: u8, body_len: usize) -> [u8; CHECKPOINT_HEADER_LEN] {
    let mut h = [0; CHECKPOINT_HEADER_LEN];
    h[0..4].copy_from_slice(&CHECKPOINT_MAGIC);
    h[4] = version;
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
/// the queues (and, in version 1, the dedup window): what knows where every event is can start on that
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
    let version = h[4];
    if version != CHECKPOINT_VERSION && version != 1 {
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
    let state = match version {
        1 => v1::decode_body(&mut body, at, after_events)?,
        _ => body::decode_body(&mut body, at, after_events)?,
    };
    if body.consumed() != body_len {
        return Err(body.bad(BadCheckpoint::Body(RecordError::Trailing)));
    }
    Ok(Checkpoint { at, state })
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
        body::encode_parts(state, &mut body, WRITE_CHUNK, &mut |b| {
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
    w.file
        .write_at(&header(at, CHECKPOINT_VERSION, w.body_len as usize), 0)?;
    // fdatasync also makes the new size durable (needed to read the data back).
    w.file.sync_data()?;
    storage.rename(&tmp, &name)?;
    storage.sync_dir()?;
    Ok(w.body_len)
}

mod body;
mod body_reader;
mod v1;

#[cfg(test)]
mod tests;
