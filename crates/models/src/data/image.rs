//! Image classification items, dataset and batcher.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::prelude::*;

use super::idx::LabeledImages;

/// One image for classification: normalised `f32` pixels, their shape, and
/// a class label.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageItem {
    /// Normalised pixels, channel by channel, each row-major:
    /// `channels * height * width` of them (784 for a 28x28 grayscale image).
    pub pixels: Vec<f32>,
    /// The class index.
    pub label: usize,
    /// `[channels, height, width]` of `pixels`.
    pub shape: [usize; 3],
}

/// A batch of images ready for a classifier.
#[derive(Debug, Clone)]
pub struct ImageBatch {
    /// Images, shape `[batch, channels, height, width]`. Dense models flatten them.
    pub images: Tensor<4>,
    /// Class indices, shape `[batch]`.
    pub targets: Tensor<1, Int>,
}

/// An in-memory set of 8-bit images with labels (grayscale, or several
/// channels stored channel by channel), normalised on access as
/// `(pixel / 255 - mean) / std`.
///
/// Cloning is cheap: the bytes are shared.
#[derive(Debug, Clone)]
pub struct ImageDataset {
    pixels: Arc<[u8]>,
    labels: Arc<[u8]>,
    channels: usize,
    height: usize,
    width: usize,
    mean: f32,
    std: f32,
}

impl ImageDataset {
    /// Creates a dataset of grayscale images from raw bytes.
    ///
    /// # Panics
    ///
    /// Panics if `pixels.len() != labels.len() * height * width` or `std <= 0`.
    pub fn new(
        pixels: Vec<u8>,
        labels: Vec<u8>,
        height: usize,
        width: usize,
        mean: f32,
        std: f32,
    ) -> Self {
        Self::with_shape(pixels, labels, [1, height, width], mean, std)
    }

    /// Creates a dataset of `[channels, height, width]` images from raw
    /// bytes, each image channel by channel.
    ///
    /// # Panics
    ///
    /// Panics if `pixels.len() != labels.len() * channels * height * width`
    /// or `std <= 0`.
    pub fn with_shape(
        pixels: Vec<u8>,
        labels: Vec<u8>,
        [channels, height, width]: [usize; 3],
        mean: f32,
        std: f32,
    ) -> Self {
        assert_eq!(
            pixels.len(),
            labels.len() * channels * height * width,
            "pixel buffer does not match {} labels of {channels}x{height}x{width} images",
            labels.len()
        );
        assert!(std > 0.0, "normalisation std must be positive, got {std}");
        Self {
            pixels: pixels.into(),
            labels: labels.into(),
            channels,
            height,
            width,
            mean,
            std,
        }
    }

    /// Creates a dataset from images read by [`super::idx::read_labeled_images`].
    pub fn from_labeled(data: LabeledImages, mean: f32, std: f32) -> Self {
        let (h, w) = (data.images.rows, data.images.cols);
        Self::new(data.images.pixels, data.labels, h, w, mean, std)
    }

    /// Channels per image (1 for grayscale).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Image height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Image width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// All labels, in order.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The raw (un-normalised) bytes of image `index`.
    pub fn raw_image(&self, index: usize) -> &[u8] {
        let len = self.channels * self.height * self.width;
        &self.pixels[index * len..(index + 1) * len]
    }

    /// Number of images of each class, for classes `0..num_classes`.
    pub fn class_counts(&self, num_classes: usize) -> Vec<usize> {
        let mut counts = vec![0; num_classes];
        for &label in self.labels.iter() {
            if let Some(c) = counts.get_mut(usize::from(label)) {
                *c += 1;
            }
        }
        counts
    }
}

impl Dataset<ImageItem> for ImageDataset {
    fn get(&self, index: usize) -> Result<ImageItem, DatasetError> {
        assert!(
            index < self.len(),
            "Index out of bounds for dataset: {index} >= {}",
            self.len()
        );
        let scale = 1.0 / (255.0 * self.std);
        let offset = self.mean / self.std;
        let pixels = self
            .raw_image(index)
            .iter()
            .map(|&p| f32::from(p) * scale - offset)
            .collect();
        Ok(ImageItem {
            pixels,
            label: usize::from(self.labels[index]),
            shape: [self.channels, self.height, self.width],
        })
    }

    fn len(&self) -> usize {
        self.labels.len()
    }
}

/// Stacks [`ImageItem`]s into an [`ImageBatch`] on the requested device,
/// in the items' own shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImageBatcher;

impl Batcher<ImageItem, ImageBatch> for ImageBatcher {
    /// # Panics
    ///
    /// Panics if the items differ in shape, or an item's pixels do not
    /// match its shape.
    fn batch(&self, items: Vec<ImageItem>, device: &Device) -> ImageBatch {
        let n = items.len();
        let shape = items.first().map_or([1, 28, 28], |item| item.shape);
        let [channels, height, width] = shape;
        let len = channels * height * width;
        let mut pixels = Vec::with_capacity(n * len);
        let mut targets = Vec::with_capacity(n);
        for item in items {
            assert!(
                item.shape == shape && item.pixels.len() == len,
                "an image of shape {:?} ({} values) in a batch of {shape:?} images",
                item.shape,
                item.pixels.len()
            );
            pixels.extend_from_slice(&item.pixels);
            targets.push(item.label as i64);
        }
        let images = Tensor::<4>::from_data(
            TensorData::new(pixels, [n, channels, height, width]),
            device,
        );
        let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [n]), device);
        ImageBatch { images, targets }
    }
}
