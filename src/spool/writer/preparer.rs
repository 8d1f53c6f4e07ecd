//! The preparer thread: keeps segments zero-filled, synced and named ahead of the writer,
//! so that no file is created, grown or named while a webhook waits; and, at start, the
//! spares the last run prepared, taken as they are.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, PoisonError};

use super::super::recovery::remove_files;
use super::super::segment::{self, PREPARING_SUFFIX};
use super::super::storage::{SegmentFile, Storage};
use super::super::LogError;
use super::{lock, Shared, WriterConfig};

/// Segments ready to be written, by index, in order.
pub(super) type Ready = VecDeque<(u64, Arc<dyn SegmentFile>)>;

/// Segments prepared ahead, and the preparer's next index.
pub(super) struct Prepared {
    pub(super) ready: Ready,
    pub(super) next_index: u64,
    pub(super) closed: bool,
    /// The last preparation error, while preparations fail.
    pub(super) error: Option<Arc<io::Error>>,
}

/// The preparer: keeps `prepared_ahead` zero-filled segments ready.
pub(super) fn prepare_loop(shared: &Shared) {
    loop {
        let index = {
            let mut prepared = lock(&shared.prepared);
            while prepared.ready.len() >= shared.config.prepared_ahead && !prepared.closed {
                prepared = shared
                    .prepared_changed
                    .wait(prepared)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if prepared.closed {
                return;
            }
            prepared.next_index
        };
        match prepare(&*shared.storage, index, shared.config.segment_size) {
            Ok(file) => {
                let mut prepared = lock(&shared.prepared);
                prepared.ready.push_back((index, file));
                prepared.next_index = index + 1;
                prepared.error = None;
                drop(prepared);
                shared.prepared_changed.notify_all();
            }
            Err(e) => {
                tracing::warn!(error = %e, index, "spool: could not prepare a segment; retrying");
                let mut prepared = lock(&shared.prepared);
                prepared.error = Some(Arc::new(e));
                drop(prepared);
                shared.prepared_changed.notify_all();
                let prepared = lock(&shared.prepared);
                if prepared.closed {
                    return;
                }
                let _ = shared
                    .prepared_changed
                    .wait_timeout(prepared, shared.config.prepare_retry);
            }
        }
    }
}

/// The spares the last run prepared (see [`Recovered::spares`]) that are the writer's next
/// segments, `next` on, of the configured size, as many as it keeps prepared: taken as they
/// are (zero-filled and synced by the preparer that made them). The others are removed.
/// The directory is synced before any is written to: the last run may have stopped (a kill)
/// between a spare's rename and its directory sync, and a record acknowledged in a file
/// whose name is not durable would vanish at a power cut. Returns the segments taken and
/// the index the preparer goes on from.
pub(super) fn adopt_spares(
    storage: &dyn Storage,
    spares: &[u64],
    next: u64,
    config: &WriterConfig,
) -> Result<(Ready, u64), LogError> {
    let mut ready = VecDeque::new();
    let mut next_index = next;
    let mut stale = Vec::new();
    for &index in spares {
        let name = segment::segment_name(index);
        // Past the last index the state can name: removed (the preparer refuses it too).
        let nameable = index < u64::from(u32::MAX);
        let taken = if index == next_index && ready.len() < config.prepared_ahead && nameable {
            let file = storage
                .open(&name)
                .map_err(|e| LogError::io("open", name.as_str(), e))?;
            let size = file
                .size()
                .map_err(|e| LogError::io("stat", name.as_str(), e))?;
            (size == config.segment_size).then_some(file)
        } else {
            None
        };
        match taken {
            Some(file) => {
                ready.push_back((index, file));
                next_index = index + 1;
            }
            None => stale.push(name),
        }
    }
    if stale.is_empty() && !ready.is_empty() {
        storage
            .sync_dir()
            .map_err(|e| LogError::io("sync", "the spool directory", e))?;
    }
    // (Removing the others syncs the directory too.)
    remove_files(storage, &stale)?;
    Ok((ready, next_index))
}

/// Creates segment `index`: `<index>.seg.tmp`, zero-filled to `size` and synced, renamed,
/// and the directory synced.
fn prepare(storage: &dyn Storage, index: u64, size: u64) -> io::Result<Arc<dyn SegmentFile>> {
    // The state keeps a segment index in 32 bits (see `EventMeta`).
    if index >= u64::from(u32::MAX) {
        return Err(io::Error::other(format!(
            "segment index {index} is past the last one hookfan writes ({})",
            u32::MAX - 1
        )));
    }
    let name = segment::segment_name(index);
    let tmp = format!("{index:020}{PREPARING_SUFFIX}");
    match storage.remove(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let file = storage.create(&tmp)?;
    file.zero_fill(size)?;
    storage.rename(&tmp, &name)?;
    storage.sync_dir()?;
    Ok(file)
}
