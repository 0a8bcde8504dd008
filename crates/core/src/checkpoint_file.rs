//! The single-file checkpoint format: named sections and a CRC, written
//! atomically.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! b"BURNFIT1"                      magic and format version
//! u32                              number of sections
//! per section: u32 name length, name (UTF-8), u64 data length, data
//! u32                              CRC-32C of every byte before it
//! ```
//!
//! A truncated or damaged file fails the CRC and is reported as corrupt, so a
//! loader can fall back to an older file.

use std::path::Path;

use crate::atomic::write_atomic_with;
use crate::error::{CallbackError, Result};

const MAGIC: &[u8; 8] = b"BURNFIT1";

/// The sections of a checkpoint, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointFile {
    /// `(name, bytes)` pairs.
    pub sections: Vec<(String, Vec<u8>)>,
}

impl CheckpointFile {
    /// Adds a section.
    pub fn push(&mut self, name: impl Into<String>, data: Vec<u8>) {
        self.sections.push((name.into(), data));
    }

    /// The data of section `name`.
    pub fn section(&self, name: &str) -> Option<&[u8]> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.as_slice())
    }

    /// Serialises to bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            16 + self
                .sections
                .iter()
                .map(|(n, d)| 12 + n.len() + d.len())
                .sum::<usize>(),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.sections.len() as u32).to_le_bytes());
        for (name, data) in &self.sections {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(data.len() as u64).to_le_bytes());
            out.extend_from_slice(data);
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses bytes, checking the magic and the CRC.
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Self, String> {
        if bytes.len() < MAGIC.len() + 8 || &bytes[..8] != MAGIC {
            return Err("not a burnfit checkpoint (bad magic or too short)".into());
        }
        let body = &bytes[..bytes.len() - 4];
        let stored = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap());
        if crc32c::crc32c(body) != stored {
            return Err("checksum mismatch: the file is truncated or corrupt".into());
        }
        let mut pos = 8;
        let take = |pos: &mut usize, n: usize| -> std::result::Result<&[u8], String> {
            let slice = body
                .get(*pos..*pos + n)
                .ok_or_else(|| "truncated section table".to_string())?;
            *pos += n;
            Ok(slice)
        };
        let count = u32::from_le_bytes(take(&mut pos, 4)?.try_into().unwrap());
        let mut file = CheckpointFile::default();
        for _ in 0..count {
            let name_len = u32::from_le_bytes(take(&mut pos, 4)?.try_into().unwrap()) as usize;
            let name = String::from_utf8(take(&mut pos, name_len)?.to_vec())
                .map_err(|_| "section name is not UTF-8".to_string())?;
            let len = u64::from_le_bytes(take(&mut pos, 8)?.try_into().unwrap()) as usize;
            let data = take(&mut pos, len)?.to_vec();
            file.sections.push((name, data));
        }
        Ok(file)
    }

    /// Writes atomically to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes();
        write_atomic_with(path, |f| std::io::Write::write_all(f, &bytes))
    }

    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| CallbackError::io(path, e))?;
        Self::from_bytes(&bytes).map_err(|message| {
            CallbackError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, message),
            )
        })
    }
}

/// The trailer that ends a weights file (`.bpk`): this magic, the length of
/// the content before it (`u64`) and the content's CRC-32C (`u32`), little
/// endian. Burn's burnpack reader ignores bytes after the tensors, so such
/// a file still loads with `ModuleRecord::load`; [`verify_trailer`] tells a
/// whole file from a truncated or damaged one.
pub const TRAILER_MAGIC: &[u8; 8] = b"BFSUM001";
const TRAILER_LEN: usize = 8 + 8 + 4;

/// `content` with a checksum trailer (see [`TRAILER_MAGIC`]).
pub fn with_trailer(mut content: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&content);
    let len = content.len() as u64;
    content.extend_from_slice(TRAILER_MAGIC);
    content.extend_from_slice(&len.to_le_bytes());
    content.extend_from_slice(&crc.to_le_bytes());
    content
}

/// Checks the trailer of a file written with [`with_trailer`]:
/// `Ok(true)` whole, `Ok(false)` no trailer (a file from elsewhere, which
/// cannot be checked), `Err` truncated or damaged.
pub fn verify_trailer(bytes: &[u8]) -> std::result::Result<bool, String> {
    if bytes.len() < TRAILER_LEN {
        return Ok(false);
    }
    let (content, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
    if &trailer[..8] != TRAILER_MAGIC {
        return Ok(false);
    }
    let len = u64::from_le_bytes(trailer[8..16].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(trailer[16..20].try_into().expect("4 bytes"));
    if len != content.len() as u64 || crc32c::crc32c(content) != crc {
        return Err("checksum mismatch: the file is truncated or damaged".into());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailer_tells_whole_files_from_damaged_ones() {
        let file = with_trailer(b"tensors".to_vec());
        assert_eq!(verify_trailer(&file), Ok(true));
        assert_eq!(verify_trailer(b"no trailer here, just bytes"), Ok(false));
        let mut damaged = file.clone();
        damaged[2] ^= 1;
        assert!(verify_trailer(&damaged).is_err());
        // Cut short, the trailer is gone: not a whole file either (its
        // length field no longer matches what a reader would find).
        let mut longer = with_trailer(vec![7; 100]);
        longer.truncate(60);
        assert_eq!(verify_trailer(&longer), Ok(false));
    }

    #[test]
    fn round_trip_and_corruption() {
        let mut file = CheckpointFile::default();
        file.push("model", vec![1, 2, 3]);
        file.push("state", b"{}".to_vec());
        let bytes = file.to_bytes();
        assert_eq!(CheckpointFile::from_bytes(&bytes).unwrap(), file);
        for cut in [0, 5, bytes.len() - 1] {
            assert!(CheckpointFile::from_bytes(&bytes[..cut]).is_err());
        }
        let mut flipped = bytes.clone();
        flipped[13] ^= 0x40;
        assert!(CheckpointFile::from_bytes(&flipped).is_err());
    }
}
