//! [`BlockFile`]: an open Parquet file that many threads read at once.
//!
//! parquet's own `ChunkReader for File` clones the descriptor and seeks, and
//! clones share one file offset, so two concurrent lookups in one block
//! could read each other's bytes. Positional reads (`pread`) have no shared
//! offset. Keeping the file open also lets reads already under way finish
//! after retention deletes the block.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};

/// A shared, read-only file read with positional reads.
#[derive(Debug, Clone)]
pub(crate) struct BlockFile {
    file: Arc<File>,
    len: u64,
}

impl BlockFile {
    pub(crate) fn open(path: &Path) -> io::Result<BlockFile> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(BlockFile {
            file: Arc::new(file),
            len,
        })
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_at(&*self.file, buf, offset)
        }
        #[cfg(windows)]
        {
            std::os::windows::fs::FileExt::seek_read(&*self.file, buf, offset)
        }
    }
}

impl Length for BlockFile {
    fn len(&self) -> u64 {
        self.len
    }
}

/// A reader from some offset onwards.
pub(crate) struct BlockFileReader {
    file: BlockFile,
    pos: u64,
}

impl Read for BlockFileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl ChunkReader for BlockFile {
    type T = BlockFileReader;

    fn get_read(&self, start: u64) -> Result<Self::T, ParquetError> {
        Ok(BlockFileReader {
            file: self.clone(),
            pos: start,
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes, ParquetError> {
        let end = start.checked_add(length as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(ParquetError::EOF(format!(
                "wanted {length} bytes at offset {start}, file has {}",
                self.len
            )));
        }
        let mut buf = vec![0u8; length];
        let mut done = 0;
        while done < length {
            match self.read_at(&mut buf[done..], start + done as u64) {
                Ok(0) => {
                    return Err(ParquetError::EOF(format!(
                        "file ended at {} while reading {length} bytes at {start}",
                        start + done as u64
                    )))
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Bytes::from(buf))
    }
}
