//! Reader for the IDX file format used by MNIST and Fashion-MNIST.
//!
//! An IDX file starts with a 4-byte magic number: two zero bytes, a type code
//! (`0x08` = unsigned byte) and the number of dimensions. Then come the
//! dimension sizes as big-endian `u32`s, then the data in row-major order.
//!
//! Image files have magic `0x00000803` (3 dimensions: count, rows, columns) and
//! label files `0x00000801` (1 dimension: count). Files may be stored plain or
//! gzip-compressed; compression is recognised from the `.gz` extension or from
//! the gzip magic bytes, whichever applies.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

/// Magic number of an IDX file holding unsigned-byte images (3 dimensions).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file holding unsigned-byte labels (1 dimension).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The two leading bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Errors raised while reading IDX files. Every variant names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    /// The file does not exist.
    #[error("{path}: file not found; {hint}", path = .path.display())]
    Missing {
        /// The path that was looked for.
        path: PathBuf,
        /// What to do about it.
        hint: String,
    },
    /// The file exists but could not be read.
    #[error("{path}: cannot read: {source}", path = .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file is meant to be gzip-compressed but does not decompress.
    #[error("{path}: corrupt or truncated gzip data: {source}", path = .path.display())]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The decompressor's error.
        #[source]
        source: io::Error,
    },
    /// The magic number is not the one expected for this kind of file.
    #[error(
        "{path}: wrong magic number 0x{found:08x}, expected 0x{expected:08x} ({kind} file); \
         is this really an IDX {kind} file?",
        path = .path.display()
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic number read from the file.
        found: u32,
        /// The magic number expected.
        expected: u32,
        /// What kind of file was expected.
        kind: IdxKind,
    },
    /// The file is shorter than its header says.
    #[error(
        "{path}: truncated: header and data need {expected} bytes, the (decompressed) file has {found}",
        path = .path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes needed according to the header.
        expected: usize,
        /// Bytes actually present.
        found: usize,
    },
    /// The file is longer than its header says.
    #[error(
        "{path}: {extra} unexpected trailing bytes after the data the header describes",
        path = .path.display()
    )]
    TrailingData {
        /// The file.
        path: PathBuf,
        /// Number of bytes beyond the expected end.
        extra: usize,
    },
    /// An image file and its label file disagree on the number of items.
    #[error(
        "count mismatch: {images} holds {image_count} images but {labels} holds {label_count} labels",
        images = .images.display(),
        labels = .labels.display()
    )]
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// Number of images.
        image_count: usize,
        /// The label file.
        labels: PathBuf,
        /// Number of labels.
        label_count: usize,
    },
    /// The images are not of the expected size.
    #[error(
        "{path}: images are {rows}x{cols}, expected {expected_rows}x{expected_cols}",
        path = .path.display()
    )]
    BadImageSize {
        /// The file.
        path: PathBuf,
        /// Rows found.
        rows: usize,
        /// Columns found.
        cols: usize,
        /// Rows expected.
        expected_rows: usize,
        /// Columns expected.
        expected_cols: usize,
    },
    /// A label is outside the range of known classes.
    #[error(
        "{path}: label {label} at index {index} is out of range (expected 0..{num_classes})",
        path = .path.display()
    )]
    BadLabel {
        /// The label file.
        path: PathBuf,
        /// Index of the offending label.
        index: usize,
        /// The label value.
        label: u8,
        /// Number of classes.
        num_classes: usize,
    },
}

/// What an IDX file is expected to contain; used in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdxKind {
    /// A 3-dimensional unsigned-byte image file (`0x00000803`).
    Images,
    /// A 1-dimensional unsigned-byte label file (`0x00000801`).
    Labels,
}

impl IdxKind {
    /// The magic number of this kind of file.
    pub fn magic(self) -> u32 {
        match self {
            IdxKind::Images => IMAGES_MAGIC,
            IdxKind::Labels => LABELS_MAGIC,
        }
    }
}

impl fmt::Display for IdxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdxKind::Images => "images",
            IdxKind::Labels => "labels",
        })
    }
}

/// Images read from an IDX image file: `count` images of `rows x cols` bytes, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// Raw pixel bytes, `count * rows * cols` of them, image after image.
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// Number of pixels in one image.
    pub fn image_len(&self) -> usize {
        self.rows * self.cols
    }

    /// The pixels of image `index`.
    ///
    /// # Panics
    ///
    /// Panics if `index >= self.count`.
    pub fn image(&self, index: usize) -> &[u8] {
        let len = self.image_len();
        &self.pixels[index * len..(index + 1) * len]
    }

    /// Serialises these images back to IDX bytes (uncompressed).
    pub fn to_idx_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.pixels.len());
        out.extend_from_slice(&IMAGES_MAGIC.to_be_bytes());
        for dim in [self.count, self.rows, self.cols] {
            out.extend_from_slice(&dim_to_u32(dim).to_be_bytes());
        }
        out.extend_from_slice(&self.pixels);
        out
    }
}

/// Serialises labels to IDX bytes (uncompressed).
pub fn labels_to_idx_bytes(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    out.extend_from_slice(&dim_to_u32(labels.len()).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

fn dim_to_u32(dim: usize) -> u32 {
    u32::try_from(dim).expect("IDX dimensions must fit in a u32")
}

/// Reads a whole file, decompressing it if it is gzip data (by extension or magic bytes).
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, IdxError> {
    let raw = std::fs::read(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            IdxError::Missing {
                path: path.to_path_buf(),
                hint: "check the path".to_string(),
            }
        } else {
            IdxError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let gz_name = path.extension().is_some_and(|ext| ext == "gz");
    if !gz_name && !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    GzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|source| IdxError::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(out)
}

/// Parses an IDX header of the given kind and checks the data length.
///
/// Returns the dimensions and the offset where the data begins.
fn parse_header(path: &Path, bytes: &[u8], kind: IdxKind) -> Result<(Vec<usize>, usize), IdxError> {
    let truncated = |expected: usize| IdxError::Truncated {
        path: path.to_path_buf(),
        expected,
        found: bytes.len(),
    };
    if bytes.len() < 4 {
        return Err(truncated(4));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if magic != kind.magic() {
        return Err(IdxError::BadMagic {
            path: path.to_path_buf(),
            found: magic,
            expected: kind.magic(),
            kind,
        });
    }
    let ndims = usize::from(bytes[3]);
    let header_len = 4 + 4 * ndims;
    if bytes.len() < header_len {
        return Err(truncated(header_len));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let data_len = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .unwrap_or(usize::MAX);
    let expected = header_len.saturating_add(data_len);
    match bytes.len().cmp(&expected) {
        std::cmp::Ordering::Less => Err(truncated(expected)),
        std::cmp::Ordering::Greater => Err(IdxError::TrailingData {
            path: path.to_path_buf(),
            extra: bytes.len() - expected,
        }),
        std::cmp::Ordering::Equal => Ok((dims, header_len)),
    }
}

/// Parses IDX image bytes (already decompressed); `path` is only used in errors.
pub fn parse_images(path: &Path, bytes: &[u8]) -> Result<IdxImages, IdxError> {
    let (dims, offset) = parse_header(path, bytes, IdxKind::Images)?;
    Ok(IdxImages {
        count: dims[0],
        rows: dims[1],
        cols: dims[2],
        pixels: bytes[offset..].to_vec(),
    })
}

/// Parses IDX label bytes (already decompressed); `path` is only used in errors.
pub fn parse_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, IdxError> {
    let (_, offset) = parse_header(path, bytes, IdxKind::Labels)?;
    Ok(bytes[offset..].to_vec())
}

/// Reads an IDX image file (plain or gzip).
pub fn read_images(path: impl AsRef<Path>) -> Result<IdxImages, IdxError> {
    let path = path.as_ref();
    parse_images(path, &read_maybe_gz(path)?)
}

/// Reads an IDX label file (plain or gzip).
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<u8>, IdxError> {
    let path = path.as_ref();
    parse_labels(path, &read_maybe_gz(path)?)
}

/// A matched pair of image and label files, checked for consistency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabeledImages {
    /// The images.
    pub images: IdxImages,
    /// One label per image.
    pub labels: Vec<u8>,
}

impl LabeledImages {
    /// Number of labelled images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Reads an image file and its label file and checks that the counts agree,
/// that the images are `rows x cols` and that every label is below `num_classes`.
pub fn read_labeled_images(
    images_path: impl AsRef<Path>,
    labels_path: impl AsRef<Path>,
    (rows, cols): (usize, usize),
    num_classes: usize,
) -> Result<LabeledImages, IdxError> {
    let images_path = images_path.as_ref();
    let labels_path = labels_path.as_ref();
    let images = read_images(images_path)?;
    let labels = read_labels(labels_path)?;
    if images.count != labels.len() {
        return Err(IdxError::CountMismatch {
            images: images_path.to_path_buf(),
            image_count: images.count,
            labels: labels_path.to_path_buf(),
            label_count: labels.len(),
        });
    }
    if images.rows != rows || images.cols != cols {
        return Err(IdxError::BadImageSize {
            path: images_path.to_path_buf(),
            rows: images.rows,
            cols: images.cols,
            expected_rows: rows,
            expected_cols: cols,
        });
    }
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|(_, l)| usize::from(**l) >= num_classes)
    {
        return Err(IdxError::BadLabel {
            path: labels_path.to_path_buf(),
            index,
            label,
            num_classes,
        });
    }
    Ok(LabeledImages { images, labels })
}
