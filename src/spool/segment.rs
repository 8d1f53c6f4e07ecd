//! The segment file format: a segment header, then group frames. Pure: bytes in, bytes or
//! typed verdicts out. No I/O, no clock, no panics, and no allocation larger than the input
//! on any input (the fuzz target `spool_frames` holds it to that).
//!
//! The layout, the rules that tell a torn tail from corruption, and why, are in the log's
//! module documentation (`mod.rs`); this file is their code.

/// Segment files are named `<index, 20 digits>.seg`; a file being prepared is
/// `<index>.seg.tmp` until it is zero-filled and synced.
pub const SEGMENT_SUFFIX: &str = ".seg";
pub const PREPARING_SUFFIX: &str = ".seg.tmp";

/// The name of segment `index`.
pub fn segment_name(index: u64) -> String {
    format!("{index:020}{SEGMENT_SUFFIX}")
}

/// The index of a segment file's name, if it is one.
pub fn segment_index(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The indexes of the segment files among `names` (a directory's listing), in order.
pub fn indexes(names: &[String]) -> Vec<u64> {
    let mut indexes: Vec<u64> = names.iter().filter_map(|n| segment_index(n)).collect();
    indexes.sort_unstable();
    indexes
}

pub const SEGMENT_MAGIC: [u8; 4] = *b"HFSG";
pub const GROUP_MAGIC: [u8; 4] = *b"HFGR";
pub const FORMAT_VERSION: u8 = 1;
pub const SEGMENT_HEADER_LEN: usize = 40;
pub const GROUP_HEADER_LEN: usize = 40;
/// Groups start at offsets that are multiples of this (the recovery scan for a valid group
/// after a bad one looks only there).
pub const ALIGN: usize = 8;
/// Each record in a payload is preceded by its length (u32, little endian).
pub const RECORD_LEN_BYTES: usize = 4;

/// Segment header flag: the segments before this one may end in bytes that are not to be
/// trusted (a write or sync failed there, or the log was reopened after a crash), and every
/// record they hold at or after `void_from` is void.
pub const FLAG_TAIL_UNTRUSTED: u8 = 1;

/// What a segment says about itself, in its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's place in the log; also in every group it holds, so a group left from
    /// an older use of the file is never read as one of this segment's.
    pub index: u64,
    pub flags: u8,
    /// The log sequence number of the first record this segment holds.
    pub start_lsn: u64,
    /// Records of earlier segments at or after this lsn are void (answered as failed, or
    /// never answered). Equal to `start_lsn` unless groups failed just before.
    pub void_from: u64,
}

impl SegmentHeader {
    pub fn tail_untrusted(&self) -> bool {
        self.flags & FLAG_TAIL_UNTRUSTED != 0
    }
}

/// A group's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupHeader {
    pub segment: u64,
    /// The lsn of the group's first record; the others follow without gaps.
    pub first_lsn: u64,
    pub count: u32,
    pub payload_len: u32,
}

impl GroupHeader {
    /// The lsn after the group's last record.
    pub fn end_lsn(&self) -> u64 {
        self.first_lsn.saturating_add(u64::from(self.count))
    }

    /// Header, payload and padding.
    pub fn frame_len(&self) -> usize {
        frame_len(self.payload_len as usize)
    }
}

/// The bytes a group with `payload_len` bytes of records takes, padding included.
pub fn frame_len(payload_len: usize) -> usize {
    (GROUP_HEADER_LEN + payload_len).div_ceil(ALIGN) * ALIGN
}

/// Why the bytes at an offset are not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadFrame {
    /// Zeros where a header should start.
    Zeros,
    /// Fewer bytes than the header or the payload it announces.
    Short,
    Magic,
    Version,
    /// A reserved or padding byte is not zero.
    Reserved,
    /// The checksum does not match.
    Checksum,
    /// A group of another segment (a file reused, or bytes moved).
    Segment,
    /// The group's first lsn does not follow the previous group's last.
    Chain,
    /// The payload does not split into the announced records.
    Records,
}

impl BadFrame {
    pub fn describe(self) -> &'static str {
        match self {
            BadFrame::Zeros => "zeros where a frame should start",
            BadFrame::Short => "a frame cut short",
            BadFrame::Magic => "no frame magic",
            BadFrame::Version => "an unknown format version",
            BadFrame::Reserved => "a reserved or padding byte is not zero",
            BadFrame::Checksum => "a checksum mismatch",
            BadFrame::Segment => "a group of another segment",
            BadFrame::Chain => "a group whose sequence numbers do not follow the previous group",
            BadFrame::Records => "a payload that does not split into its records",
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The 40 bytes of a segment header.
pub fn encode_segment_header(h: &SegmentHeader) -> [u8; SEGMENT_HEADER_LEN] {
    let mut b = [0u8; SEGMENT_HEADER_LEN];
    b[0..4].copy_from_slice(&SEGMENT_MAGIC);
    b[4] = FORMAT_VERSION;
    b[5] = h.flags;
    b[8..16].copy_from_slice(&h.index.to_le_bytes());
    b[16..24].copy_from_slice(&h.start_lsn.to_le_bytes());
    b[24..32].copy_from_slice(&h.void_from.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..32]);
    b[32..36].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Reads a segment header from the start of `bytes`.
pub fn decode_segment_header(bytes: &[u8]) -> Result<SegmentHeader, BadFrame> {
    let Some(b) = bytes.get(..SEGMENT_HEADER_LEN) else {
        return Err(if bytes.iter().all(|&x| x == 0) {
            BadFrame::Zeros
        } else {
            BadFrame::Short
        });
    };
    if b.iter().all(|&x| x == 0) {
        return Err(BadFrame::Zeros);
    }
    if b[0..4] != SEGMENT_MAGIC {
        return Err(BadFrame::Magic);
    }
    if crc32c::crc32c(&b[0..32]) != u32_at(b, 32) {
        return Err(BadFrame::Checksum);
    }
    if b[4] != FORMAT_VERSION {
        return Err(BadFrame::Version);
    }
    if b[6..8] != [0, 0] || b[36..40] != [0; 4] || b[5] & !FLAG_TAIL_UNTRUSTED != 0 {
        return Err(BadFrame::Reserved);
    }
    Ok(SegmentHeader {
        index: u64_at(b, 8),
        flags: b[5],
        start_lsn: u64_at(b, 16),
        void_from: u64_at(b, 24),
    })
}

/// Appends one record to a group payload being built: its length, then the bytes
/// `encode` appends.
pub fn push_record(payload: &mut Vec<u8>, encode: impl FnOnce(&mut Vec<u8>)) {
    let at = payload.len();
    payload.extend_from_slice(&[0; RECORD_LEN_BYTES]);
    encode(payload);
    let len = (payload.len() - at - RECORD_LEN_BYTES) as u32;
    payload[at..at + RECORD_LEN_BYTES].copy_from_slice(&len.to_le_bytes());
}

/// Makes a group frame in place: `buf[start..]` is [`GROUP_HEADER_LEN`] bytes of room
/// followed by the payload (records pushed with [`push_record`]). Fills the header and
/// appends the padding; `buf[start..]` is then the frame, ready to be written.
pub fn seal_group(buf: &mut Vec<u8>, start: usize, segment: u64, first_lsn: u64, count: u32) {
    let payload_len = (buf.len() - start - GROUP_HEADER_LEN) as u32;
    let h = &mut buf[start..start + GROUP_HEADER_LEN];
    h.fill(0);
    h[0..4].copy_from_slice(&GROUP_MAGIC);
    h[4] = FORMAT_VERSION;
    h[8..16].copy_from_slice(&segment.to_le_bytes());
    h[16..24].copy_from_slice(&first_lsn.to_le_bytes());
    h[24..28].copy_from_slice(&count.to_le_bytes());
    h[28..32].copy_from_slice(&payload_len.to_le_bytes());
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&buf[start..start + 32]),
        &buf[start + GROUP_HEADER_LEN..],
    );
    buf[start + 32..start + 36].copy_from_slice(&crc.to_le_bytes());
    buf.resize(start + frame_len(payload_len as usize), 0);
}

/// A valid group read from a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group<'a> {
    pub header: GroupHeader,
    pub payload: &'a [u8],
}

impl<'a> Group<'a> {
    /// The group's records (their bytes), in lsn order. The decoder has already checked
    /// that the payload splits into exactly `count` of them.
    pub fn records(&self) -> impl Iterator<Item = (u64, &'a [u8])> + 'a {
        let mut rest = self.payload;
        let first = self.header.first_lsn;
        (0..u64::from(self.header.count)).map_while(move |i| {
            let (record, after) = split_record(rest)?;
            rest = after;
            Some((first + i, record))
        })
    }

    /// Where record `i`'s bytes start, counted from the start of the group.
    pub fn record_offsets(&self) -> impl Iterator<Item = usize> + 'a {
        let mut at = 0usize;
        let payload = self.payload;
        (0..self.header.count).map_while(move |_| {
            let (record, _) = split_record(&payload[at..])?;
            let start = GROUP_HEADER_LEN + at + RECORD_LEN_BYTES;
            at += RECORD_LEN_BYTES + record.len();
            Some(start)
        })
    }
}

fn split_record(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32_at(bytes.get(..RECORD_LEN_BYTES)?, 0) as usize;
    let rest = &bytes[RECORD_LEN_BYTES..];
    (len <= rest.len()).then(|| rest.split_at(len))
}

/// Reads the group at the start of `bytes` (the rest of a segment), which must belong to
/// segment `segment`.
pub fn decode_group(bytes: &[u8], segment: u64) -> Result<Group<'_>, BadFrame> {
    let Some(h) = bytes.get(..GROUP_HEADER_LEN) else {
        return Err(if bytes.iter().all(|&x| x == 0) {
            BadFrame::Zeros
        } else {
            BadFrame::Short
        });
    };
    if h.iter().all(|&x| x == 0) {
        return Err(BadFrame::Zeros);
    }
    if h[0..4] != GROUP_MAGIC {
        return Err(BadFrame::Magic);
    }
    let payload_len = u32_at(h, 28) as usize;
    let Some(payload) = bytes.get(GROUP_HEADER_LEN..GROUP_HEADER_LEN.saturating_add(payload_len))
    else {
        return Err(BadFrame::Short);
    };
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[0..32]), payload);
    if crc != u32_at(h, 32) {
        return Err(BadFrame::Checksum);
    }
    if h[4] != FORMAT_VERSION {
        return Err(BadFrame::Version);
    }
    if h[5..8] != [0; 3] || h[36..40] != [0; 4] {
        return Err(BadFrame::Reserved);
    }
    let header = GroupHeader {
        segment: u64_at(h, 8),
        first_lsn: u64_at(h, 16),
        count: u32_at(h, 24),
        payload_len: payload_len as u32,
    };
    if header.segment != segment {
        return Err(BadFrame::Segment);
    }
    // The payload must split into exactly `count` records.
    let mut rest = payload;
    for _ in 0..header.count {
        match split_record(rest) {
            Some((_, after)) => rest = after,
            None => return Err(BadFrame::Records),
        }
    }
    if !rest.is_empty()
        || header
            .first_lsn
            .checked_add(u64::from(header.count))
            .is_none()
    {
        return Err(BadFrame::Records);
    }
    // The padding is not under the checksum: it must be zeros (what of it the input holds),
    // so that no byte of a sealed segment can change unnoticed.
    let padding_end = header.frame_len().min(bytes.len());
    if bytes[GROUP_HEADER_LEN + payload_len..padding_end]
        .iter()
        .any(|&b| b != 0)
    {
        return Err(BadFrame::Reserved);
    }
    Ok(Group { header, payload })
}

/// Where a valid group sits in its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupAt {
    pub offset: u64,
    pub header: GroupHeader,
}

impl GroupAt {
    /// The group itself, in `bytes`: the segment [`scan`] found it in (it checked the
    /// group then; this does not check it again).
    pub fn group<'a>(&self, bytes: &'a [u8]) -> Group<'a> {
        let start = self.offset as usize + GROUP_HEADER_LEN;
        Group {
            header: self.header,
            payload: &bytes[start..start + self.header.payload_len as usize],
        }
    }
}

/// How a segment's valid groups end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanEnd {
    /// Only zeros from `offset` to the end of the file.
    Clean { offset: u64 },
    /// Bytes at `offset` are not the next group, and not all zeros follow.
    Bad {
        offset: u64,
        why: BadFrame,
        /// The offset of a valid group of this segment further on, if there is one: proof
        /// that the bad bytes were written, and synced, before it.
        valid_after: Option<u64>,
    },
}

/// What a segment file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentScan {
    /// Zeros at the start: prepared, never written (or its first write never landed).
    Unused,
    /// Its header is not valid.
    BadHeader(BadFrame),
    Used {
        header: SegmentHeader,
        /// Every valid group, in order, each following the previous one without a gap in
        /// lsns (the first starts at `header.start_lsn`).
        groups: Vec<GroupAt>,
        end: ScanEnd,
    },
}

/// Reads a whole segment (`bytes`, the file's content) whose name says it is `index`.
/// Never panics; allocates one [`GroupAt`] per valid group, at most one per
/// `GROUP_HEADER_LEN` bytes of input.
pub fn scan(bytes: &[u8], index: u64) -> SegmentScan {
    let header = match decode_segment_header(bytes) {
        Ok(h) if h.index == index => h,
        Ok(_) => return SegmentScan::BadHeader(BadFrame::Segment),
        Err(BadFrame::Zeros) => return SegmentScan::Unused,
        Err(why) => return SegmentScan::BadHeader(why),
    };
    let mut groups = Vec::new();
    let mut offset = SEGMENT_HEADER_LEN;
    let mut next_lsn = header.start_lsn;
    let end = loop {
        let rest = &bytes[offset..];
        let why = match decode_group(rest, index) {
            Ok(g) if g.header.first_lsn == next_lsn => {
                groups.push(GroupAt {
                    offset: offset as u64,
                    header: g.header,
                });
                next_lsn = g.header.end_lsn();
                offset += g.header.frame_len();
                if offset >= bytes.len() {
                    break ScanEnd::Clean {
                        offset: offset as u64,
                    };
                }
                continue;
            }
            Ok(_) => BadFrame::Chain,
            Err(why) => why,
        };
        if rest.iter().all(|&b| b == 0) {
            break ScanEnd::Clean {
                offset: offset as u64,
            };
        }
        break ScanEnd::Bad {
            offset: offset as u64,
            why,
            valid_after: find_valid_group(bytes, offset + ALIGN, index),
        };
    };
    SegmentScan::Used {
        header,
        groups,
        end,
    }
}

/// How many valid groups of segment `index` lie anywhere in `bytes` (at aligned offsets),
/// counting up to `limit`. For a segment whose header is gone: more than one valid group
/// means more than one write reached it, so it was acknowledged.
pub fn valid_groups(bytes: &[u8], index: u64, limit: usize) -> usize {
    let mut found = 0;
    let mut from = 0;
    while found < limit {
        match find_valid_group(bytes, from, index) {
            Some(at) => {
                found += 1;
                from = at as usize + ALIGN;
            }
            None => break,
        }
    }
    found
}

/// The first offset at or after `from` (aligned) holding a valid group of segment `index`:
/// where a scan picks up again after bytes that are not a group (recovery's check that
/// nothing valid follows a torn tail, repair's resynchronisation).
pub fn find_valid_group(bytes: &[u8], from: usize, index: u64) -> Option<u64> {
    let mut at = from.div_ceil(ALIGN) * ALIGN;
    while at + GROUP_HEADER_LEN <= bytes.len() {
        if bytes[at..at + 4] == GROUP_MAGIC && decode_group(&bytes[at..], index).is_ok() {
            return Some(at as u64);
        }
        at += ALIGN;
    }
    None
}

/// A sealed group frame of `records`, for tests that build segments by hand.
#[cfg(test)]
pub(crate) fn test_group(segment: u64, first_lsn: u64, records: &[&[u8]]) -> Vec<u8> {
    let mut frame = vec![0; GROUP_HEADER_LEN];
    for r in records {
        push_record(&mut frame, |out| out.extend_from_slice(r));
    }
    seal_group(&mut frame, 0, segment, first_lsn, records.len() as u32);
    frame
}

#[cfg(test)]
mod tests {
    use super::test_group as group;
    use super::*;

    /// A segment of `len` bytes: header, the groups, zeros.
    fn segment(index: u64, start_lsn: u64, groups: &[Vec<u8>], len: usize) -> Vec<u8> {
        let mut bytes = encode_segment_header(&SegmentHeader {
            index,
            flags: 0,
            start_lsn,
            void_from: start_lsn,
        })
        .to_vec();
        for g in groups {
            bytes.extend_from_slice(g);
        }
        bytes.resize(len, 0);
        bytes
    }

    #[test]
    fn a_group_round_trips_and_its_records_come_back_with_their_lsns() {
        let frame = group(3, 10, &[b"a", b"", b"ccc"]);
        assert_eq!(frame.len() % ALIGN, 0);
        let g = decode_group(&frame, 3).unwrap();
        assert_eq!(g.header.count, 3);
        assert_eq!(g.header.end_lsn(), 13);
        let records: Vec<_> = g.records().collect();
        assert_eq!(
            records,
            vec![(10, &b"a"[..]), (11, &b""[..]), (12, &b"ccc"[..])]
        );
        let offsets: Vec<_> = g.record_offsets().collect();
        assert_eq!(offsets, vec![44, 49, 53]);
        assert_eq!(&frame[53..56], b"ccc");
    }

    #[test]
    fn every_single_bit_flip_in_a_group_is_detected() {
        let frame = group(1, 1, &[b"hello", b"world"]);
        let payload_end = GROUP_HEADER_LEN + 2 * (RECORD_LEN_BYTES + 5);
        for byte in 0..payload_end {
            for bit in 0..8 {
                let mut bad = frame.clone();
                bad[byte] ^= 1 << bit;
                assert!(decode_group(&bad, 1).is_err(), "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn a_group_of_another_segment_is_not_taken_for_this_ones() {
        let frame = group(1, 1, &[b"x"]);
        assert_eq!(decode_group(&frame, 2), Err(BadFrame::Segment));
    }

    #[test]
    fn segment_headers_round_trip_and_a_zeroed_one_means_unused() {
        let h = SegmentHeader {
            index: 7,
            flags: FLAG_TAIL_UNTRUSTED,
            start_lsn: 100,
            void_from: 90,
        };
        assert_eq!(decode_segment_header(&encode_segment_header(&h)), Ok(h));
        assert_eq!(scan(&[0; 4096], 7), SegmentScan::Unused);
        let mut bad = encode_segment_header(&h);
        bad[20] ^= 1;
        assert_eq!(decode_segment_header(&bad), Err(BadFrame::Checksum));
        assert_eq!(
            scan(&encode_segment_header(&h), 8),
            SegmentScan::BadHeader(BadFrame::Segment)
        );
    }

    #[test]
    fn a_scan_finds_every_group_and_a_clean_end_in_zeros() {
        let bytes = segment(
            1,
            5,
            &[group(1, 5, &[b"a"]), group(1, 6, &[b"b", b"c"])],
            1024,
        );
        let SegmentScan::Used { groups, end, .. } = scan(&bytes, 1) else {
            panic!("used")
        };
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[1].header.end_lsn(), 8);
        assert!(matches!(end, ScanEnd::Clean { .. }));
    }

    #[test]
    fn a_torn_last_group_is_bad_with_nothing_valid_after_it() {
        let last = group(1, 6, &[b"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"]);
        let mut bytes = segment(1, 5, &[group(1, 5, &[b"a"]), last.clone()], 1024);
        let at = SEGMENT_HEADER_LEN + group(1, 5, &[b"a"]).len();
        // Keep only a prefix of the last group.
        bytes[at + 50..at + last.len()].fill(0);
        let SegmentScan::Used { groups, end, .. } = scan(&bytes, 1) else {
            panic!("used")
        };
        assert_eq!(groups.len(), 1);
        assert_eq!(
            end,
            ScanEnd::Bad {
                offset: at as u64,
                why: BadFrame::Checksum,
                valid_after: None
            }
        );
    }

    #[test]
    fn a_bad_group_followed_by_a_valid_one_names_the_proof() {
        let first = group(1, 5, &[b"aaaa"]);
        let mut bytes = segment(1, 5, &[first.clone(), group(1, 6, &[b"b"])], 1024);
        bytes[SEGMENT_HEADER_LEN + GROUP_HEADER_LEN + 5] ^= 0x40;
        let SegmentScan::Used { groups, end, .. } = scan(&bytes, 1) else {
            panic!("used")
        };
        assert!(groups.is_empty());
        assert_eq!(
            end,
            ScanEnd::Bad {
                offset: SEGMENT_HEADER_LEN as u64,
                why: BadFrame::Checksum,
                valid_after: Some((SEGMENT_HEADER_LEN + first.len()) as u64)
            }
        );
    }

    #[test]
    fn a_valid_group_out_of_sequence_ends_the_chain() {
        let bytes = segment(1, 5, &[group(1, 5, &[b"a"]), group(1, 9, &[b"b"])], 1024);
        let SegmentScan::Used { groups, end, .. } = scan(&bytes, 1) else {
            panic!("used")
        };
        assert_eq!(groups.len(), 1);
        assert!(matches!(
            end,
            ScanEnd::Bad {
                why: BadFrame::Chain,
                ..
            }
        ));
    }

    #[test]
    fn segment_names_sort_by_index_and_other_files_are_not_segments() {
        assert_eq!(segment_name(42), "00000000000000000042.seg");
        assert_eq!(segment_index(&segment_name(42)), Some(42));
        assert_eq!(segment_index("00000000000000000042.seg.tmp"), None);
        assert_eq!(segment_index("42.seg"), None);
        assert_eq!(segment_index("spool.redb"), None);
        let names = [
            segment_name(9),
            "LOCK".into(),
            segment_name(3),
            "x.seg.tmp".into(),
        ];
        assert_eq!(indexes(&names), [3, 9]);
    }

    #[test]
    fn the_decoders_survive_any_bytes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..2000 {
            let len = rng.random_range(0..200);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if len >= 4 && rng.random_bool(0.5) {
                bytes[0..4].copy_from_slice(&GROUP_MAGIC);
            }
            let _ = decode_group(&bytes, 1);
            let _ = decode_segment_header(&bytes);
            let _ = scan(&bytes, 1);
        }
    }
}
