//! Reading the log back: a record by its [`Location`] (the dedup check confirms a
//! fingerprint hit against the id stored in the event's record; delivery reads bodies the
//! same way), and a segment's groups in order, a window at a time ([`for_each_group`]).
//! Readers only read: they never block the writer.

use std::sync::Arc;

use super::segment::{self, Group, GROUP_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::state::Location;
use super::storage::{SegmentFile, Storage};
use super::LogError;

/// The bytes of the record at `location` (decode them with `Record::decode`).
pub fn read_record(storage: &dyn Storage, location: &Location) -> Result<Vec<u8>, LogError> {
    let name = segment::segment_name(location.segment);
    let file = storage
        .open(&name)
        .map_err(|e| LogError::io("open", name.as_str(), e))?;
    let mut buf = vec![0; location.len as usize];
    let n = file
        .read_at(&mut buf, location.offset)
        .map_err(|e| LogError::io("read", name.as_str(), e))?;
    if n < buf.len() {
        return Err(LogError::io(
            "read",
            name,
            std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
        ));
    }
    Ok(buf)
}

/// Bytes of a segment [`for_each_group`] reads at a time.
const WINDOW: usize = 1 << 20;

/// Calls `each` with every group of segment `index`'s chain of valid groups and its offset
/// in the file, in order: the groups [`segment::scan`] finds in the whole file (the first
/// at the header's start lsn, each the next in lsn order), until bytes that are not the
/// next group, or until `each` returns `false`. Reads the file a window at a time (a group
/// longer than a window in one read of its own), so a segment of tens of MiB is never whole
/// in memory. A file whose header is not segment `index`'s has no groups.
pub fn for_each_group(
    storage: &dyn Storage,
    index: u64,
    each: impl FnMut(u64, Group<'_>) -> Result<bool, LogError>,
) -> Result<(), LogError> {
    for_each_group_by(storage, index, WINDOW, each)
}

/// [`for_each_group`], reading `window` bytes at a time.
fn for_each_group_by(
    storage: &dyn Storage,
    index: u64,
    window: usize,
    mut each: impl FnMut(u64, Group<'_>) -> Result<bool, LogError>,
) -> Result<(), LogError> {
    let name = segment::segment_name(index);
    let file = storage
        .open(&name)
        .map_err(|e| LogError::io("open", name.as_str(), e))?;
    let len = file
        .size()
        .map_err(|e| LogError::io("stat", name.as_str(), e))?;
    let mut window = Window {
        file,
        name: &name,
        len,
        size: window,
        start: 0,
        bytes: Vec::new(),
    };
    let header = match window.get(0, SEGMENT_HEADER_LEN)? {
        Some(h) => segment::decode_segment_header(h).ok(),
        None => None,
    };
    let Some(header) = header.filter(|h| h.index == index) else {
        return Ok(());
    };
    let mut offset = SEGMENT_HEADER_LEN as u64;
    let mut next_lsn = header.start_lsn;
    loop {
        let Some(head) = window.get(offset, GROUP_HEADER_LEN)? else {
            return Ok(());
        };
        // How long the frame claims to be (checked, with the rest, once it is read).
        let payload_len = u32::from_le_bytes([head[28], head[29], head[30], head[31]]);
        let frame_len = segment::frame_len(payload_len as usize);
        let Some(frame) = window.get(offset, frame_len)? else {
            return Ok(());
        };
        match segment::decode_group(frame, index) {
            Ok(group) if group.header.first_lsn == next_lsn => {
                next_lsn = group.header.end_lsn();
                if !each(offset, group)? {
                    return Ok(());
                }
                offset += frame_len as u64;
            }
            _ => return Ok(()),
        }
    }
}

/// A part of a file held in memory.
struct Window<'n> {
    file: Arc<dyn SegmentFile>,
    name: &'n str,
    len: u64,
    /// How much one read takes at least.
    size: usize,
    /// The file offset of `bytes[0]`.
    start: u64,
    bytes: Vec<u8>,
}

impl Window<'_> {
    /// The file's bytes `offset..offset + n`: read with what follows them, up to the
    /// window's size, unless the last read holds them already. `None` past the file's end.
    fn get(&mut self, offset: u64, n: usize) -> Result<Option<&[u8]>, LogError> {
        let Some(end) = offset.checked_add(n as u64).filter(|&end| end <= self.len) else {
            return Ok(None);
        };
        if offset < self.start || end > self.start + self.bytes.len() as u64 {
            let want = (n.max(self.size) as u64).min(self.len - offset) as usize;
            self.bytes.resize(want, 0);
            let got = self
                .file
                .read_at(&mut self.bytes, offset)
                .map_err(|e| LogError::io("read", self.name, e))?;
            self.bytes.truncate(got);
            self.start = offset;
            if got < n {
                return Ok(None);
            }
        }
        let at = (offset - self.start) as usize;
        Ok(Some(&self.bytes[at..at + n]))
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::test_event;
    use super::super::segment::{
        encode_segment_header, push_record, scan, seal_group, SegmentHeader, SegmentScan,
    };
    use super::super::storage::SimDisk;
    use super::*;

    /// Segment 3: a header and `groups` groups of 1 to 9 event records each, of bodies of
    /// varied sizes (one group much longer than the others).
    fn segment_bytes(groups: u64) -> Vec<u8> {
        let header = SegmentHeader {
            index: 3,
            flags: 0,
            start_lsn: 100,
            void_from: 100,
        };
        let mut bytes = encode_segment_header(&header).to_vec();
        let mut lsn = 100;
        for g in 0..groups {
            let start = bytes.len();
            bytes.resize(start + GROUP_HEADER_LEN, 0);
            let count = 1 + g % 9;
            for _ in 0..count {
                let id = "x".repeat(if g == 5 { 5000 } else { (lsn % 300) as usize });
                push_record(&mut bytes, |out| {
                    test_event(Some(&id), lsn, &[0]).encode_into(out);
                });
            }
            seal_group(&mut bytes, start, 3, lsn, count as u32);
            lsn += count;
        }
        bytes
    }

    fn groups_read(disk: &SimDisk, window: usize) -> Vec<(u64, u64)> {
        let mut seen = Vec::new();
        for_each_group_by(disk, 3, window, |offset, g| {
            seen.push((offset, g.header.first_lsn));
            Ok(true)
        })
        .unwrap();
        seen
    }

    fn groups_scanned(bytes: &[u8]) -> Vec<(u64, u64)> {
        match scan(bytes, 3) {
            SegmentScan::Used { groups, .. } => groups
                .iter()
                .map(|g| (g.offset, g.header.first_lsn))
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    fn disk_with(bytes: &[u8]) -> SimDisk {
        let disk = SimDisk::new(1);
        let file = disk.create(&segment::segment_name(3)).unwrap();
        file.write_at(bytes, 0).unwrap();
        disk
    }

    #[test]
    fn a_segment_read_a_window_at_a_time_gives_the_groups_a_scan_of_the_whole_file_finds() {
        let mut bytes = segment_bytes(40);
        bytes.resize(bytes.len() + 3000, 0); // prepared, not yet written
        let whole = groups_scanned(&bytes);
        assert_eq!(whole.len(), 40);
        let disk = disk_with(&bytes);
        // Windows smaller than a group header, than most groups, than the long group, and
        // larger than the file.
        for window in [1, 7, 64, 500, 4096, 1 << 20] {
            assert_eq!(groups_read(&disk, window), whole, "window {window}");
        }
    }

    #[test]
    fn the_reading_stops_where_the_chain_of_valid_groups_stops_or_when_asked() {
        let bytes = segment_bytes(30);
        let whole = groups_scanned(&bytes);
        // A byte flipped in the 12th group: the groups before it, none after.
        let mut damaged = bytes.clone();
        damaged[whole[11].0 as usize + GROUP_HEADER_LEN + 3] ^= 0x40;
        let disk = disk_with(&damaged);
        for window in [64, 4096, 1 << 20] {
            assert_eq!(groups_read(&disk, window), whole[..11].to_vec());
        }
        // Cut inside the 20th group: the 19 before it.
        let disk = disk_with(&bytes[..whole[19].0 as usize + 50]);
        assert_eq!(groups_read(&disk, 256), whole[..19].to_vec());
        // `each` says enough.
        let mut seen = 0;
        for_each_group_by(&disk_with(&bytes), 3, 256, |_, _| {
            seen += 1;
            Ok(seen < 4)
        })
        .unwrap();
        assert_eq!(seen, 4);
        // Another segment's file, or one never written: no groups.
        let mut other = bytes.clone();
        other[8] = 4;
        assert!(groups_read(&disk_with(&other), 256).is_empty());
        assert!(groups_read(&disk_with(&[0; 4096]), 256).is_empty());
    }
}
