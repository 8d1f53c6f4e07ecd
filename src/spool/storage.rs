//! The file operations the log needs, and nothing more (the file destination uses them too,
//! for its crash test): a [`Storage`] is one directory of segment files, a [`SegmentFile`]
//! one file read and written at explicit offsets.
//!
//! Two implementations: [`RealDisk`] over `std::fs` (positional I/O with
//! `std::os::unix::fs::FileExt`), and [`SimDisk`], in-memory files that know which bytes are
//! durable. [`SimDisk::crash`] keeps only what was synced (and may tear the last write that
//! was not), which is how the crash tests see what a power cut would leave. It also fails
//! writes and syncs on demand (EIO, ENOSPC).
//!
//! Never here: framing, checksums, policy. A `Storage` moves bytes; the log decides.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One directory of files.
pub trait Storage: Send + Sync + 'static {
    /// Creates `name`, which must not exist yet.
    fn create(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>>;
    /// Opens `name` for reading and writing.
    fn open(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>>;
    /// The names of the files in the directory, in no particular order.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Renames `from` to `to`, replacing `to` if it exists. Durable after [`Storage::sync_dir`].
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes `name`. Durable after [`Storage::sync_dir`].
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self) -> io::Result<()>;
}

/// One file, read and written at explicit offsets (no shared cursor, so `&self` suffices).
pub trait SegmentFile: Send + Sync {
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Reads into `buf` from `offset`; returns how many bytes were read (fewer only at the
    /// end of the file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Makes every write so far durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// The file's size in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Writes zeros from the file's end up to `len` and syncs data and size, so later
    /// writes inside `len` never change the file's size (an fdatasync then has no metadata
    /// to commit).
    fn zero_fill(&self, len: u64) -> io::Result<()>;
    /// Cuts the file to `len` bytes, at most its size (a half-written append taken back);
    /// durable with the next [`SegmentFile::sync_data`].
    fn truncate(&self, len: u64) -> io::Result<()>;
}

/// Zeros written, and synced, per call when filling a file: a segment's worth never queues
/// at the disk ahead of the log's own fdatasyncs (which would wait behind it); 1 MiB
/// stretched them to 3–7 ms each while a segment was prepared.
const ZERO_CHUNK: usize = 256 << 10;

/// A directory on the real disk.
pub struct RealDisk {
    dir: PathBuf,
}

impl RealDisk {
    /// Uses `dir`, creating it if needed.
    pub fn open(dir: &Path) -> io::Result<RealDisk> {
        std::fs::create_dir_all(dir)?;
        Ok(RealDisk {
            dir: dir.to_path_buf(),
        })
    }
}

impl Storage for RealDisk {
    fn create(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.dir.join(name))?;
        Ok(Arc::new(RealFile(file)))
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dir.join(name))?;
        Ok(Arc::new(RealFile(file)))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.dir.join(from), self.dir.join(to))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.dir.join(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
}

struct RealFile(File);

/// Reads into `buf` from `offset` until it is full or the file ends; returns how many bytes.
pub(super) fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

impl SegmentFile for RealFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        read_full_at(&self.0, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn zero_fill(&self, len: u64) -> io::Result<()> {
        let mut at = self.size()?;
        at = zero_fill_direct(&self.0, at, len)?;
        let zeros = vec![0u8; ZERO_CHUNK];
        while at < len {
            let n = (len - at).min(ZERO_CHUNK as u64) as usize;
            self.0.write_all_at(&zeros[..n], at)?;
            at += n as u64;
            // A chunk at a time (see ZERO_CHUNK).
            if at < len {
                self.0.sync_data()?;
            }
        }
        // The size changed: sync_all, not sync_data. Off the ack path (see writer.rs).
        self.0.sync_all()
    }
}

/// Zero-fills `file` from `at` towards `len` with direct I/O, a chunk at a time, each synced;
/// returns where it stopped, for the caller to fill the rest through the page cache.
///
/// Why: through the page cache, every zero is first copied into a page and later written
/// back, about 50 ms of CPU per 32 MiB segment on a small VM, taken from the cores that
/// answer webhooks (the half-rate p99 rose to tens of ms each time a segment was prepared).
/// With `O_DIRECT` the disk reads the zeros from one aligned buffer: no copy, no dirty pages.
///
/// It stops early, with no error, where direct I/O is not taken (a file system without it,
/// such as an older tmpfs; an unaligned start or end; a direct write refused): the rest is
/// filled as before. A failed sync is returned. The file's flags are restored before it
/// returns, or the restore's failure is returned (the writer appends unaligned groups).
///
/// The page cache then holds none of the file's pages: the writer runs each write on to its
/// page's end (see the writer's `write_group`), so a write never ends in a page it would
/// have to read back first.
#[cfg(target_os = "linux")]
fn zero_fill_direct(file: &File, mut at: u64, len: u64) -> io::Result<u64> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    /// Alignment of direct I/O's offsets, lengths and buffer: a page, a multiple of any
    /// common logical block size.
    const ALIGN: u64 = 4096;
    let end = len - len % ALIGN;
    if !at.is_multiple_of(ALIGN) || at >= end {
        return Ok(at);
    }
    let Ok(flags) = fcntl_getfl(file) else {
        return Ok(at);
    };
    if fcntl_setfl(file, flags | OFlags::DIRECT).is_err() {
        return Ok(at);
    }
    let zeros = vec![0u8; ZERO_CHUNK + ALIGN as usize];
    let skip = zeros.as_ptr().align_offset(ALIGN as usize);
    let zeros = &zeros[skip..skip + ZERO_CHUNK];
    let mut filled = Ok(());
    while at < end {
        let n = (end - at).min(ZERO_CHUNK as u64) as usize;
        // A write refused (EINVAL where the file system takes the flag but not the I/O;
        // another errno on some FUSE file systems): the page cache takes the rest, from
        // `at` (a part written here is written again, as zeros). A failing disk fails there
        // too, and that error is returned.
        if file.write_all_at(&zeros[..n], at).is_err() {
            break;
        }
        at += n as u64;
        // As through the page cache: a chunk at a time is made durable (see ZERO_CHUNK). A
        // failed sync is returned, never passed over: its error would not be reported again.
        if at < len {
            if let Err(e) = file.sync_data() {
                filled = Err(e);
                break;
            }
        }
    }
    // The writer appends through the page cache (groups are not block-aligned).
    fcntl_setfl(file, flags)?;
    filled.map(|()| at)
}

#[cfg(not(target_os = "linux"))]
fn zero_fill_direct(_file: &File, at: u64, _len: u64) -> io::Result<u64> {
    Ok(at)
}

/// Which operation a [`Fault`] hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    Write,
    Sync,
    /// Creating a file (the segment preparer's first step).
    Create,
}

/// An error [`SimDisk`] returns instead of doing an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// EIO.
    Io,
    /// ENOSPC.
    NoSpace,
}

impl Fault {
    fn error(self) -> io::Error {
        match self {
            Fault::Io => io::Error::from_raw_os_error(5),
            Fault::NoSpace => io::Error::from_raw_os_error(28),
        }
    }
}

/// Syncs held on a [`SimDisk`] while this lives: [`SimDisk::syncs_held`].
pub struct SyncsHeld(SimDisk);

impl Drop for SyncsHeld {
    fn drop(&mut self) {
        self.0.hold_syncs(false);
    }
}

/// An in-memory disk for crash tests. Cheap to clone (clones share the disk).
///
/// Each file keeps two images: what a reader sees now, and what is durable. A write changes
/// the first; a sync of the file copies its writes to the second. Directory entries work the
/// same way: creations, renames and removals are durable after [`Storage::sync_dir`].
///
/// A sync that fails (an injected fault) behaves like Linux after an fsync error: the
/// writes it should have made durable are marked clean without being written, so a later
/// sync does not save them. At a crash each of them survives or not, at random.
#[derive(Clone)]
pub struct SimDisk {
    inner: Arc<Mutex<Sim>>,
    /// While true, every sync waits (a disk that hangs): [`SimDisk::hold_syncs`].
    syncs_held: Arc<(Mutex<bool>, Condvar)>,
}

struct Sim {
    /// After [`SimDisk::crash`], this disk is gone: every operation fails with EIO.
    crashed: bool,
    rng: StdRng,
    files: BTreeMap<u64, SimFileData>,
    next_file: u64,
    /// Name → file, as a reader sees the directory now.
    names: BTreeMap<String, u64>,
    /// Name → file, as the directory is durably.
    durable_names: BTreeMap<String, u64>,
    /// Faults to inject, each on the next operation of its kind.
    faults: Vec<(FaultOp, Fault)>,
    /// Writes and syncs so far.
    ops: u64,
    /// Bytes read so far (by every file).
    bytes_read: u64,
    /// The power goes (or, with `kill_at`, the process dies) when `ops` reaches this.
    crash_at: Option<u64>,
    /// The crash at `crash_at` is a kill: the page cache stays (see [`SimDisk::kill`]).
    kill_at: bool,
    /// What that power cut left, for [`SimDisk::crash`].
    frozen: Option<Box<Sim>>,
}

#[derive(Clone, Default)]
struct SimFileData {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Writes since the last sync, in order: (offset, bytes).
    unsynced: Vec<(u64, Vec<u8>)>,
    /// Writes whose sync failed: never made durable by a later sync; each survives a crash
    /// or not, at random.
    limbo: Vec<(u64, Vec<u8>)>,
    /// The shortest length the file was cut to since the last sync, which cuts the durable
    /// image at the next one (before its writes: those before the cut were cut with it).
    cut: Option<u64>,
}

/// Keeps of each write only what lies before `len` (a file cut to `len`).
fn cut_writes(writes: &mut Vec<(u64, Vec<u8>)>, len: u64) {
    for (offset, bytes) in writes.iter_mut() {
        bytes.truncate(len.saturating_sub(*offset) as usize);
    }
    writes.retain(|(_, bytes)| !bytes.is_empty());
}

fn write_into(image: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let end = offset as usize + bytes.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[offset as usize..end].copy_from_slice(bytes);
}

impl SimDisk {
    /// An empty disk whose random choices (torn writes, partial failed writes) follow `seed`.
    pub fn new(seed: u64) -> SimDisk {
        SimDisk {
            inner: Arc::new(Mutex::new(Sim {
                crashed: false,
                rng: StdRng::seed_from_u64(seed),
                files: BTreeMap::new(),
                next_file: 0,
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                faults: Vec::new(),
                ops: 0,
                bytes_read: 0,
                crash_at: None,
                kill_at: false,
                frozen: None,
            })),
            syncs_held: Arc::default(),
        }
    }

    /// While `held`, every file's sync waits, as on a disk that hangs; releasing lets them
    /// go on.
    pub fn hold_syncs(&self, held: bool) {
        let (lock, changed) = &*self.syncs_held;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = held;
        changed.notify_all();
    }

    /// [`SimDisk::hold_syncs`] until the returned guard is dropped: also when a test's
    /// assertion fails, or the threads of what uses the disk would wait on the syncs at its
    /// drop, and the test hang instead of failing.
    pub fn syncs_held(&self) -> SyncsHeld {
        self.hold_syncs(true);
        SyncsHeld(self.clone())
    }

    fn wait_while_syncs_held(&self) {
        let (lock, changed) = &*self.syncs_held;
        let held = lock.lock().unwrap_or_else(PoisonError::into_inner);
        drop(
            changed
                .wait_while(held, |held| *held)
                .unwrap_or_else(PoisonError::into_inner),
        );
    }

    fn lock(&self) -> MutexGuard<'_, Sim> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next `op` fails with `fault` (writes and syncs: on a file not being prepared, not
    /// named `*.tmp`). Several may wait; each fails one operation.
    pub fn inject(&self, op: FaultOp, fault: Fault) {
        self.lock().faults.push((op, fault));
    }

    /// Faults still waiting for an operation of kind `op`.
    pub fn pending_faults(&self, op: FaultOp) -> usize {
        self.lock().faults.iter().filter(|(o, _)| *o == op).count()
    }

    /// Forgets every fault still waiting.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Writes and syncs done so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Cuts the power. Returns the disk as it would be found afterwards: the durable image of
    /// every file under its durable name, plus, at random, a prefix of the last write not yet
    /// synced, and each write lost to a failed sync kept or not. This disk stops working:
    /// every later operation on it fails with EIO (so a writer thread still running cannot
    /// reach the returned disk). After [`SimDisk::crash_at_op`] fired, returns the disk as it
    /// was found at that moment; after [`SimDisk::kill_at_op`], what the kill left (killed
    /// now if its write or sync never came).
    pub fn crash(&self) -> SimDisk {
        let mut sim = self.lock();
        let after = match sim.frozen.take() {
            Some(frozen) => *frozen,
            // The kill `kill_at_op` asked for did not come before: it comes now.
            None if sim.kill_at => sim.killed(),
            None => sim.power_cut(),
        };
        sim.crashed = true;
        SimDisk {
            inner: Arc::new(Mutex::new(after)),
            syncs_held: Arc::default(),
        }
    }

    /// Kills the process (`kill -9`): returns the disk as the next process finds it, with
    /// every write there (the page cache outlives the process) and what was never synced
    /// still not durable, so a [`SimDisk::crash`] of the returned disk later may still lose
    /// it. This disk stops working as after a crash (the dead process's threads cannot reach
    /// the returned disk, whose syncs are not held).
    pub fn kill(&self) -> SimDisk {
        let mut sim = self.lock();
        let after = sim.killed();
        sim.crashed = true;
        SimDisk {
            inner: Arc::new(Mutex::new(after)),
            syncs_held: Arc::default(),
        }
    }

    /// [`SimDisk::crash_at_op`], but the process is killed there rather than the power cut:
    /// [`SimDisk::crash`] then returns what [`SimDisk::kill`] would have.
    pub fn kill_at_op(&self, n: u64) {
        let mut sim = self.lock();
        sim.crash_at = Some(sim.ops + n.max(1));
        sim.kill_at = true;
    }

    /// Cuts the power just before the `n`th write or sync from now (1: the next one), which
    /// then fails with EIO like everything after it. [`SimDisk::crash`] returns what it left.
    pub fn crash_at_op(&self, n: u64) {
        let mut sim = self.lock();
        sim.crash_at = Some(sim.ops + n.max(1));
        sim.kill_at = false;
    }

    /// Bytes read from every file so far.
    pub fn bytes_read(&self) -> u64 {
        self.lock().bytes_read
    }

    /// The current bytes of `name` (for tests that corrupt a file).
    pub fn bytes(&self, name: &str) -> Option<Vec<u8>> {
        let sim = self.lock();
        let id = sim.names.get(name)?;
        Some(sim.files[id].current.clone())
    }

    /// Overwrites bytes of `name` durably, as bit rot would (for corruption tests).
    pub fn corrupt(&self, name: &str, offset: u64, bytes: &[u8]) {
        let mut sim = self.lock();
        let id = sim.names[name];
        let data = sim.files.get_mut(&id).expect("named file exists");
        write_into(&mut data.current, offset, bytes);
        write_into(&mut data.durable, offset, bytes);
    }
}

impl Sim {
    /// What a power cut now would leave (see [`SimDisk::crash`]).
    fn power_cut(&mut self) -> Sim {
        let seed = self.rng.random();
        let mut rng = StdRng::seed_from_u64(seed);
        // The write a crash may tear: the last unsynced one of the newest file that has any
        // (the log writes one file at a time, in the order the files were created).
        let mut last: Option<(u64, usize)> = None; // (file, index in its unsynced writes)
        for (&id, data) in &self.files {
            if !data.unsynced.is_empty() {
                last = Some((id, data.unsynced.len() - 1));
            }
        }
        let mut files = BTreeMap::new();
        for (&id, data) in &self.files {
            if !self.durable_names.values().any(|v| *v == id) {
                continue;
            }
            let mut image = data.durable.clone();
            for (offset, bytes) in &data.limbo {
                if rng.random_bool(0.5) {
                    write_into(&mut image, *offset, bytes);
                }
            }
            if let Some((file, index)) = last {
                if file == id {
                    let (offset, bytes) = &data.unsynced[index];
                    // Torn anywhere up to its last nonzero byte: the zeros after it (the
                    // writer runs a group's write on to its page's end) go over zeros, and a
                    // tear among them would be no tear at all.
                    let written = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                    let keep = rng.random_range(0..=written);
                    write_into(&mut image, *offset, &bytes[..keep]);
                }
            }
            files.insert(
                id,
                SimFileData {
                    current: image.clone(),
                    durable: image,
                    unsynced: Vec::new(),
                    limbo: Vec::new(),
                    cut: None,
                },
            );
        }
        let names = self.durable_names.clone();
        self.next_run(rng, files, names)
    }

    /// The disk as the next process finds it after a kill (see [`SimDisk::kill`]).
    fn killed(&mut self) -> Sim {
        let rng = StdRng::seed_from_u64(self.rng.random());
        let (files, names) = (self.files.clone(), self.names.clone());
        self.next_run(rng, files, names)
    }

    /// The disk the next run finds, holding `files` under `names` (the durable directory
    /// unchanged): no fault, crash or count carried over.
    fn next_run(
        &self,
        rng: StdRng,
        files: BTreeMap<u64, SimFileData>,
        names: BTreeMap<String, u64>,
    ) -> Sim {
        Sim {
            crashed: false,
            rng,
            files,
            next_file: self.next_file,
            names,
            durable_names: self.durable_names.clone(),
            faults: Vec::new(),
            ops: 0,
            bytes_read: 0,
            crash_at: None,
            kill_at: false,
            frozen: None,
        }
    }

    /// Counts a write or sync; cuts the power (or kills the process) first if this is the
    /// one `crash_at` names.
    fn op(&mut self) -> io::Result<()> {
        self.check()?;
        self.ops += 1;
        if self.crash_at == Some(self.ops) {
            let after = if self.kill_at {
                self.killed()
            } else {
                self.power_cut()
            };
            self.frozen = Some(Box::new(after));
            self.crashed = true;
            return Err(Fault::Io.error());
        }
        Ok(())
    }

    fn check(&self) -> io::Result<()> {
        if self.crashed {
            return Err(Fault::Io.error());
        }
        Ok(())
    }

    /// The fault for this `op` on file `id`, if one is due. Writes and syncs of files still
    /// being prepared (`*.tmp`) are spared, so a test's fault hits the log's own write or
    /// sync; [`FaultOp::Create`] is how a test fails preparations.
    fn take_fault(&mut self, op: FaultOp, id: Option<u64>) -> Option<Fault> {
        let preparing = self
            .names
            .iter()
            .any(|(name, &f)| Some(f) == id && name.ends_with(".tmp"));
        if preparing {
            return None;
        }
        let i = self.faults.iter().position(|(o, _)| *o == op)?;
        Some(self.faults.remove(i).1)
    }

    fn id(&self, name: &str) -> io::Result<u64> {
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

impl Storage for SimDisk {
    fn create(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        let mut sim = self.lock();
        sim.check()?;
        if let Some(fault) = sim.take_fault(FaultOp::Create, None) {
            return Err(fault.error());
        }
        if sim.names.contains_key(name) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let id = sim.next_file;
        sim.next_file += 1;
        sim.files.insert(id, SimFileData::default());
        sim.names.insert(name.to_string(), id);
        Ok(Arc::new(SimFile {
            disk: self.clone(),
            id,
        }))
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        let sim = self.lock();
        sim.check()?;
        let id = sim.id(name)?;
        Ok(Arc::new(SimFile {
            disk: self.clone(),
            id,
        }))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let sim = self.lock();
        sim.check()?;
        Ok(sim.names.keys().cloned().collect())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut sim = self.lock();
        sim.check()?;
        let id = sim.id(from)?;
        sim.names.remove(from);
        sim.names.insert(to.to_string(), id);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut sim = self.lock();
        sim.check()?;
        sim.id(name)?;
        sim.names.remove(name);
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut sim = self.lock();
        sim.check()?;
        sim.durable_names = sim.names.clone();
        Ok(())
    }
}

struct SimFile {
    disk: SimDisk,
    id: u64,
}

impl SegmentFile for SimFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut sim = self.disk.lock();
        sim.op()?;
        if let Some(fault) = sim.take_fault(FaultOp::Write, Some(self.id)) {
            // A failed write may still have changed some of the file.
            let keep = sim.rng.random_range(0..=buf.len());
            let data = sim.files.get_mut(&self.id).expect("open file exists");
            write_into(&mut data.current, offset, &buf[..keep]);
            data.unsynced.push((offset, buf[..keep].to_vec()));
            return Err(fault.error());
        }
        let data = sim.files.get_mut(&self.id).expect("open file exists");
        write_into(&mut data.current, offset, buf);
        data.unsynced.push((offset, buf.to_vec()));
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut sim = self.disk.lock();
        sim.check()?;
        let current = &sim.files[&self.id].current;
        let start = (offset as usize).min(current.len());
        let n = buf.len().min(current.len() - start);
        buf[..n].copy_from_slice(&current[start..start + n]);
        sim.bytes_read += n as u64;
        Ok(n)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.disk.wait_while_syncs_held();
        let mut sim = self.disk.lock();
        sim.op()?;
        let fault = sim.take_fault(FaultOp::Sync, Some(self.id));
        let data = sim.files.get_mut(&self.id).expect("open file exists");
        let writes = std::mem::take(&mut data.unsynced);
        match fault {
            // (A cut waits for a sync that succeeds: the file's size is its metadata, which
            // the next fdatasync commits.)
            Some(fault) => {
                data.limbo.extend(writes);
                Err(fault.error())
            }
            None => {
                if let Some(len) = data.cut.take() {
                    data.durable.truncate(len as usize);
                    // What a failed sync left in limbo past the cut is gone with it.
                    cut_writes(&mut data.limbo, len);
                }
                for (offset, bytes) in writes {
                    write_into(&mut data.durable, offset, &bytes);
                }
                Ok(())
            }
        }
    }

    /// (Not an op that `crash_at_op` counts or a fault can hit: only the file destination's
    /// tests cut files.)
    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut sim = self.disk.lock();
        sim.check()?;
        let data = sim.files.get_mut(&self.id).expect("open file exists");
        assert!(
            len <= data.current.len() as u64,
            "truncate only cuts a file ({len} > {})",
            data.current.len()
        );
        data.current.truncate(len as usize);
        // The unsynced writes keep only what is left of them.
        cut_writes(&mut data.unsynced, len);
        data.cut = Some(data.cut.map_or(len, |c| c.min(len)));
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        let sim = self.disk.lock();
        sim.check()?;
        Ok(sim.files[&self.id].current.len() as u64)
    }

    fn zero_fill(&self, len: u64) -> io::Result<()> {
        let at = self.size()?;
        if at < len {
            self.write_at(&vec![0; (len - at) as usize], at)?;
        }
        self.sync_data()
    }
}

#[cfg(test)]
mod tests;
