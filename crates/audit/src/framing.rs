//! Splitting a bundle file into records: a protobuf varint length, then that
//! many bytes. Also keeps the SHA-256 of every byte before the newest record,
//! which at the end of the file is the digest the end record signs.

use std::io::{self, BufRead, BufReader, Read};

use sha2::{Digest, Sha256};

use crate::MAX_RECORD_BYTES;

/// One record's bytes and where they were.
#[derive(Debug)]
pub(crate) struct RawRecord {
    /// Position in the file: 0 for the header.
    pub number: u64,
    /// Byte offset of its length prefix.
    pub offset: u64,
    /// The encoded `BundleRecord` (without the length prefix).
    pub bytes: Vec<u8>,
}

/// Why the file cannot be split into records from some point on. None of
/// these can be recovered from: the next record's start is unknown.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Reading failed.
    #[error("reading the bundle failed at byte {offset}: {source}")]
    Io {
        /// Where.
        offset: u64,
        /// The error.
        source: io::Error,
    },
    /// The file ends inside a record.
    #[error(
        "the file ends inside record {record} (which starts at byte {offset}): the bundle is truncated"
    )]
    Truncated {
        /// The record cut short.
        record: u64,
        /// Where it starts.
        offset: u64,
    },
    /// A length prefix that is not a varint or is absurdly large.
    #[error(
        "record {record} at byte {offset} announces {len} bytes, more than the {MAX_RECORD_BYTES}-byte limit: the length prefix is corrupt"
    )]
    TooLarge {
        /// The record.
        record: u64,
        /// Where it starts.
        offset: u64,
        /// The announced length (saturated).
        len: u64,
    },
}

/// Reads records one by one from a byte stream.
pub(crate) struct Framer<R> {
    inner: BufReader<R>,
    offset: u64,
    records: u64,
    hasher: Sha256,
    before_last: Sha256,
    bytes_before_last: u64,
    failed: bool,
}

impl<R: Read> Framer<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner: BufReader::with_capacity(1 << 16, inner),
            offset: 0,
            records: 0,
            hasher: Sha256::new(),
            before_last: Sha256::new(),
            bytes_before_last: 0,
            failed: false,
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Records returned so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// SHA-256 of every byte before the last record returned, and how many
    /// bytes that is: at the end of the file, what the end record covers.
    pub fn digest_before_last(&self) -> ([u8; 32], u64) {
        (
            self.before_last.clone().finalize().into(),
            self.bytes_before_last,
        )
    }

    /// The next record, `None` at a clean end of file. After an error it
    /// returns `None` forever.
    pub fn next_record(&mut self) -> Result<Option<RawRecord>, FrameError> {
        if self.failed {
            return Ok(None);
        }
        let r = self.read_one();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn read_one(&mut self) -> Result<Option<RawRecord>, FrameError> {
        let start = self.offset;
        let number = self.records;
        let mut prefix = [0u8; 10];
        let mut prefix_len = 0usize;
        let mut len: u64 = 0;
        loop {
            let Some(b) = self.byte()? else {
                if prefix_len == 0 {
                    return Ok(None);
                }
                return Err(FrameError::Truncated {
                    record: number,
                    offset: start,
                });
            };
            prefix[prefix_len] = b;
            let shift = 7 * prefix_len as u32;
            prefix_len += 1;
            len |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(u64::MAX);
            if b & 0x80 == 0 {
                break;
            }
            if prefix_len == prefix.len() {
                return Err(FrameError::TooLarge {
                    record: number,
                    offset: start,
                    len: u64::MAX,
                });
            }
        }
        if len > MAX_RECORD_BYTES as u64 {
            return Err(FrameError::TooLarge {
                record: number,
                offset: start,
                len,
            });
        }
        // Bounded by MAX_RECORD_BYTES just above.
        let mut bytes = vec![0u8; len as usize];
        let mut got = 0;
        while got < bytes.len() {
            match self.inner.read(&mut bytes[got..]) {
                Ok(0) => {
                    return Err(FrameError::Truncated {
                        record: number,
                        offset: start,
                    });
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(FrameError::Io {
                        offset: self.offset + got as u64,
                        source,
                    });
                }
            }
        }
        self.before_last = self.hasher.clone();
        self.bytes_before_last = start;
        self.hasher.update(&prefix[..prefix_len]);
        self.hasher.update(&bytes);
        self.offset = start + prefix_len as u64 + len;
        self.records += 1;
        Ok(Some(RawRecord {
            number,
            offset: start,
            bytes,
        }))
    }

    fn byte(&mut self) -> Result<Option<u8>, FrameError> {
        loop {
            match self.inner.fill_buf() {
                Ok([]) => return Ok(None),
                Ok(buf) => {
                    let b = buf[0];
                    self.inner.consume(1);
                    self.offset += 1;
                    return Ok(Some(b));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(FrameError::Io {
                        offset: self.offset,
                        source,
                    });
                }
            }
        }
    }
}
