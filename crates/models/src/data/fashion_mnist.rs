//! Fashion-MNIST: 28x28 grayscale images of clothing in 10 classes.
//!
//! The loader reads a directory holding the four standard IDX files, each either
//! plain or gzip-compressed (`name` or `name.gz`):
//! `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`.
//!
//! On Debian/Ubuntu the full dataset is packaged as `dataset-fashion-mnist`,
//! installed under [`DEFAULT_DIR`]. A small subset is committed to this
//! repository under `data/fashion-mnist-subset/` (see [`SUBSET_DIR`]).

use std::path::{Path, PathBuf};

use super::idx::{self, IdxError, LabeledImages};
use super::image::ImageDataset;

/// Where the Debian package `dataset-fashion-mnist` installs the dataset.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The subset committed to this repository (2,000 train and 500 test images),
/// as an absolute path resolved at compile time.
pub const SUBSET_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../data/fashion-mnist-subset"
);

/// Image height and width.
pub const IMAGE_SIZE: usize = 28;

/// Number of classes.
pub const NUM_CLASSES: usize = 10;

/// Human-readable class names, indexed by label.
pub const CLASS_NAMES: [&str; NUM_CLASSES] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Mean pixel intensity of the Fashion-MNIST training set, on the 0..1 scale.
pub const PIXEL_MEAN: f32 = 0.2860;

/// Standard deviation of the Fashion-MNIST training-set pixels, on the 0..1 scale.
pub const PIXEL_STD: f32 = 0.3530;

/// File stem of the training images.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// File stem of the training labels.
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// File stem of the test images.
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// File stem of the test labels.
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// Which half of the dataset to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The training set (60,000 images in the full dataset).
    Train,
    /// The test set (10,000 images in the full dataset).
    Test,
}

impl Split {
    /// The file stems (images, labels) of this split.
    pub fn file_stems(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => (TRAIN_IMAGES, TRAIN_LABELS),
            Split::Test => (TEST_IMAGES, TEST_LABELS),
        }
    }
}

/// The hint given when a Fashion-MNIST file cannot be found.
pub fn missing_hint() -> String {
    format!(
        "install the dataset with `apt-get install dataset-fashion-mnist` (it goes to {DEFAULT_DIR}) \
         or pass --data DIR naming a directory that holds {TRAIN_IMAGES}, {TRAIN_LABELS}, \
         {TEST_IMAGES} and {TEST_LABELS} (each may end in .gz)"
    )
}

/// Finds `stem` or `stem.gz` in `dir`, preferring the uncompressed file.
pub fn resolve_file(dir: &Path, stem: &str) -> Result<PathBuf, IdxError> {
    let plain = dir.join(stem);
    if plain.is_file() {
        return Ok(plain);
    }
    let gz = dir.join(format!("{stem}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(IdxError::Missing {
        path: gz,
        hint: missing_hint(),
    })
}

/// Reads one split of Fashion-MNIST from `dir` as raw bytes, checking it.
pub fn load_raw(dir: impl AsRef<Path>, split: Split) -> Result<LabeledImages, IdxError> {
    let dir = dir.as_ref();
    let (images, labels) = split.file_stems();
    let images = resolve_file(dir, images)?;
    let labels = resolve_file(dir, labels)?;
    idx::read_labeled_images(images, labels, (IMAGE_SIZE, IMAGE_SIZE), NUM_CLASSES)
}

/// Reads one split of Fashion-MNIST from `dir` as a Burn dataset, normalised
/// with [`PIXEL_MEAN`] and [`PIXEL_STD`].
pub fn load(dir: impl AsRef<Path>, split: Split) -> Result<ImageDataset, IdxError> {
    Ok(ImageDataset::from_labeled(
        load_raw(dir, split)?,
        PIXEL_MEAN,
        PIXEL_STD,
    ))
}

/// Both splits of Fashion-MNIST.
#[derive(Debug, Clone)]
pub struct FashionMnist {
    /// The training set.
    pub train: ImageDataset,
    /// The test set.
    pub test: ImageDataset,
}

impl FashionMnist {
    /// Loads both splits from `dir`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, IdxError> {
        let dir = dir.as_ref();
        Ok(Self {
            train: load(dir, Split::Train)?,
            test: load(dir, Split::Test)?,
        })
    }

    /// Loads both splits from [`DEFAULT_DIR`].
    pub fn load_default() -> Result<Self, IdxError> {
        Self::load(DEFAULT_DIR)
    }

    /// Loads both splits from the subset committed to this repository.
    pub fn load_subset() -> Result<Self, IdxError> {
        Self::load(SUBSET_DIR)
    }
}
