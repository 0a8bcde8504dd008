//! Deterministic shuffles and splits, and a data loader over a split.

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::{Dataset, InMemDataset};
use burn::prelude::*;
use burnfit_models::data::split::{SplitError, sample_dataset};
use burnfit_models::data::{
    FashionMnist, ImageBatcher, shuffled_indices, split_dataset, train_val_split,
};

#[test]
fn shuffles_are_deterministic_permutations() {
    let a = shuffled_indices(1000, 7);
    let b = shuffled_indices(1000, 7);
    let c = shuffled_indices(1000, 8);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, (0..1000).collect::<Vec<_>>());
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
    assert!(shuffled_indices(0, 1).is_empty());
}

#[test]
fn train_val_split_is_disjoint_complete_and_repeatable() {
    let s = train_val_split(1000, 0.2, 42).unwrap();
    assert_eq!((s.train.len(), s.valid.len()), (800, 200));
    let mut all: Vec<_> = s.train.iter().chain(&s.valid).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
    assert_eq!(s, train_val_split(1000, 0.2, 42).unwrap());
    assert_ne!(s, train_val_split(1000, 0.2, 43).unwrap());

    let none = train_val_split(10, 0.0, 1).unwrap();
    assert_eq!((none.train.len(), none.valid.len()), (10, 0));
    // Rounding: 0.25 of 10 is 2.5, rounded to 3.
    assert_eq!(train_val_split(10, 0.25, 1).unwrap().valid.len(), 3);
}

#[test]
fn bad_fractions_are_rejected() {
    assert_eq!(
        train_val_split(10, 1.0, 0),
        Err(SplitError::BadFraction(1.0))
    );
    assert!(matches!(
        train_val_split(10, -0.1, 0),
        Err(SplitError::BadFraction(_))
    ));
    assert!(matches!(
        train_val_split(10, f64::NAN, 0),
        Err(SplitError::BadFraction(_))
    ));
    assert!(matches!(
        train_val_split(1, 0.6, 0),
        Err(SplitError::EmptyTrain { len: 1, .. })
    ));
}

#[test]
fn split_dataset_views_the_right_items() {
    let ds = InMemDataset::new((0..50).collect::<Vec<u32>>());
    let (train, valid) = split_dataset(ds, 0.1, 3).unwrap();
    assert_eq!((train.len(), valid.len()), (45, 5));
    let expected = train_val_split(50, 0.1, 3).unwrap();
    assert_eq!(train.indices(), expected.train.as_slice());
    for (i, &idx) in expected.valid.iter().enumerate() {
        assert_eq!(valid.get(i).unwrap(), idx as u32);
    }
    let sample = sample_dataset(InMemDataset::new(vec![1, 2, 3]), 10, 0);
    assert_eq!(sample.len(), 3);
}

#[test]
fn seeded_data_loaders_repeat_their_order() {
    let data = FashionMnist::load_subset().unwrap();
    let (train, _valid) = split_dataset(data.train, 0.5, 1).unwrap();
    let first_targets = |seed: u64| -> Vec<i64> {
        let loader = DataLoaderBuilder::new(ImageBatcher)
            .batch_size(16)
            .shuffle(seed)
            .num_workers(0)
            .set_device(Device::flex())
            .build(train.clone());
        let batch = loader.iter().next().unwrap().unwrap();
        assert_eq!(batch.images.dims(), [16, 1, 28, 28]);
        batch.targets.into_data().try_into_vec_as::<i64>().unwrap()
    };
    assert_eq!(first_targets(5), first_targets(5));
    assert_ne!(first_targets(5), first_targets(6));
}
