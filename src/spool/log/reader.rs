//! Reading records back by their [`Location`]: the dedup check confirms a fingerprint hit
//! against the id stored in the event's record; delivery (a later step) reads bodies the
//! same way. Readers only read: they never block the writer.

use super::segment;
use super::state::Location;
use super::storage::Storage;
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
