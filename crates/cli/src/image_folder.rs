//! `[data] kind = "image_folder"`: a folder per class of PNG or JPEG files,
//! decoded up front so that a bad file is one `error:` line before anything
//! is created.
//!
//! Invariants:
//! - Classes are the class folders' names, sorted; a class's index is its
//!   place in that order, in every split and in `predict`.
//! - Files are read in name order, so the items (and the seeded split)
//!   are the same on every machine.
//! - Every image of a set has one shape `[channels, height, width]`:
//!   `image_size` resizes them all, and without it a different size is an
//!   error naming both files.
//! - What `predict` needs to read new images as training read them (classes,
//!   shape, normalisation) is kept in the run directory
//!   ([`FolderInputs::FILE`]).
//!
//! The items are a Burn `Dataset` ([`ImageDataset`]), but not Burn's own
//! `ImageFolderDataset`: that needs burn-dataset's `vision` feature, which
//! adds reqwest, tokio and a second `image` with every codec to the build,
//! and it decodes lazily, so a bad file panics inside `get` in the middle
//! of training.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burnfit_models::data::{ImageDataset, ImageItem, SubsetDataset, train_val_split};
use image::imageops::FilterType;

use crate::config::ImageFolderConfig;
use crate::error::{CliError, CliResult};

/// The file extensions read as images (compared without case).
const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The default fraction held out when `dir` holds the class folders.
const DEFAULT_VALIDATION_SPLIT: f64 = 0.1;

/// How images are decoded: channels, and the size they are resized to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Decode {
    /// One gray channel instead of RGB.
    pub grayscale: bool,
    /// Resize to this square size; `None` keeps each image's size.
    pub image_size: Option<usize>,
}

impl Decode {
    /// Refuses an `image_size` whose `count` resized images alone would
    /// not fit in the memory available now, before any is decoded (the
    /// resize itself would end in an allocation failure, or take minutes).
    /// A lower bound: a set that could fit is never refused.
    fn check_memory(self, count: usize) -> CliResult<()> {
        let (Some(size), Some(available)) = (self.image_size, crate::memory::available()) else {
            return Ok(());
        };
        let per_image = (size as u128).pow(2) * self.channels() as u128;
        let needed = per_image * count.max(1) as u128;
        if needed <= u128::from(available) {
            return Ok(());
        }
        Err(CliError::at_key(
            "data.image_size",
            format!(
                "is {size}: {count} images of {size}x{size} need at least {}, more than the {} \
                 of memory available; choose a smaller data.image_size",
                crate::memory::shown(needed),
                crate::memory::shown(u128::from(available))
            ),
        ))
    }

    fn channels(self) -> usize {
        if self.grayscale { 1 } else { 3 }
    }

    /// Reads `path` as `[channels, height, width]` bytes, channel by
    /// channel. A file it cannot read is an error that ends with `advice`,
    /// what the user should do.
    pub fn read(self, path: &Path, advice: &str) -> CliResult<(Vec<u8>, [usize; 3])> {
        let unreadable = |e: &dyn std::fmt::Display| {
            CliError::usage(format!(
                "{}: cannot read this image ({e}); {advice}",
                path.display()
            ))
        };
        let bytes = std::fs::read(path).map_err(|e| unreadable(&e))?;
        let format = image::guess_format(&bytes).map_err(|e| unreadable(&e))?;
        let mut decoded =
            image::load_from_memory_with_format(&bytes, format).map_err(|e| unreadable(&e))?;
        if let Some(size) = self.image_size {
            let size = u32::try_from(size).unwrap_or(u32::MAX);
            decoded = decoded.resize_exact(size, size, FilterType::Triangle);
        }
        let (width, height) = (decoded.width() as usize, decoded.height() as usize);
        let pixels = if self.grayscale {
            decoded.to_luma8().into_raw()
        } else {
            planar(&decoded.to_rgb8().into_raw(), 3)
        };
        Ok((pixels, [self.channels(), height, width]))
    }
}

/// Interleaved pixels (`RGBRGB…`) as planes (`RR…GG…BB…`).
fn planar(interleaved: &[u8], channels: usize) -> Vec<u8> {
    let pixels = interleaved.len() / channels;
    let mut planes = vec![0u8; interleaved.len()];
    for (i, px) in interleaved.chunks_exact(channels).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            planes[c * pixels + i] = v;
        }
    }
    planes
}

/// What `predict` needs to read new images as training read them.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct FolderInputs {
    /// The class names, in label order.
    pub classes: Vec<String>,
    /// `[channels, height, width]` of the model's input.
    pub shape: [usize; 3],
    /// How images are decoded.
    pub decode: Decode,
    /// The training pixels' mean, as a fraction of 255.
    pub mean: f32,
    /// Their standard deviation, as a fraction of 255.
    pub std: f32,
}

impl FolderInputs {
    /// The file in a run directory.
    pub const FILE: &'static str = "image_folder.json";

    /// The contents of `RUN/image_folder.json`.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("image folder inputs serialise")
    }

    /// Reads `RUN/image_folder.json`.
    pub fn read(run_root: &Path) -> CliResult<Self> {
        let path = run_root.join(Self::FILE);
        let bytes = std::fs::read(&path).map_err(|e| {
            CliError::usage(format!(
                "{}: cannot read ({e}); train the run again to recreate it",
                path.display()
            ))
        })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            CliError::usage(format!(
                "{}: damaged ({e}); train the run again to recreate it",
                path.display()
            ))
        })
    }

    /// An image dataset of `pixels` (labels 0) read with these inputs.
    pub fn dataset(&self, pixels: Vec<u8>, count: usize) -> ImageDataset {
        ImageDataset::with_shape(pixels, vec![0; count], self.shape, self.mean, self.std)
    }
}

/// An image folder, read and split.
pub struct Folder {
    /// Training images.
    pub train: SubsetDataset<ImageDataset, ImageItem>,
    /// Validation images.
    pub valid: SubsetDataset<ImageDataset, ImageItem>,
    /// Test images: `test/`, or the validation images where there is none.
    pub test: SubsetDataset<ImageDataset, ImageItem>,
    /// What `predict` needs.
    pub inputs: FolderInputs,
}

/// Reads the folder of `config` (`dir` replaced by `dir_override`, the
/// `--data` flag), split with `seed`.
///
/// An error names the `[data]` key it is about ([`CliError::at_key`]):
/// `data.validation_split`, `data.image_size` for images of several sizes,
/// else `data.dir` (the folder, its layout, its files); burnfit puts where
/// the key's value came from before it.
pub fn read(
    config: &ImageFolderConfig,
    dir_override: Option<&Path>,
    seed: u64,
) -> CliResult<Folder> {
    read_folder(config, dir_override, seed).map_err(at_data_dir)
}

/// `error` as one about `data.dir`, unless it names a key already (or is
/// not bad input).
fn at_data_dir(error: CliError) -> CliError {
    if error.key().is_some() || error.code() != 2 {
        return error;
    }
    CliError::at_key("data.dir", error.message())
}

/// [`read`], its errors not yet at `data.dir`.
fn read_folder(
    config: &ImageFolderConfig,
    dir_override: Option<&Path>,
    seed: u64,
) -> CliResult<Folder> {
    let dir = dir_override.unwrap_or(&config.dir);
    let decode = Decode {
        grayscale: config.grayscale,
        image_size: config.image_size,
    };
    match layout(dir)? {
        Layout::Classes => {
            let split = config.validation_split.unwrap_or(DEFAULT_VALIDATION_SPLIT);
            let (classes, files) = class_files(dir)?;
            let all = Images::read(&files, decode)?;
            let inputs = all.inputs(classes, decode);
            let order = train_val_split(all.labels.len(), split, seed)
                .map_err(|e| CliError::at_key("data.validation_split", e.to_string()))?;
            let all = Arc::new(all.dataset(&inputs));
            Ok(Folder {
                train: SubsetDataset::new(all.clone(), order.train),
                valid: SubsetDataset::new(all.clone(), order.valid.clone()),
                test: SubsetDataset::new(all, order.valid),
                inputs,
            })
        }
        Layout::Splits { test } => {
            if config.validation_split.is_some() {
                return Err(CliError::at_key(
                    "data.validation_split",
                    format!(
                        "{} has train/ and valid/ folders, which are the split; leave the key out",
                        dir.display()
                    ),
                ));
            }
            let (classes, train_files) = class_files(&dir.join("train"))?;
            let train = Images::read(&train_files, decode)?;
            let inputs = train.inputs(classes, decode);
            let read_split = |name: &str| -> CliResult<ImageDataset> {
                let split_dir = dir.join(name);
                let (names, files) = class_files(&split_dir)?;
                if names != inputs.classes {
                    return Err(CliError::usage(format!(
                        "{}: its class folders ({}) differ from train/'s ({}); give every split \
                         the same class folders",
                        split_dir.display(),
                        names.join(", "),
                        inputs.classes.join(", ")
                    )));
                }
                let images = Images::read(&files, decode)?;
                images.same_shape_as(&train, &split_dir)?;
                Ok(images.dataset(&inputs))
            };
            let valid = Arc::new(read_split("valid")?);
            let test = if test {
                Arc::new(read_split("test")?)
            } else {
                valid.clone()
            };
            let whole = |d: Arc<ImageDataset>| {
                let n = burn::data::dataset::Dataset::len(d.as_ref());
                SubsetDataset::new(d, (0..n).collect())
            };
            Ok(Folder {
                train: whole(Arc::new(train.dataset(&inputs))),
                valid: whole(valid),
                test: whole(test),
                inputs,
            })
        }
    }
}

/// How a folder is laid out.
enum Layout {
    /// `dir/CLASS/*.png`.
    Classes,
    /// `dir/{train,valid}/CLASS/*.png`, and `dir/test/` if `test`.
    Splits { test: bool },
}

fn layout(dir: &Path) -> CliResult<Layout> {
    if !dir.is_dir() {
        return Err(CliError::usage(format!(
            "{}: not a folder; name a folder with a subfolder of images per class",
            dir.display()
        )));
    }
    let (train, valid) = (dir.join("train").is_dir(), dir.join("valid").is_dir());
    match (train, valid) {
        (true, true) => Ok(Layout::Splits {
            test: dir.join("test").is_dir(),
        }),
        (false, false) => Ok(Layout::Classes),
        (true, false) => Err(CliError::usage(format!(
            "{}: has train/ but no valid/; add valid/ with the same class folders, or put the \
             class folders in {} itself",
            dir.display(),
            dir.display()
        ))),
        (false, true) => Err(CliError::usage(format!(
            "{}: has valid/ but no train/; add train/ with the same class folders",
            dir.display()
        ))),
    }
}

/// Image files, each with its label.
type LabeledFiles = Vec<(PathBuf, u8)>;

/// The class names (sorted) and every image file with its label.
fn class_files(dir: &Path) -> CliResult<(Vec<String>, LabeledFiles)> {
    let mut classes = Vec::new();
    for entry in read_dir_sorted(dir)? {
        if entry.is_dir() && !is_hidden(&entry) {
            classes.push(entry);
        }
    }
    match classes.len() {
        0 => {
            return Err(CliError::usage(format!(
                "{}: no class folders; put each class's images in a subfolder named after it",
                dir.display()
            )));
        }
        1 => {
            return Err(CliError::usage(format!(
                "{}: one class folder only ({}); a classifier needs at least 2 classes",
                dir.display(),
                file_name(&classes[0])
            )));
        }
        n if n > 256 => {
            return Err(CliError::usage(format!(
                "{}: {n} class folders; at most 256 classes are supported",
                dir.display()
            )));
        }
        _ => {}
    }
    let mut files = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let before = files.len();
        for path in read_dir_sorted(class)? {
            if path.is_file() && !is_hidden(&path) && is_image(&path) {
                files.push((path, label as u8));
            }
        }
        if files.len() == before {
            return Err(CliError::usage(format!(
                "{}: no PNG or JPEG images in this class folder; add images or remove the folder",
                class.display()
            )));
        }
    }
    Ok((classes.iter().map(|c| file_name(c)).collect(), files))
}

/// Image files of `path` (a file, or a folder read recursively in name
/// order), for `predict`.
pub fn image_files(path: &Path) -> CliResult<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in read_dir_sorted(path)? {
        if is_hidden(&entry) {
            continue;
        }
        if entry.is_dir() {
            files.extend(image_files(&entry)?);
        } else if is_image(&entry) {
            files.push(entry);
        }
    }
    Ok(files)
}

fn read_dir_sorted(dir: &Path) -> CliResult<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        CliError::usage(format!(
            "{}: cannot list ({e}); name a readable folder",
            dir.display()
        ))
    })?;
    let mut paths = entries
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::usage(format!("{}: cannot list ({e})", dir.display())))?;
    paths.sort();
    Ok(paths)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_hidden(path: &Path) -> bool {
    file_name(path).starts_with('.')
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Decoded images of one shape, with their labels.
struct Images {
    pixels: Vec<u8>,
    labels: Vec<u8>,
    shape: [usize; 3],
    /// The first file, named when another has a different size.
    first: PathBuf,
}

impl Images {
    fn read(files: &[(PathBuf, u8)], decode: Decode) -> CliResult<Self> {
        decode.check_memory(files.len())?;
        let mut images = Images {
            pixels: Vec::new(),
            labels: Vec::with_capacity(files.len()),
            shape: [0; 3],
            first: PathBuf::new(),
        };
        for (path, label) in files {
            let (pixels, shape) = decode.read(path, "fix or remove the file")?;
            if images.labels.is_empty() {
                images.shape = shape;
                images.first = path.clone();
            } else if shape != images.shape {
                return Err(CliError::at_key(
                    "data.image_size",
                    mixed_sizes(&images.first, images.shape, path, shape),
                ));
            }
            images.pixels.extend_from_slice(&pixels);
            images.labels.push(*label);
        }
        Ok(images)
    }

    fn same_shape_as(&self, train: &Images, dir: &Path) -> CliResult<()> {
        if self.shape == train.shape {
            Ok(())
        } else {
            Err(CliError::at_key(
                "data.image_size",
                format!(
                    "{}: {}",
                    dir.display(),
                    mixed_sizes(&train.first, train.shape, &self.first, self.shape)
                ),
            ))
        }
    }

    /// The inputs of a model trained on these images: their shape, and
    /// the pixels' mean and standard deviation.
    fn inputs(&self, classes: Vec<String>, decode: Decode) -> FolderInputs {
        let n = self.pixels.len().max(1) as f64;
        let mean = self.pixels.iter().map(|&p| f64::from(p)).sum::<f64>() / n;
        let var = self
            .pixels
            .iter()
            .map(|&p| (f64::from(p) - mean).powi(2))
            .sum::<f64>()
            / n;
        let std = var.sqrt() / 255.0;
        FolderInputs {
            classes,
            shape: self.shape,
            decode,
            mean: (mean / 255.0) as f32,
            // A folder of blank images: no scaling rather than a division by 0.
            std: if std > 1e-6 { std as f32 } else { 1.0 },
        }
    }

    fn dataset(self, inputs: &FolderInputs) -> ImageDataset {
        ImageDataset::with_shape(
            self.pixels,
            self.labels,
            self.shape,
            inputs.mean,
            inputs.std,
        )
    }
}

/// Why two images cannot be in one set, and what to do.
fn mixed_sizes(a: &Path, a_shape: [usize; 3], b: &Path, b_shape: [usize; 3]) -> String {
    format!(
        "{} is {}x{} but {} is {}x{}; set data.image_size to resize every image to one size",
        a.display(),
        a_shape[2],
        a_shape[1],
        b.display(),
        b_shape[2],
        b_shape[1]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planar_puts_each_channel_in_its_own_plane() {
        assert_eq!(planar(&[1, 2, 3, 4, 5, 6], 3), vec![1, 4, 2, 5, 3, 6]);
    }
}
