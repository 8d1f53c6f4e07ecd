//! The spool: hookfan's durable store, and the only code that writes the data_dir. A
//! log-structured store: events and every change of a route's queue are records appended to
//! segment files in groups, one write and one fdatasync per group; the state they mean is
//! kept in memory, checkpointed, and rebuilt at open from the newest checkpoint and the log
//! after it. This file is its design: the format, the rules of recovery and the invariants.
//! Every part works over a storage trait that a simulated disk implements for crash tests.
//! The daemon's spool is [`Spool`] ([`LogSpool`], the facade).
//!
//! # Layout
//! - [`storage`]: the file operations the log needs ([`Storage`]), on the real disk
//!   ([`RealDisk`]) and on a simulated one that crashes ([`SimDisk`]).
//! - [`segment`]: the frame format (segment header, group frames), pure.
//! - [`record`]: the records inside groups, pure.
//! - [`state`]: what the records mean (queues, dead letters, dedup index), pure; the events
//!   it holds are kept by `event_table` (pages of 64 seqs), the dedup index by
//!   `dedup_index` (each remembered event's seq alone, its fingerprint read from the table).
//! - [`writer`]: the group-commit writer thread and the segment preparer.
//! - [`checkpoint`]: the state written whole to one file (codec pure, writer thin).
//! - [`compaction`]: checkpoints taken, segments no one needs deleted, the few records
//!   still needed in old segments copied forward ([`compaction::Maintenance`], its thread).
//! - [`recovery`]: opening a directory: the newest valid checkpoint, then every valid group
//!   after it applied, a torn tail cut, corruption refused.
//! - [`import`]: upgrading a data_dir that holds a redb spool (`spool.redb`): imported
//!   once at open into a fresh log, crash-safe, then renamed aside; or refused, never ignored.
//! - [`reader`]: a record read back by its location (the dedup check's confirmation), and a
//!   segment's groups in order, a window at a time (recovery's check of old segments).
//! - [`facade`]: [`LogSpool`], the spool's API over the log (see "The facade"); its
//!   arguments, results and error are in [`api`].
//! - [`verify`]: `hookfan spool verify`, every file looked at and recovery run over a
//!   read-only view of the directory ([`verify::ReadOnlyDir`]): the verdict `serve` would
//!   reach, nothing changed.
//! - [`redb`]: the previous spool (one redb file), kept only for [`import`] and its tests.
//! - [`seq_set`]: a set of seqs as bitmaps (a route's never-attempted events).
//! - [`repair`]: `hookfan spool repair`, for a log recovery refuses: every intact group
//!   kept (see "Repair"), a fresh log written through the [`writer`], swapped in, and a
//!   report of what could not be kept.
//!
//! Still to come (issue 21): recycling segments (reuse as prepared ones instead of delete
//! and create), batched readers of event bodies for delivery.
//!
//! # On disk
//! A directory (`<data_dir>/spool/`) of segment files, at most a few checkpoint files
//! (`<lsn, 20 digits>.ckpt`, see "Checkpoints") and `LOCK` (see "The facade"). Beside it in
//! the data dir, after a `hookfan spool repair` (see "Repair"): `spool.corrupt-<secs>/`, the
//! old log as it was, and `spool-repair-<secs>.txt`, its report; `spool.repair/` only while
//! a repair runs. Segment files are `<index, 20 digits>.seg`, each of one fixed size,
//! created ahead of need as `<index>.seg.tmp`, zero-filled, synced, renamed and the
//! directory synced ([`writer`]'s preparer thread), so neither a file creation, a size
//! change nor a directory sync ever happens while a webhook waits. (The zeros go with
//! direct I/O where the file system takes it, see [`storage`]; each write of a group runs
//! on with zeros to the end of its last page, over the zeros already there, so no write
//! ends in a page the page cache lacks, which would be read back first.) Integers are little endian.
//!
//! ```text
//! segment file
//! +----------------+---------+---------+-----+---------+------------------------------+
//! | segment header | group 1 | group 2 | ... | group n | zeros (prepared, not yet used)|
//! +----------------+---------+---------+-----+---------+------------------------------+
//! 0                40                          every group starts at a multiple of 8
//!
//! segment header (40 bytes)
//!  0  magic "HFSG"      4 | 4 version (1) 1 | 5 flags 1 | 6 zero 2
//!  8  segment index     8
//! 16  start lsn         8   lsn of the first record in this segment
//! 24  void from         8   records of earlier segments at or after this lsn are void
//! 32  crc32c(0..32)     4 | 36 zero 4
//!     flags bit 0 TAIL_UNTRUSTED: earlier segments may end in bytes not to be read
//!
//! group frame (40-byte header, payload, zero padding to a multiple of 8)
//!  0  magic "HFGR"      4 | 4 version (1) 1 | 5 zero 3
//!  8  segment index     8   the segment it was written to (a generation: stale bytes of
//!                           another use of the file never pass for this segment's)
//! 16  first lsn         8   lsn of its first record; the others follow, one each
//! 24  record count      4
//! 28  payload length    4
//! 32  crc32c            4   over bytes 0..32 and the payload
//! 36  zero              4
//! 40  payload: count × ( length u32 | record bytes, see record.rs )
//! ```
//!
//! Every record has a log sequence number (lsn): the group's first lsn plus its index in the
//! group. lsns grow by one from record to record, across groups and segments, except where
//! a segment header declares a gap (below). An event's seq is the lsn of its record.
//!
//! # Records and state
//! Records ([`record`]) are hand-framed: a kind byte, LEB128 integers, length-prefixed
//! strings and bytes. An event carries its body once, however many routes take it, and
//! each route's first due time; every change of a route's queue (delivered, retry, hold,
//! dead, replay, drop, drop-pending) is a record of a few bytes, routes being interned ids
//! ([`Record::Route`]). Two records change no queue: [`Record::ExpireIds`] moves the dedup
//! window (so that a restart forgets exactly the ids that were forgotten), and
//! [`Record::Copy`] is compaction's copy of an event (see "Compaction"). An event may carry
//! a W3C trace context ([`Trace`]: trace and span ids, flags, `tracestate`), kept for its
//! deliveries' spans; only a traced event is written as kind 13 (a flags byte after the
//! kind), so an untraced one keeps the bytes of kinds 2 and 12 that hookfan wrote before
//! tracing, and a spool written with tracing off opens in those versions. [`State`] is what
//! they mean, rebuilt by applying them in lsn order; the writer applies each group once it
//! is durable, recovery applies the log after the newest checkpoint.
//!
//! # Group commit
//! Callers submit records to the writer ([`Writer::submit`]): each submission is encoded
//! into the group being filled, given its lsns, and never split across groups (so a replay of
//! many dead letters, or a batch of outcomes, is all or nothing). The writer thread takes the
//! whole filled group, seals it (header, checksum), writes it with one positional write and
//! makes it durable with one fdatasync; meanwhile the next group fills. Then it applies the
//! group to the [`State`] and publishes one watermark, "resolved up to lsn N", waking the
//! waiters it resolves and no others. Then it wakes, once, the delivery of each route the
//! group gave an event or a replayed dead letter ([`LogSpool::route_waker`]): one wake-up
//! per route and group, from the writer, not one per webhook from the ack path. A group
//! waits for no timer: with nothing else waiting a lone record is written at once.
//!
//! There is only one unsynced group at a time: the writer writes group n+1 only after group
//! n's fdatasync returned. Recovery's torn-tail rule below depends on it. (Overlapping the
//! write of group n+1 with the sync of group n would need a second rule: a valid group
//! after a bad one proves corruption only beyond the pipeline's depth. A prototype that
//! synced on one or two threads beside the writer measured 0.85–0.9× the rate of this one
//! on the 2-core benchmark machine, so it was not pursued.)
//!
//! A segment's first group is written together with the segment header, in the same write.
//! When the group being sealed does not fit in the current segment's rest, the writer moves
//! to the next prepared segment; its header's `void from` = its `start lsn` = the lsn after
//! the last record of the previous one.
//!
//! # Failure (EIO, ENOSPC on write or fdatasync)
//! The whole group fails. Pages whose fsync failed are never trusted again (Linux may have
//! marked them clean without writing them): the writer abandons the segment and takes the
//! next prepared one, whose header has `TAIL_UNTRUSTED` and `void from` = the end of the
//! last durable group; it writes that header and an empty group at once and syncs them (the
//! barrier), and only then answers the failed group's waiters with an error. The failed
//! group's lsns are not reused: its records are void wherever their bytes landed. A barrier
//! whose write fails costs another segment (three at most); while no segment can be
//! prepared because the disk is full, the barrier waits for one (`barrier_timeout`). When it
//! cannot be made durable, the waiters are told so ([`LogError::WriteFailed`] with
//! `voided: false`): their records may come back after a crash (as a duplicate, which
//! at-least-once allows), until the next segment header declares them void.
//!
//! When no prepared segment comes in time (`rotate_timeout`: the preparer cannot create or
//! fill files, a full disk), the group fails before any byte of it is written (`voided:
//! true`); its lsns are skipped the same way, so the next segment is `TAIL_UNTRUSTED` too.
//! Writing resumes by itself once the preparer succeeds again.
//!
//! A reopen after a crash starts a new segment the same way (`TAIL_UNTRUSTED`, `void from` =
//! the end of what was recovered), so the tail that was cut stays cut. Before it writes, the
//! writer makes durable what recovery read: after a kill the page cache held the last run's
//! writes, synced or not, and a power cut later must not take them from under the records
//! that follow (a gap recovery would refuse). It syncs every segment replayed, and first
//! writes the last group recovery applied again, the bytes recovery validated (not a
//! second read, which could find the disk's older bytes): pages a failed sync left marked
//! clean but unwritten (the run killed before its barrier) are saved by no sync, only by a
//! new write, and the writer never writes after a failed sync, so only that group can hold
//! such pages (found by the model test, with a kill after a failed sync, then a power cut). Opening returns once
//! a segment is ready for that (a spare the last run prepared, or the preparer's first; at
//! most 30 s, less if a preparation fails), so a daemon killed before it prepared any does
//! not answer its first webhooks 503 while a segment is zeroed on a busy disk.
//!
//! # Checkpoints
//! A checkpoint is the [`State`] after every record below some lsn L, written whole:
//!
//! ```text
//! checkpoint file <L, 20 digits>.ckpt
//!  0  magic "HFCK"      4 | 4 version (2) 1 | 5 zero 3
//!  8  lsn L             8   the state holds every record below L, none at or after it
//! 16  segment K         8   the segment of record L-1 (0: none): every record at or after
//!                           L is in K or a later segment; every earlier segment holds
//!                           only records below L
//! 24  body length       8
//! 32  crc32c(0..32)     4 | 36 zero 4
//! 40  body, in blocks of 64 KiB (the last one shorter): crc32c(block) 4 | block
//!
//! body (LEB128 integers, length-prefixed strings; Δ: the difference from the previous
//! one (the first from 0), ±: the same, zigzagged, u64: 8 bytes little-endian)
//!   fingerprint keys k0 k1      the dedup fingerprints' SipHash keys, random per log
//!   names:   count × (route id, name)
//!   events:  count, ids (how many are marked remembered), count × (Δseq, ±segment, offset,
//!            length, ±received_at_ms, due_after_ms × 2 + remembered, [fingerprint u64
//!            if remembered])                  in seq order, so the dedup window's too
//!   routes:  count × (route id,
//!            fresh:  count × (Δbucket, 16 × u64)   the never-attempted events' bitmaps
//!            others: count × (Δdue, seq, attempts, not_before_ms, error, group)
//!            dead:   count × (Δseq, attempts, error, dead_at_ms, group))
//!   error:   0 none (never a dead letter's) | 1, text (the route's next) | 2 + n (the
//!            route's n-th, from 0)
//! ```
//!
//! A backlog costs its events (about 15 bytes each, 23 with a remembered id) and an eighth
//! of a byte per event and route; a failing route's entries name its error texts by
//! number. Version 1 (`checkpoint/v1.rs`: every pending entry as six integers, the error
//! texts and the window listed in full) is still read, so a log written before keeps its
//! checkpoints; the next one is written in version 2.
//!
//! Derived when it is read, and checked: each event's holders (the routes that list it),
//! the dedup index, what of each segment is needed. A body whose parts disagree (a route
//! holding an unlisted event or listed twice, never-attempted events out of their due
//! order, two remembered ids of one fingerprint, an event nobody needs) is refused like a
//! checksum failure. A route listed with nothing is not kept.
//!
//! Written by maintenance ([`compaction::Maintenance`]), never on the ack path, and never
//! encoded under the writer's lock. Under it, for a moment, maintenance reads where the
//! writer stands (L, K and where its data in K ends) and takes a [`state::Snapshot`] of
//! the state: its event pages and the bitmaps of never-attempted events are shared, each
//! copied only when the writer first changes it afterwards (copy on write); the entries of
//! events retried, held or dead are copied; the dedup index is left out (the checkpoint
//! lists the window from the events). The snapshot is encoded while the writer goes on.
//! When a snapshot would copy many entries (more than `snapshot_at_most`, 32k by default:
//! a failing route with a large backlog), the writer would wait for that copy, so the
//! state at L is rebuilt by maintenance instead, by recovery's own rules, from the newest
//! checkpoint it kept and the log after it up to L ([`recovery::replay_until`]; records at
//! or after L, which the writer may be writing, are not looked at, and of K only the part
//! the writer had applied is read): the writer never waits, at the price of a second copy
//! of the state in memory meanwhile, and such a checkpoint also proves that the log since
//! the last one replays. If it does not (damage), the error is logged and counted, and
//! that checkpoint is taken from a snapshot after all, which puts the damage behind it.
//! Either way it is encoded as `<L>.ckpt.tmp` is written, on a thread at a lower CPU
//! priority (`hookfan-ckpt`), 256 KiB at a time, each synced (so a large checkpoint never
//! queues more at the disk ahead of the log's fdatasyncs, and its encoded body is never
//! whole in memory), the
//! header (which holds the body's length) last; then the file is renamed to `<L>.ckpt` and
//! the directory synced. Two are kept: once a new one is durable, every
//! other but the one before it is removed. A crash leaves at most a `.ckpt.tmp`, removed
//! at open.
//!
//! **Recovery's rule**: the newest checkpoint that decodes, then the log after it. A
//! damaged newer one is passed over (logged, and named in the report) only when the older
//! checkpoint (or the whole log, when none is left) plus the segments still present give a
//! state at least as new as the damaged one's lsn, with every needed record present;
//! otherwise it is refused with [`LogError::Corrupt`] naming the damaged checkpoint and
//! the offset of its header or damaged block. Compaction keeps that fallback always
//! available (its floor, below): losing one checkpoint never loses a record; losing both
//! is refused, never silent.
//!
//! # Compaction
//! A segment can go when (1) no replay needs it and (2) no event still needed has its
//! record there. (1): its index is below the **floor**, the segment K of the *older* of the
//! two checkpoints kept (nothing goes while fewer than two exist). (2): the state counts,
//! per segment, the events located there ([`State::segment_uses`]); once a segment holds
//! none it never will again, since locations only move forward. Such segment files are
//! removed and the directory synced, on the maintenance thread (not recycled yet).
//!
//! Long-lived events (dead letters, a slow route's backlog, ids the dedup window keeps)
//! pin their segments. When what a segment below the floor still holds costs at most a
//! quarter of a segment to copy (`copy_at_most`), its events are **copied forward**: for
//! each, a [`Record::Copy`] `{seq, event record}` is submitted through the writer like
//! any record, in batches, at most `copy_at_most` bytes per step. An event no route holds
//! any more (kept only for its id) is copied without its body and routes. Applying a copy
//! moves the event's location to the event record inside it and changes nothing else; a
//! copy of an event the state no longer holds changes nothing. The older copy is never
//! read again: recovery applies the original `Event` and then the `Copy` in lsn order (or
//! starts from a checkpoint that already has the new location), and the segment holding
//! the original is deleted once nothing else pins it. The segment is read whole and its
//! checksums checked before anything is copied; a needed record found damaged stops
//! compaction with [`LogError::Corrupt`].
//!
//! A maintenance round ([`compaction::Maintenance::step`]) takes a checkpoint when one
//! would let the floor rise (fewer than two kept, the log moved to a later segment, or
//! enough records since the last) and it is worth its cost: the newest one is small (up to
//! 1 MiB), or the log written since is at least 4 times its size, so checkpoints never
//! write more than a quarter of what the log writes, however large the backlog (a restart
//! then replays at most that much log after the checkpoint). Then one compaction step. An idle log whose floor still
//! lags writes one no-op record (`ExpireIds` of nothing) so a second checkpoint can be
//! taken: after a backlog drains, the directory falls back to the segment being written,
//! the prepared ones, those the two checkpoints still need, and whatever long-lived events
//! fill.
//!
//! # Recovery: a torn tail, or corruption
//! Recovery reads the newest valid checkpoint (see "Checkpoints"; a block at a time, each
//! block's checksum checked before its bytes are decoded, so the file is never whole in
//! memory), then replays the log from its segment K, applying the records at or after its
//! lsn. The segments before K are not replayed (compaction deletes them); the ones that
//! still hold needed events are read, a window at a time up to the last of them
//! ([`reader::for_each_group`]), and each such event must be in a valid group there, as an event of its seq or a copy of it
//! (else [`CorruptWhy::EventMissing`]). That reading starts as soon as the checkpoint's
//! events are decoded, on the events it lists, on the cores the decoding and the replay
//! leave free; after the replay, only the events it could not confirm are looked for again
//! (the replay only takes events out of old segments: new events and copies are written
//! after K), so what is refused is the same as if it had waited. From K on, segments are read in index order; each one's valid groups must follow one another
//! (chained lsns, this segment's index, checksums); the first bytes that are not the next
//! valid group end the segment's data. Then:
//!
//! - **Zeros to the end of the file**: a clean end.
//! - **The newest segment** (the last one with anything written) may end in a torn group:
//!   the one group in flight at the crash, never acknowledged (zeros, a short frame, or a
//!   checksum failure). It is cut off, counted, and logged in one line, *provided no valid
//!   group of that segment follows it*: the writer writes a group only after the previous
//!   one was synced, so a valid group further on proves the bad bytes were synced, i.e.
//!   acknowledged: that is corruption.
//! - **A sealed segment** (a later one has data) must end cleanly, unless the next segment
//!   with a valid header says `TAIL_UNTRUSTED`: then its bytes after `void from` are a failed
//!   write's, and records at or after `void from` are void (skipped, counted).
//! - **Segments with no valid header** (a zeroed or bad header over some written bytes)
//!   after the newest valid one are the torn tail too: a failed group's fresh segment and a
//!   barrier cut by the crash, never acknowledged; unless one holds two valid groups or
//!   more, which only acknowledged writes make (refused). Before a valid one, such a
//!   segment is allowed only when the next valid header says `TAIL_UNTRUSTED`. A file of
//!   zeros only is a prepared spare: the writer takes those that are its next segments and
//!   of its size as prepared (a restart's first write waits for no zero-fill), and removes
//!   the others. The newest segments' zero check runs beside the checkpoint's decoding (a
//!   spare filled with direct I/O is read from the disk).
//! - **Every byte counts** in a sealed segment: reserved and padding bytes must be zero, and
//!   the zeros after the last group must be zeros.
//! - **Sequence checks across segments**: a normal segment starts at the lsn where the
//!   previous one's records ended; a `TAIL_UNTRUSTED` one's `void from` equals it. A
//!   mismatch means acknowledged records are missing. The first segment replayed must be
//!   the checkpoint's K and start at or before its lsn (with no checkpoint: start the log,
//!   at lsn 1), and the records must reach the checkpoint's lsn.
//!
//! Anything else is refused: [`LogError::Corrupt`] names the file, the offset and why. The
//! limits of what can be told apart: a bit flipped in the newest segment's *last*
//! acknowledged group, or in the header of a newest segment that holds a single group,
//! reads as a torn tail (that group is cut and the cut logged, not refused); telling those
//! apart needs a second copy of the headers (TigerBeetle's redundant headers), not done
//! here.
//!
//! # Repair
//! What recovery refuses, `hookfan spool verify` shows (file, offset, why, and the error
//! `serve` gives) and `hookfan spool repair` gets past, with hookfan stopped (it takes the
//! `LOCK`). Repair starts from the newest checkpoint that decodes (damaged ones are listed
//! and ignored; none: from an empty state), reads every segment and keeps every group whose
//! frame checks, resynchronising after damage at the next 8-byte boundary that holds a valid
//! group of that segment, and applies the records after the checkpoint in lsn order
//! (records a later segment declares void stay void; a record about an event that was lost
//! changes nothing and is listed; an event whose record was lost but whose compaction copy
//! was kept comes back from the copy). Every event the state then holds must have an intact
//! record; those that do not are lost, and named (seq, routes, and the webhook id when the
//! damaged bytes still show it). A route whose `Route` record was lost (no valid checkpoint
//! names it) keeps its events under `unnamed-route-<id>`, a name no configured route has,
//! so they are never delivered to the wrong route. The result is written as a fresh log
//! (`Route`s, each `Event` with its routes' due times, then its `Retry`, `Hold` and `Dead`
//! records, in segments of the old log's size) into `<data_dir>/spool.repair/`, read back
//! and compared, then swapped in: a marker (`REPAIRED`) is written and synced into
//! `spool.repair/`, `spool/` becomes `spool.corrupt-<unix secs>` (kept for the operator;
//! `-2`, ... for another repair in the same second), `spool.repair/` becomes `spool/`, the
//! data dir synced after each rename, and the marker removed. A crash between the two
//! renames leaves no `spool/` and a marked `spool.repair/`: the next `serve` (before it
//! creates anything) or `repair` finishes the swap ([`repair::finish_interrupted`]), so the
//! repaired log is never passed over for an empty one. An unmarked `spool.repair/` is a
//! repair stopped before its swap, with the old log still in place: the next repair
//! removes it. The report (`<data_dir>/spool-repair-<unix secs>.txt`) lists every damaged region
//! (file, offset, length), the lsn ranges lost, and the events lost; it is written and
//! synced before the swap. Limits: damage that ends the log cannot be told from a torn
//! tail (it is listed as either); a damaged `TAIL_UNTRUSTED` header no longer voids the
//! failed records before it, so they may come back (as duplicates, which at-least-once
//! allows).
//!
//! # The facade
//! [`LogSpool`] has the redb spool's methods, arguments, results and guarantees; the spool's
//! contract tests (`spool/contract_tests.rs`) run against both. It lives in
//! `<data_dir>/spool/`, which it locks (`LOCK`, an exclusive `flock`: a second hookfan gets
//! [`crate::spool::SpoolError::InUse`]). Each write is one submission to the writer
//! (so one group: all or nothing), answered once the watermark covers it:
//!
//! | method | records, in one submission | read from |
//! |---|---|---|
//! | `append` | `Event` (+ `ExpireIds`, at most once a second) | dedup: the state, then the candidate's record |
//! | `complete`, `complete_batch` | `Delivered` / `Retry` / `Hold` / `Dead`, one per outcome | |
//! | `dead_letter_action` | `Replay` (due now) or `Drop`, one per selected letter | the state; ids from records |
//! | `drop_pending` | `DropPending` | the state (the count) |
//! | `due` | | the state (order, holds), then each event's record |
//! | `route_summary`, `pending_count`, `routes_on_disk`, `stored_events` | | the state |
//! | `dead_letters` | | the state, then each letter's record |
//!
//! - **Routes** are bound once (`Route` records, a durable submission of their own before
//!   the first event naming them, serialized so a name never gets two ids); the facade keeps
//!   name → id in memory, loaded from the state at open.
//! - **Dedup**: an append first *claims* its webhook id (a map of ids in flight): a second
//!   append of the same id waits until the first is answered, then checks, and finds it
//!   stored (or, if the first failed, stores it). The check is the state's fingerprint hit
//!   ([`State::dedup_candidate`]), within the window, confirmed by reading the id stored in
//!   the candidate's record. A claim whose caller went away before its answer is released
//!   only once its record is resolved. Expiry is an `ExpireIds` record riding along with
//!   an append at most once a second (cutoff: now minus that append's window); the check
//!   applies the window exactly, so expiry only frees memory and lets compaction free
//!   segments.
//! - **FIFO holds** (ordered routes: FIFO queues and topics): each event's entry on such
//!   a route carries the fingerprint of its message group
//!   ([`crate::spool::message_group_fingerprint`] of the rendered `message_group_id`, given
//!   by ingest through `append_grouped` and written in the event record, kind 12), kept
//!   through retries, holds, dead letters and replays. `due` walks the queue in order; an
//!   event that waits (held until later, or in flight: its outcome may be a hold) blocks its
//!   group, and every later event of a blocked group is skipped, so order within a group is
//!   exactly queue order while other groups go on. Group 0 (no group: an event stored
//!   without one) belongs to every group: it waits for any blocked group, and while it
//!   waits nothing after it goes, which is the whole-route FIFO of the redb spool. Skipping
//!   reads nothing from disk: the groups are in memory.
//! - **Queue order of new events**: the due time is `max(received_at, the last one given)`,
//!   set under a lock held across the submission, so queue order is lsn order even when
//!   callers' clocks disagree (ordered routes rely on it).
//! - **Bodies are never kept in memory**: `due` and `dead_letters` read each event's record
//!   back by its location; one that compaction moved and whose segment it deleted meanwhile
//!   (`NotFound`) is read again where the state now says; one the state no longer holds (it
//!   was completed meanwhile) is left out.
//! - **In memory**: the [`State`] (see `state.rs`: ~45 bytes per event pending on 3 routes,
//!   ~50 per id remembered after delivery, the retried, held and dead ones more),
//!   route names, and the ids being appended.
//! - A failed write sets `commit_error` until a write succeeds; `close` stops maintenance,
//!   then closes the writer (what was submitted is written), then releases the lock.
//!
//! Differences from the redb spool, none seen by its callers' tests: a completion names
//! its event by seq and route alone (redb also matches the due time of the key); an
//! event stored for no route is not counted by `stored_events`; the first webhook for a
//! new route waits for one more sync; `complete_batch` retries a full group (`Busy`)
//! without bound, as redb's waits for queue room.
//!
//! # Invariants
//! - **A record is acknowledged only after the fdatasync that covers it returned.**
//! - **Only the writer thread writes to segments; only the preparer creates them; only
//!   maintenance (and the writer at start, for never-used spares it does not take)
//!   removes them.**
//! - **A group is all or nothing**: recovery applies a group whole or not at all, and a
//!   submission is never split across groups.
//! - **Failed records stay void**: once a barrier is durable, no crash brings back a record
//!   that was answered as failed.
//! - **Applying the log is deterministic** ([`State::apply`] is total and pure), so the
//!   state after recovery equals the state the writer had built from the same records, and
//!   a checkpoint plus the log after it equals the whole log. Nothing changes the state
//!   but a durable record (dedup expiry included).
//! - **A checkpoint is durable (file synced, renamed, directory synced) before anything it
//!   covers is deleted, and a segment is deleted only when two checkpoints cover it and
//!   no event still needed is located in it.**
//! - **Compaction and checkpoints never run on the ack path**: they run on the maintenance
//!   thread, through the [`Storage`] trait (so the crash tests cover them), and reach the
//!   log only by submitting records like any caller. A checkpoint is rebuilt from the log,
//!   not read from the writer's state, and must equal it (the model test checks every one).
//! - **The decoders never panic and never allocate** (record fields, bodies and an event's
//!   routes are borrowed from the input; a scan keeps one small entry per valid group),
//!   fuzzed by `fuzz/fuzz_targets/spool_frames.rs`. The checkpoint decoder works in the
//!   file's own buffer (`decode` copies a borrowed input once) and allocates only what the
//!   entries it read need (each took input bytes); fuzzed by the same target.
//! - No `unsafe`; no file creation, directory sync or size change on the ack path.
//! - **The facade appends an id only after every earlier append of it was answered**, and
//!   answers `Stored` only once the writer's watermark covers the event's record.

mod api;
pub mod checkpoint;
pub mod compaction;
mod dedup_index;
mod event_table;
pub mod facade;
pub(crate) mod import;
pub(crate) mod reader;
pub mod record;
pub(crate) mod recovery;
pub(crate) mod redb;
pub mod repair;
pub mod segment;
mod seq_set;
pub(crate) mod state;
pub(crate) mod storage;
pub mod verify;
pub(crate) mod writer;

#[cfg(test)]
mod facade_model_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

use std::io;
use std::sync::Arc;

pub use api::*;
/// The spool the daemon runs.
pub use facade::LogSpool as Spool;
pub use facade::{LogSpool, LogSpoolConfig};
pub use record::{EventRecord, Record, RecordError, RouteDues, RouteId};
pub use recovery::{recover, Recovered, RecoveryReport};
pub use redb::{RedbSpool, FILE_NAME};
pub use segment::BadFrame;
pub use state::{Location, State};
pub use storage::{RealDisk, SimDisk, Storage};
pub use writer::{Submitted, Ticket, Writer, WriterConfig, WriterStats};

/// Why recovery refuses a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CorruptWhy {
    /// The bytes are not a valid frame, where an acknowledged one must be.
    #[error("{}", .0.describe())]
    Frame(BadFrame),
    /// A valid frame holds a record that does not decode.
    #[error("a record does not decode: {0}")]
    Record(RecordError),
    /// The lsns do not continue from the previous segment: acknowledged records are missing.
    #[error("records {expected}..{found} are missing")]
    Missing { expected: u64, found: u64 },
    /// A segment declares records void in the middle of a group.
    #[error("a void boundary at lsn {0} falls inside a group")]
    VoidInsideGroup(u64),
    /// A checkpoint is damaged, and no older one plus the log still present covers it.
    #[error("{0}")]
    Checkpoint(checkpoint::BadCheckpoint),
    /// An event still needed (pending, dead, or remembered for its id) is not where the
    /// state says: its segment is gone, or holds no valid record of it there.
    #[error("event {seq}'s record is missing")]
    EventMissing { seq: u64 },
    /// A segment file larger than any hookfan writes (4 GiB): not this log's.
    #[error("a segment file of {0} bytes, larger than hookfan writes (4 GiB)")]
    Oversized(u64),
}

/// What can go wrong with the log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// An acknowledged record is damaged or missing. hookfan does not start on such a spool:
    /// `hookfan spool verify` reports it, `hookfan spool repair` keeps every intact record.
    #[error("spool file {file} is corrupt at byte {offset}: {why}; hookfan will not start on it (`hookfan spool verify` shows the damage; `hookfan spool repair`, with hookfan stopped, keeps every intact record and reports what it could not keep)")]
    Corrupt {
        file: String,
        offset: u64,
        why: CorruptWhy,
    },
    /// A file operation failed outside the ack path (listing, reading, preparing).
    #[error("spool {op} {file}: {source}")]
    Io {
        op: &'static str,
        file: String,
        source: Arc<io::Error>,
    },
    /// The group holding the record could not be made durable (EIO, ENOSPC). Ingest answers
    /// 503. `voided`: the record can never come back, even after a crash (the barrier in a
    /// fresh segment is durable); otherwise it may (a duplicate, which at-least-once allows).
    #[error("the spool could not store the record (voided: {voided}): {source}")]
    WriteFailed {
        voided: bool,
        source: Arc<io::Error>,
    },
    /// One submission is larger than a segment can hold.
    #[error("a submission of {bytes} bytes is larger than a segment's group limit of {max}")]
    TooLarge { bytes: usize, max: usize },
    /// The group being filled stayed full: the disk cannot keep up. Ingest answers 503.
    #[error("the spool is overloaded (the group being filled is full)")]
    Busy,
    /// A [`WriterConfig`] the writer cannot work with (a bug in the caller, not a disk state).
    #[error("invalid spool writer setting: {0}")]
    BadConfig(&'static str),
    /// The writer has stopped (closed, or no segment can be prepared).
    #[error("the spool writer has stopped")]
    Closed,
    /// The records were not durable by the waiter's deadline (the disk is slower than
    /// arrivals). They may still be made durable after: at least once, never lost.
    #[error("the spool did not make the records durable in time")]
    Late,
}

impl LogError {
    fn io(op: &'static str, file: impl Into<String>, source: io::Error) -> LogError {
        LogError::Io {
            op,
            file: file.into(),
            source: Arc::new(source),
        }
    }
}
