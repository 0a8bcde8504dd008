//! Cuts the small Fashion-MNIST subset committed under `data/fashion-mnist-subset/`.
//!
//! ```text
//! cargo run -p burnfit-models --example cut_subset -- [SRC_DIR] [DST_DIR] [N_TRAIN] [N_TEST]
//! ```
//!
//! Defaults: `SRC_DIR` = `/usr/share/datasets/fashion-mnist` (Debian package
//! `dataset-fashion-mnist`), `DST_DIR` = `data/fashion-mnist-subset` at the
//! workspace root, 2000 training and 500 test images. It keeps the first N
//! images of each split (Fashion-MNIST is already shuffled) and writes the four
//! IDX files gzip-compressed with a zero timestamp, so the output is
//! byte-for-byte reproducible.

use std::io::Write;
use std::path::{Path, PathBuf};

use burnfit_models::data::fashion_mnist::{self, CLASS_NAMES, NUM_CLASSES, Split};
use burnfit_models::data::idx::{IdxImages, labels_to_idx_bytes};
use flate2::Compression;
use flate2::GzBuilder;

fn write_gz(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut encoder = GzBuilder::new().mtime(0).write(file, Compression::best());
    encoder.write_all(bytes)?;
    encoder.finish()?.sync_all()
}

fn cut(src: &Path, dst: &Path, split: Split, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let data = fashion_mnist::load_raw(src, split)?;
    let n = n.min(data.len());
    let images = IdxImages {
        count: n,
        rows: data.images.rows,
        cols: data.images.cols,
        pixels: data.images.pixels[..n * data.images.image_len()].to_vec(),
    };
    let labels = &data.labels[..n];
    let (images_stem, labels_stem) = split.file_stems();
    write_gz(
        &dst.join(format!("{images_stem}.gz")),
        &images.to_idx_bytes(),
    )?;
    write_gz(
        &dst.join(format!("{labels_stem}.gz")),
        &labels_to_idx_bytes(labels),
    )?;

    let mut counts = [0usize; NUM_CLASSES];
    for &l in labels {
        counts[usize::from(l)] += 1;
    }
    println!("{split:?}: kept {n} of {} images", data.len());
    for (name, count) in CLASS_NAMES.iter().zip(counts) {
        println!("  {name:<12} {count}");
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let src = PathBuf::from(
        args.first()
            .cloned()
            .unwrap_or_else(|| fashion_mnist::DEFAULT_DIR.to_string()),
    );
    let dst = args
        .get(1)
        .map_or_else(|| PathBuf::from(fashion_mnist::SUBSET_DIR), PathBuf::from);
    let n_train: usize = args.get(2).map_or(Ok(2000), |s| s.parse())?;
    let n_test: usize = args.get(3).map_or(Ok(500), |s| s.parse())?;
    std::fs::create_dir_all(&dst)?;
    cut(&src, &dst, Split::Train, n_train)?;
    cut(&src, &dst, Split::Test, n_test)?;
    println!("wrote {}", dst.display());
    Ok(())
}
