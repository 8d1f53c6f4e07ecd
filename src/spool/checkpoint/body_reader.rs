//! A checkpoint's body read a block at a time ([`BodyReader`]), each block's checksum
//! checked before any of its bytes is decoded.

use super::*;

/// A checkpoint's body, decoded as its blocks are read: one block (its checksum checked) in
/// memory at a time, and a string that spans two blocks gathered on the side. Reads what
/// `Out` writes, as `In` does from a slice.
pub(super) struct BodyReader<F> {
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
    pub(super) fn new(source: F, body_len: usize) -> BodyReader<F> {
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
    pub(super) fn consumed(&self) -> usize {
        if self.block.is_empty() {
            0
        } else {
            self.start + (self.pos - BLOCK_CRC)
        }
    }

    /// Body bytes not decoded yet.
    pub(super) fn left(&self) -> usize {
        self.body_len - self.consumed()
    }

    /// `why`, named at the decoder's offset in the file.
    pub(super) fn bad(&self, why: BadCheckpoint) -> Stop<E> {
        Stop::Bad(file_offset(self.consumed()), why)
    }

    pub(super) fn record_error(&self, why: RecordError) -> Stop<E> {
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

    pub(super) fn u8(&mut self) -> Result<u8, Stop<E>> {
        if self.pos == self.block.len() {
            self.next_block()?;
        }
        let b = self.block[self.pos];
        self.pos += 1;
        Ok(b)
    }

    pub(super) fn uint(&mut self) -> Result<u64, Stop<E>> {
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

    /// The next value of a sequence written as differences (Δ): `previous` plus the next
    /// integer, refused if it overflows.
    pub(super) fn after(&mut self, previous: u64) -> Result<u64, Stop<E>> {
        let delta = self.uint()?;
        previous
            .checked_add(delta)
            .ok_or_else(|| self.record_error(RecordError::Overflow))
    }

    /// Eight bytes, little-endian.
    pub(super) fn u64_le(&mut self) -> Result<u64, Stop<E>> {
        if let Some(b) = self.block.get(self.pos..self.pos + 8) {
            self.pos += 8;
            return Ok(u64_at(b, 0));
        }
        let mut b = [0u8; 8];
        for byte in &mut b {
            *byte = self.u8()?;
        }
        Ok(u64::from_le_bytes(b))
    }

    pub(super) fn u32(&mut self) -> Result<u32, Stop<E>> {
        let v = self.uint()?;
        u32::try_from(v).map_err(|_| self.record_error(RecordError::Overflow))
    }

    pub(super) fn str(&mut self) -> Result<&str, Stop<E>> {
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

    pub(super) fn opt_str(&mut self) -> Result<Option<&str>, Stop<E>> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            _ => Err(self.record_error(RecordError::OptionTag)),
        }
    }
}
