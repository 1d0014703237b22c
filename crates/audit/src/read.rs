//! Reading a bundle record by record, without checking anything but the
//! framing: for tools that show or convert bundles. To verify a bundle use
//! [`crate::verify()`], which reads with the same framing.

use std::io::Read;

use lienthong_proto::v1::bundle_record;
use prost::Message as _;

use crate::framing::{FrameError, Framer};

/// One decoded record and where it was in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Position in the file: 0 for the header.
    pub number: u64,
    /// Byte offset of its length prefix.
    pub offset: u64,
    /// Length of the encoded record, without its prefix.
    pub len: u64,
    /// What it says; `None` for a record with no field set.
    pub record: Option<bundle_record::Record>,
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file cannot be split into records any further.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The bytes of one record are not a `BundleRecord`.
    #[error("record {number} at byte {offset} is not a BundleRecord: {detail}")]
    Decode {
        /// The record.
        number: u64,
        /// Where it starts.
        offset: u64,
        /// The decoder's message.
        detail: String,
    },
}

/// A streaming reader of bundle records. It holds one record at a time, so
/// a bundle of any size reads in constant memory.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let file = std::fs::File::open("01.bundle")?;
/// for record in lienthong_audit::BundleReader::new(file) {
///     let record = record?;
///     println!("{} at byte {}: {:?}", record.number, record.offset, record.record.is_some());
/// }
/// # Ok(()) }
/// ```
pub struct BundleReader<R> {
    framer: Framer<R>,
}

impl<R: Read> BundleReader<R> {
    /// Reads from `inner` (buffered internally).
    pub fn new(inner: R) -> Self {
        Self {
            framer: Framer::new(inner),
        }
    }

    /// The next record, or `None` at the end of the file. A framing error
    /// ends the stream; a record that does not decode does not.
    pub fn next_record(&mut self) -> Result<Option<Record>, ReadError> {
        let Some(raw) = self.framer.next_record()? else {
            return Ok(None);
        };
        let decoded =
            lienthong_proto::v1::BundleRecord::decode(raw.bytes.as_slice()).map_err(|e| {
                ReadError::Decode {
                    number: raw.number,
                    offset: raw.offset,
                    detail: e.to_string(),
                }
            })?;
        Ok(Some(Record {
            number: raw.number,
            offset: raw.offset,
            len: raw.bytes.len() as u64,
            record: decoded.record,
        }))
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.framer.offset()
    }

    /// SHA-256 of every byte before the last record read, and that byte
    /// count. Once the reader is at the end of the file this is what the
    /// bundle's end record must carry.
    pub fn digest_before_last(&self) -> ([u8; 32], u64) {
        self.framer.digest_before_last()
    }
}

impl<R: Read> Iterator for BundleReader<R> {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}
