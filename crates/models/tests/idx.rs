//! The IDX reader and the Fashion-MNIST loader, on the committed subset and on
//! deliberately broken files.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::data::dataset::Dataset;
use burnfit_models::data::fashion_mnist::{
    self, FashionMnist, NUM_CLASSES, SUBSET_DIR, Split, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES,
    TRAIN_LABELS,
};
use burnfit_models::data::idx::{
    self, IMAGES_MAGIC, IdxError, IdxImages, IdxKind, LABELS_MAGIC, labels_to_idx_bytes,
};
use flate2::Compression;
use flate2::write::GzEncoder;

fn subset_file(stem: &str) -> PathBuf {
    Path::new(SUBSET_DIR).join(format!("{stem}.gz"))
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A tiny valid image set: `n` 28x28 images whose pixels are `i % 256`.
fn tiny_images(n: usize) -> IdxImages {
    IdxImages {
        count: n,
        rows: 28,
        cols: 28,
        pixels: (0..n * 784).map(|i| (i % 256) as u8).collect(),
    }
}

#[test]
fn subset_train_split_reads() {
    let images = idx::read_images(subset_file(TRAIN_IMAGES)).unwrap();
    assert_eq!((images.count, images.rows, images.cols), (2000, 28, 28));
    assert_eq!(images.pixels.len(), 2000 * 784);
    let labels = idx::read_labels(subset_file(TRAIN_LABELS)).unwrap();
    assert_eq!(labels.len(), 2000);
    // Every class is present and none is badly under-represented.
    let mut counts = [0usize; NUM_CLASSES];
    for &l in &labels {
        counts[usize::from(l)] += 1;
    }
    assert!(counts.iter().all(|&c| c >= 150), "class counts {counts:?}");
    // Real images: not blank.
    assert!(images.image(0).iter().any(|&p| p > 0));
}

#[test]
fn subset_loads_as_datasets() {
    let data = FashionMnist::load_subset().unwrap();
    assert_eq!(data.train.len(), 2000);
    assert_eq!(data.test.len(), 500);
    assert!(data.test.class_counts(NUM_CLASSES).iter().all(|&c| c >= 30));
    let item = data.train.get(0).unwrap();
    assert_eq!(item.pixels.len(), 784);
    assert!(item.label < NUM_CLASSES);
    assert!(item.pixels.iter().all(|p| p.is_finite()));
    // Normalised: (0 - mean) / std and (1 - mean) / std bound every value.
    let lo = -fashion_mnist::PIXEL_MEAN / fashion_mnist::PIXEL_STD;
    let hi = (1.0 - fashion_mnist::PIXEL_MEAN) / fashion_mnist::PIXEL_STD;
    assert!(
        item.pixels
            .iter()
            .all(|&p| p >= lo - 1e-4 && p <= hi + 1e-4)
    );
    // The subset's mean is near zero after normalisation.
    let n = 200;
    let mean: f32 = (0..n)
        .map(|i| data.train.get(i).unwrap().pixels.iter().sum::<f32>() / 784.0)
        .sum::<f32>()
        / n as f32;
    assert!(mean.abs() < 0.2, "normalised mean {mean}");
}

#[test]
fn plain_and_gz_files_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = idx::read_maybe_gz(&subset_file(TEST_IMAGES)).unwrap();
    let plain = dir.path().join(TEST_IMAGES);
    std::fs::write(&plain, &bytes).unwrap();
    // A gzip file without the .gz extension is recognised by its magic bytes.
    let disguised = dir.path().join("images.idx");
    std::fs::write(&disguised, gz(&bytes)).unwrap();
    let a = idx::read_images(&plain).unwrap();
    let b = idx::read_images(subset_file(TEST_IMAGES)).unwrap();
    let c = idx::read_images(&disguised).unwrap();
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(a.count, 500);
}

#[test]
fn loader_prefers_plain_files_and_falls_back_to_gz() {
    let dir = tempfile::tempdir().unwrap();
    let images = tiny_images(3);
    std::fs::write(dir.path().join(TEST_IMAGES), images.to_idx_bytes()).unwrap();
    std::fs::write(
        dir.path().join(format!("{TEST_LABELS}.gz")),
        gz(&labels_to_idx_bytes(&[0, 5, 9])),
    )
    .unwrap();
    let test = fashion_mnist::load(dir.path(), Split::Test).unwrap();
    assert_eq!(test.len(), 3);
    assert_eq!(test.labels(), &[0, 5, 9]);
    assert_eq!(test.raw_image(1), images.image(1));
}

#[test]
fn wrong_magic_is_reported_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swapped-images");
    // A label file where images are expected.
    std::fs::write(&path, labels_to_idx_bytes(&[1, 2, 3])).unwrap();
    let err = idx::read_images(&path).unwrap_err();
    match &err {
        IdxError::BadMagic {
            path: p,
            found,
            expected,
            kind,
        } => {
            assert_eq!(p, &path);
            assert_eq!(*found, LABELS_MAGIC);
            assert_eq!(*expected, IMAGES_MAGIC);
            assert_eq!(*kind, IdxKind::Images);
        }
        other => panic!("expected BadMagic, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("swapped-images"), "{msg}");
    assert!(
        msg.contains("0x00000801") && msg.contains("0x00000803"),
        "{msg}"
    );

    // Arbitrary bytes.
    std::fs::write(&path, b"GIF89a not an idx file").unwrap();
    assert!(matches!(
        idx::read_labels(&path),
        Err(IdxError::BadMagic {
            kind: IdxKind::Labels,
            ..
        })
    ));
}

#[test]
fn truncated_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = tiny_images(4).to_idx_bytes();
    let path = dir.path().join("short-images");

    // Cut inside the data.
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let err = idx::read_images(&path).unwrap_err();
    match &err {
        IdxError::Truncated {
            path: p,
            expected,
            found,
        } => {
            assert_eq!(p, &path);
            assert_eq!(*expected, bytes.len());
            assert_eq!(*found, bytes.len() - 100);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    assert!(err.to_string().contains("short-images"));

    // Cut inside the header.
    std::fs::write(&path, &bytes[..10]).unwrap();
    assert!(matches!(
        idx::read_images(&path),
        Err(IdxError::Truncated { expected: 16, .. })
    ));

    // Empty file.
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(
        idx::read_images(&path),
        Err(IdxError::Truncated { expected: 4, .. })
    ));

    // Extra bytes at the end are not silently ignored either.
    let mut long = bytes.clone();
    long.extend_from_slice(&[0; 7]);
    std::fs::write(&path, &long).unwrap();
    assert!(matches!(
        idx::read_images(&path),
        Err(IdxError::TrailingData { extra: 7, .. })
    ));
}

#[test]
fn count_mismatch_names_both_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(format!("{TRAIN_IMAGES}.gz")),
        gz(&tiny_images(5).to_idx_bytes()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join(format!("{TRAIN_LABELS}.gz")),
        gz(&labels_to_idx_bytes(&[0, 1, 2, 3])),
    )
    .unwrap();
    let err = fashion_mnist::load(dir.path(), Split::Train).unwrap_err();
    match &err {
        IdxError::CountMismatch {
            image_count,
            label_count,
            ..
        } => assert_eq!((*image_count, *label_count), (5, 4)),
        other => panic!("expected CountMismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(TRAIN_IMAGES) && msg.contains(TRAIN_LABELS),
        "{msg}"
    );
    assert!(
        msg.contains("5 images") && msg.contains("4 labels"),
        "{msg}"
    );
}

#[test]
fn out_of_range_labels_and_wrong_image_size_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("i");
    let labels = dir.path().join("l");
    std::fs::write(&images, tiny_images(2).to_idx_bytes()).unwrap();
    std::fs::write(&labels, labels_to_idx_bytes(&[3, 10])).unwrap();
    assert!(matches!(
        idx::read_labeled_images(&images, &labels, (28, 28), 10),
        Err(IdxError::BadLabel {
            index: 1,
            label: 10,
            ..
        })
    ));
    std::fs::write(&labels, labels_to_idx_bytes(&[3, 4])).unwrap();
    assert!(matches!(
        idx::read_labeled_images(&images, &labels, (32, 32), 10),
        Err(IdxError::BadImageSize { rows: 28, .. })
    ));
}

#[test]
fn gz_garbage_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{TEST_IMAGES}.gz"));

    // Not gzip at all, but named .gz.
    std::fs::write(&path, b"this is not gzip data at all").unwrap();
    let err = idx::read_images(&path).unwrap_err();
    assert!(matches!(err, IdxError::Gzip { .. }), "{err:?}");
    assert!(err.to_string().contains(TEST_IMAGES), "{err}");

    // A gzip header followed by garbage.
    let mut bad = vec![0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];
    bad.extend((0..200u32).map(|i| (i * 37 % 251) as u8));
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(
        idx::read_images(&path),
        Err(IdxError::Gzip { .. })
    ));

    // A real gzip stream cut in half.
    let whole = std::fs::read(subset_file(TEST_LABELS)).unwrap();
    std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
    assert!(matches!(
        idx::read_labels(&path),
        Err(IdxError::Gzip { .. })
    ));
}

#[test]
fn missing_files_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let err = FashionMnist::load(dir.path()).unwrap_err();
    assert!(matches!(err, IdxError::Missing { .. }));
    let msg = err.to_string();
    assert!(msg.contains(TRAIN_IMAGES), "{msg}");
    assert!(
        msg.contains("apt-get install dataset-fashion-mnist"),
        "{msg}"
    );
    assert!(msg.contains("--data DIR"), "{msg}");

    let err = idx::read_labels(dir.path().join("nope.gz")).unwrap_err();
    assert!(matches!(err, IdxError::Missing { .. }));
    assert!(err.to_string().contains("nope.gz"));
}
