use super::*;

fn read_all(file: &dyn SegmentFile) -> Vec<u8> {
    let mut buf = vec![0; file.size().unwrap() as usize];
    let n = file.read_at(&mut buf, 0).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn a_crash_keeps_synced_writes_and_only_a_prefix_of_the_last_unsynced_one() {
    for seed in 0..32 {
        let disk = SimDisk::new(seed);
        let f = disk.create("a").unwrap();
        disk.sync_dir().unwrap();
        f.write_at(b"durable", 0).unwrap();
        f.sync_data().unwrap();
        f.write_at(b"lost", 7).unwrap();
        f.write_at(b"torn?", 11).unwrap();
        let after = disk.crash();
        let bytes = read_all(&*after.open("a").unwrap());
        assert!(bytes.starts_with(b"durable"), "seed {seed}");
        // "lost" was not the last write: gone. "torn?" may survive in part, at offset 11.
        let rest = &bytes[7..];
        assert!(
            rest.is_empty() || (rest.len() >= 4 && b"torn?".starts_with(&rest[4..])),
            "seed {seed}: {rest:?}"
        );
        assert!(
            rest.is_empty() || rest[..4] == [0; 4],
            "seed {seed}: {rest:?}"
        );
    }
}

#[test]
fn a_crash_tears_a_write_within_its_bytes_not_within_the_zeros_it_runs_on_with() {
    // The writer runs each group's write on with zeros to its page's end (over zeros): a
    // tear among those would be no tear, so the tear falls among the group's own bytes.
    let mut torn = 0;
    for seed in 0..64 {
        let disk = SimDisk::new(seed);
        let f = disk.create("a").unwrap();
        f.zero_fill(4096).unwrap();
        disk.sync_dir().unwrap();
        let mut write = vec![0u8; 4096];
        write[..10].copy_from_slice(b"0123456789");
        f.write_at(&write, 0).unwrap();
        let bytes = read_all(&*disk.crash().open("a").unwrap());
        let kept = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        assert!(b"0123456789".starts_with(&bytes[..kept]), "seed {seed}");
        assert!(bytes[kept..].iter().all(|&b| b == 0), "seed {seed}");
        torn += usize::from(kept < 10);
    }
    // Uniform over 0..=10: 10 in 11 crashes tear it (over the whole write: 10 in 4097).
    assert!(torn >= 48, "{torn} of 64 crashes tore the group's bytes");
}

#[test]
fn a_file_not_yet_named_durably_is_gone_after_a_crash() {
    let disk = SimDisk::new(1);
    let f = disk.create("new").unwrap();
    f.write_at(b"x", 0).unwrap();
    f.sync_data().unwrap();
    assert!(disk.crash().open("new").is_err());

    let disk = SimDisk::new(1);
    disk.create("tmp").unwrap();
    disk.sync_dir().unwrap();
    disk.rename("tmp", "final").unwrap();
    let after = disk.crash();
    assert!(after.open("tmp").is_ok() && after.open("final").is_err());
}

#[test]
fn a_write_whose_sync_failed_is_never_made_durable_by_a_later_sync() {
    let mut kept = 0;
    for seed in 0..64 {
        let disk = SimDisk::new(seed);
        let f = disk.create("a").unwrap();
        disk.sync_dir().unwrap();
        f.write_at(b"x", 0).unwrap();
        disk.inject(FaultOp::Sync, Fault::Io);
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(5));
        f.sync_data().unwrap();
        kept += read_all(&*disk.crash().open("a").unwrap()).len();
    }
    assert!(
        kept > 0 && kept < 64,
        "kept {kept} of 64: must be a coin toss"
    );
}

#[test]
fn injected_faults_fail_the_next_operation_of_their_kind_once() {
    let disk = SimDisk::new(1);
    let f = disk.create("a").unwrap();
    disk.inject(FaultOp::Write, Fault::NoSpace);
    assert_eq!(f.write_at(b"x", 0).unwrap_err().raw_os_error(), Some(28));
    f.write_at(b"x", 0).unwrap();
    f.sync_data().unwrap();
}

#[test]
fn a_power_cut_at_an_operation_freezes_the_disk_as_it_was_then() {
    let disk = SimDisk::new(1);
    let f = disk.create("a").unwrap();
    disk.sync_dir().unwrap();
    disk.crash_at_op(3);
    f.write_at(b"kept", 0).unwrap();
    f.sync_data().unwrap();
    assert!(
        f.write_at(b"never", 4).is_err(),
        "the third operation meets the cut"
    );
    assert!(f.sync_data().is_err());
    let after = disk.crash();
    assert_eq!(read_all(&*after.open("a").unwrap()), b"kept");
}

#[test]
fn a_crashed_disk_refuses_everything() {
    let disk = SimDisk::new(1);
    let f = disk.create("a").unwrap();
    let _after = disk.crash();
    assert!(f.write_at(b"x", 0).is_err());
    assert!(f.sync_data().is_err());
    assert!(disk.list().is_err());
}

#[test]
fn real_files_are_written_and_read_at_offsets_and_zero_filled() {
    let dir = tempfile::tempdir().unwrap();
    let disk = RealDisk::open(dir.path()).unwrap();
    let f = disk.create("a.tmp").unwrap();
    f.zero_fill(4096).unwrap();
    f.write_at(b"abc", 100).unwrap();
    f.sync_data().unwrap();
    assert_eq!(f.size().unwrap(), 4096);
    let mut buf = [0u8; 5];
    assert_eq!(f.read_at(&mut buf, 99).unwrap(), 5);
    assert_eq!(&buf, b"\0abc\0");
    assert_eq!(f.read_at(&mut buf, 4094).unwrap(), 2);
    disk.rename("a.tmp", "a").unwrap();
    disk.sync_dir().unwrap();
    assert_eq!(disk.list().unwrap(), vec!["a".to_string()]);
    assert!(disk.create("a").is_err(), "create never replaces a file");
    disk.remove("a").unwrap();
    assert!(disk.list().unwrap().is_empty());
}

#[test]
fn a_zero_fill_is_zeros_to_the_byte_and_leaves_the_file_writable_at_any_offset() {
    // From an empty file: direct I/O where the file system takes it (whole pages), the page
    // cache for the rest. From a file's unaligned end: the page cache. Either way the file
    // takes unaligned writes after (its flags restored).
    let dir = tempfile::tempdir().unwrap();
    let disk = RealDisk::open(dir.path()).unwrap();
    let len = (3 << 20) + 4096 + 3;
    for (name, start) in [("empty", &[][..]), ("started", &[7; 5][..])] {
        let f = disk.create(name).unwrap();
        f.write_at(start, 0).unwrap();
        f.zero_fill(len).unwrap();
        assert_eq!(f.size().unwrap(), len);
        let mut all = vec![1u8; len as usize];
        assert_eq!(f.read_at(&mut all, 0).unwrap(), len as usize);
        assert_eq!(
            &all[..start.len()],
            start,
            "the fill starts at the file's end"
        );
        assert!(all[start.len()..].iter().all(|&b| b == 0), "{name}");
        f.write_at(b"abc", 4097).unwrap();
        f.sync_data().unwrap();
        let mut buf = [0u8; 3];
        f.read_at(&mut buf, 4097).unwrap();
        assert_eq!(&buf, b"abc", "{name}");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn the_direct_part_of_a_zero_fill_covers_whole_pages_and_restores_the_file_flags() {
    use rustix::fs::{fcntl_getfl, OFlags};
    let dir = tempfile::tempdir().unwrap();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dir.path().join("b"))
        .unwrap();
    let flags = fcntl_getfl(&file).unwrap();
    let len = (1 << 20) + 100;
    let reached = zero_fill_direct(&file, 0, len).unwrap();
    // 0 where this file system refuses direct I/O; else every whole page, zeros.
    assert!(reached == 0 || reached == 1 << 20, "{reached}");
    let written = std::fs::read(dir.path().join("b")).unwrap();
    assert_eq!(written.len() as u64, reached);
    assert!(written.iter().all(|&b| b == 0));
    assert_eq!(fcntl_getfl(&file).unwrap(), flags);
    assert!(!fcntl_getfl(&file).unwrap().contains(OFlags::DIRECT));
    // An unaligned start is left to the page cache.
    assert_eq!(zero_fill_direct(&file, 100, len).unwrap(), 100);
}
