//! A model that does not fit its data (the wrong family for it, shape keys
//! that differ from the images, fewer classes than the labels, an image
//! size the model cannot take), and a CSV table, image folder or IDX
//! directory that cannot be read as the config says, are refused by
//! `validate` and by `train` with one `error:` line naming the key and
//! where its value came from, before anything is created.

use std::path::{Path, PathBuf};

use super::common::{
    assert_one_error, assert_refused as refused, burnfit, repo, small_config, subset, text,
};

/// A regression config on the committed table with `[model]` `model`.
fn table_config(dir: &Path, model: &str) -> PathBuf {
    let path = dir.join("table.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "table"
[model]
{model}

[data]
kind = "csv"
path = "{}"
features = ["x1", "x2", "x3", "x4", "x5", "x6"]
target = "y"
validation_split = 0.15
test_split = 0.15

[training]
epochs = 1
batch_size = 16
"#,
            repo().join("data/tables/friedman1.csv").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_classifier_on_a_table_or_a_regressor_on_images_is_refused_at_its_kind() {
    let tmp = tempfile::tempdir().unwrap();
    for kind in ["mlp", "cnn", "simple_cnn", "resnet"] {
        let config = table_config(tmp.path(), &format!("kind = \"{kind}\""));
        refused(
            &config,
            &[],
            &["table.toml:3: model.kind", kind, "mlp_regressor"],
        );
    }
    let config = small_config(tmp.path(), "kind = \"mlp_regressor\"", "");
    refused(
        &config,
        &[],
        &["small.toml:3: model.kind", "mlp_regressor", "classifier"],
    );
}

#[test]
fn a_regressor_whose_input_size_differs_from_the_table_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let config = table_config(tmp.path(), "kind = \"mlp_regressor\"\ninput_size = 3");
    refused(
        &config,
        &[],
        &[
            "table.toml:4: model.input_size",
            "is 3",
            "6 feature columns",
        ],
    );
}

#[test]
fn shape_keys_that_differ_from_idx_images_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mlp = small_config(tmp.path(), "kind = \"mlp\"\nhidden = [8]", "");
    refused(
        &mlp,
        &["model.num_classes=5"],
        &[
            "--set model.num_classes=5: model.num_classes: is 5",
            "10 classes",
            "model.num_classes = 10",
        ],
    );
    refused(
        &mlp,
        &["model.input_size=100"],
        &["model.input_size: is 100", "784", "model.input_size = 784"],
    );
    for kind in ["cnn", "simple_cnn"] {
        let config = small_config(
            tmp.path(),
            &format!("kind = \"{kind}\"\nchannels = [4, 8]\nfc_size = 8"),
            "",
        );
        refused(
            &config,
            &["model.image_size=32"],
            &["model.image_size: is 32", "28x28", "model.image_size = 28"],
        );
        refused(
            &config,
            &["model.in_channels=3"],
            &[
                "model.in_channels: is 3",
                "1 channel",
                "model.in_channels = 1",
            ],
        );
    }
    // ResNet's fallback convolution took 3 channels of 1-channel images.
    let resnet = small_config(
        tmp.path(),
        "kind = \"resnet\"\nstem_channels = 4\nstage_channels = [4]\nblocks_per_stage = 1",
        "",
    );
    refused(
        &resnet,
        &["model.in_channels=3"],
        &["model.in_channels: is 3", "model.in_channels = 1"],
    );
    // A value in the file is reported at its line.
    let in_file = small_config(tmp.path(), "kind = \"mlp\"\nnum_classes = 5", "");
    refused(&in_file, &[], &["small.toml:4: model.num_classes: is 5"]);
}

#[test]
fn more_classes_than_the_labels_are_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path(), "kind = \"mlp\"\nhidden = [8]", "");
    let out = burnfit(&[
        "validate",
        config.to_str().unwrap(),
        "--set",
        "model.num_classes=12",
    ]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains("warning: model.num_classes = 12, but the data has 10 classes"),
        "{printed}"
    );
}

/// An image folder of two classes of `width` x `height` PNGs.
fn folder(dir: &Path, width: u32, height: u32) -> PathBuf {
    let root = dir.join("images");
    for (class, value) in [("dark", 30u8), ("light", 220)] {
        let folder = root.join(class);
        std::fs::create_dir_all(&folder).unwrap();
        for i in 0..10u8 {
            image::RgbImage::from_pixel(width, height, image::Rgb([value, value + i, value]))
                .save(folder.join(format!("{i}.png")))
                .unwrap();
        }
    }
    root
}

/// A config training a `kind` model on the image folder `images`:
/// `[data]` on line 7, `dir` on line 9, `validation_split` on line 10.
fn folder_config(dir: &Path, kind: &str, images: &Path) -> PathBuf {
    let path = dir.join("images.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "images"
[model]
kind = "{kind}"
channels = [4, 8]
fc_size = 8

[data]
kind = "image_folder"
dir = "{}"
validation_split = 0.2

[training]
epochs = 1
batch_size = 4
"#,
            images.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn an_image_size_the_model_cannot_take_is_refused_at_data_image_size() {
    let tmp = tempfile::tempdir().unwrap();
    let images = folder(tmp.path(), 24, 20);
    for kind in ["cnn", "simple_cnn"] {
        let config = folder_config(tmp.path(), kind, &images);
        refused(
            &config,
            &[],
            &[
                "data.image_size",
                "24x20 (width x height)",
                "square",
                "set data.image_size = 24",
            ],
        );
    }
    let config = folder_config(tmp.path(), "cnn", &images);
    refused(
        &config,
        &["data.image_size=2"],
        &[
            "--set data.image_size=2: data.image_size: is 2",
            "multiple of 4",
            "set data.image_size = 4",
        ],
    );
    // Resizing to a size no memory holds used to end in an allocation
    // failure and a backtrace (or minutes of resizing first).
    refused(
        &config,
        &["data.image_size=10000000"],
        &[
            "--set data.image_size=10000000: data.image_size: is 10000000",
            "of memory available; choose a smaller data.image_size",
        ],
    );
}

#[test]
fn mnist_without_its_directory_is_refused_rather_than_reading_fashion_mnist() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("mnist.toml");
    std::fs::write(
        &config,
        "[model]\nkind = \"mlp\"\n\n[data]\nkind = \"mnist\"\n",
    )
    .unwrap();
    let run = tmp.path().join("run");
    for args in [
        vec!["validate", config.to_str().unwrap()],
        vec![
            "train",
            config.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
        ],
    ] {
        let out = burnfit(&args);
        let printed = text(&out);
        assert_eq!(out.status.code(), Some(2), "{printed}");
        assert_eq!(printed.lines().count(), 1, "{printed}");
        assert!(printed.contains("data.dir"), "{printed}");
        assert!(printed.contains("Fashion-MNIST, not MNIST"), "{printed}");
        assert!(!run.exists());
    }
    // A directory without MNIST's files is not told to install Fashion-MNIST.
    let missing = tmp.path().join("no-mnist");
    let out = burnfit(&[
        "validate",
        config.to_str().unwrap(),
        "--set",
        &format!("data.dir={:?}", missing.display().to_string()),
    ]);
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(2), "{printed}");
    assert!(
        printed.contains("file not found; put MNIST's four IDX files")
            && !printed.contains("dataset-fashion-mnist"),
        "{printed}"
    );
}

#[test]
fn an_image_folder_with_fewer_model_classes_than_class_folders_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let images = folder(tmp.path(), 8, 8);
    let config = folder_config(tmp.path(), "cnn", &images);
    refused(
        &config,
        &["model.num_classes=1"],
        &[
            "--set model.num_classes=1: model.num_classes: is 1",
            "2 class folders (dark, light)",
            "set model.num_classes = 2",
        ],
    );
    // A value in the file is reported at its line.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("fc_size = 8", "fc_size = 8\nnum_classes = 1"),
    )
    .unwrap();
    refused(&config, &[], &["images.toml:6: model.num_classes: is 1"]);
}

#[test]
fn an_image_folder_refuses_input_keys_the_config_gives_that_differ_from_its_images() {
    let tmp = tempfile::tempdir().unwrap();
    let images = folder(tmp.path(), 8, 8);
    let config = folder_config(tmp.path(), "cnn", &images);
    refused(
        &config,
        &["model.in_channels=1"],
        &[
            "--set model.in_channels=1: model.in_channels: is 1",
            "3 channel(s)",
            "model.in_channels = 3",
        ],
    );
    refused(
        &config,
        &["model.image_size=12"],
        &["model.image_size: is 12", "8x8", "model.image_size = 8"],
    );
}

#[test]
fn an_image_folder_with_more_model_classes_than_class_folders_warns_and_trains_them() {
    let tmp = tempfile::tempdir().unwrap();
    let images = folder(tmp.path(), 8, 8);
    let config = folder_config(tmp.path(), "cnn", &images);
    let run = tmp.path().join("run");
    let out = burnfit(&[
        "train",
        config.to_str().unwrap(),
        "--set",
        "model.num_classes=4",
        "--backend",
        "flex",
        "--run-dir",
        run.to_str().unwrap(),
    ]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains("warning: model.num_classes = 4, but the data has 2 classes"),
        "{printed}"
    );
    // The model has the 4 outputs: eval and predict build it from the run
    // and load its weights.
    let out = burnfit(&["eval", run.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let image = images.join("dark/0.png");
    let out = burnfit(&["predict", run.to_str().unwrap(), image.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn image_folder_errors_name_the_config_key_with_the_file_and_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let at_dir = "images.toml:9: data.dir: ";
    let config = folder_config(tmp.path(), "cnn", &tmp.path().join("nowhere"));
    refused(&config, &[], &[at_dir, "nowhere: not a folder"]);
    let one = folder(&tmp.path().join("one"), 8, 8);
    std::fs::remove_dir_all(one.join("light")).unwrap();
    let config = folder_config(tmp.path(), "cnn", &one);
    refused(&config, &[], &[at_dir, "one class folder only (dark)"]);
    let broken = folder(&tmp.path().join("broken"), 8, 8);
    std::fs::write(broken.join("dark/bad.png"), b"not a png").unwrap();
    let config = folder_config(tmp.path(), "cnn", &broken);
    refused(&config, &[], &[at_dir, "bad.png: cannot read this image"]);
    // Images of two sizes: data.image_size, which the file leaves out, at
    // its table's line.
    let mixed = folder(&tmp.path().join("mixed"), 8, 8);
    image::RgbImage::new(12, 12)
        .save(mixed.join("light/big.png"))
        .unwrap();
    let config = folder_config(tmp.path(), "cnn", &mixed);
    refused(
        &config,
        &[],
        &[
            "images.toml:7: data.image_size: ",
            "big.png is 12x12; set data.image_size",
        ],
    );
    // train/ and valid/ folders with a validation_split.
    let splits = tmp.path().join("splits");
    std::fs::create_dir(&splits).unwrap();
    for split in ["train", "valid"] {
        let images = folder(&tmp.path().join(split), 8, 8);
        std::fs::rename(images, splits.join(split)).unwrap();
    }
    let config = folder_config(tmp.path(), "cnn", &splits);
    refused(
        &config,
        &[],
        &[
            "images.toml:10: data.validation_split: ",
            "has train/ and valid/ folders",
        ],
    );
}

#[test]
fn an_image_folder_error_names_the_set_or_the_data_flag_that_gave_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let images = folder(tmp.path(), 8, 8);
    let config = folder_config(tmp.path(), "cnn", &images);
    let missing = tmp.path().join("gone");
    let set = format!("data.dir={}", missing.display());
    refused(
        &config,
        &[&set],
        &[&format!("--set {set}: data.dir: "), "gone: not a folder"],
    );
    refused_with_data_flag(
        &config,
        &missing,
        &[
            &format!("--data {}: data.dir: ", missing.display()),
            "gone: not a folder",
        ],
    );
}

#[test]
fn an_idx_directory_without_the_files_is_named_at_data_dir_and_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path(), "kind = \"mlp\"", "");
    let text = std::fs::read_to_string(&config).unwrap();
    let missing = tmp.path().join("no-idx");
    let subset = subset();
    std::fs::write(
        &config,
        text.replace(subset.to_str().unwrap(), missing.to_str().unwrap()),
    )
    .unwrap();
    refused(
        &config,
        &[],
        &[
            "small.toml:7: data.dir: ",
            "train-images-idx3-ubyte.gz: file not found",
        ],
    );
    // A file where the directory should be is named as one.
    refused(
        &config,
        &[&format!("data.dir={:?}", config.display().to_string())],
        &[
            "data.dir: ",
            "small.toml is a file; give the directory that holds the IDX files",
        ],
    );
}

/// A regression config on the CSV file `csv`: `path` on line 7, `features`
/// on line 8, `target` on line 9.
fn csv_config(dir: &Path, csv: &Path, features: &str, target: &str) -> PathBuf {
    let path = dir.join("table.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "table"
[model]
kind = "mlp_regressor"

[data]
kind = "csv"
path = "{}"
features = {features}
target = "{target}"
validation_split = 0.2
test_split = 0.2

[training]
epochs = 1
batch_size = 4
"#,
            csv.display()
        ),
    )
    .unwrap();
    path
}

/// A CSV of 20 rows, `x1`, `x2`, `y`; the cell of `x2` on line 6 is `bad`.
fn table(dir: &Path, bad: &str) -> PathBuf {
    let path = dir.join("rows.csv");
    let mut text = String::from("x1,x2,y\n");
    for i in 0..20 {
        let x2 = if i == 4 {
            bad.to_string()
        } else {
            format!("{}", i % 7)
        };
        text.push_str(&format!("{i},{x2},{}\n", i * 2));
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn csv_errors_name_the_config_key_with_the_file_and_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let features = r#"["x1", "x2"]"#;
    let missing = tmp.path().join("nowhere.csv");
    let config = csv_config(tmp.path(), &missing, features, "y");
    refused(
        &config,
        &[],
        &["table.toml:7: data.path: ", "nowhere.csv: file not found"],
    );
    // A directory is named as one (it read "malformed CSV: Is a directory").
    let config = csv_config(tmp.path(), tmp.path(), features, "y");
    refused(
        &config,
        &[],
        &[
            "table.toml:7: data.path: ",
            "is a directory; give the CSV file",
        ],
    );
    let csv = table(tmp.path(), "abc");
    let config = csv_config(tmp.path(), &csv, features, "y");
    refused(
        &config,
        &[],
        &[
            "table.toml:7: data.path: ",
            "rows.csv:6: column `x2`: \"abc\" is not a finite number",
        ],
    );
    let csv = table(tmp.path(), "3");
    let config = csv_config(tmp.path(), &csv, r#"["x1", "x2", "x1"]"#, "y");
    refused(
        &config,
        &[],
        &[
            "table.toml:8: data.features: ",
            "rows.csv: column `x1` is listed twice in the features",
        ],
    );
    let config = csv_config(tmp.path(), &csv, r#"["x1", "x9"]"#, "y");
    refused(
        &config,
        &[],
        &[
            "table.toml:8: data.features: ",
            "rows.csv: column `x9` not found in the header (columns: x1, x2, y)",
        ],
    );
    let config = csv_config(tmp.path(), &csv, features, "z");
    refused(
        &config,
        &[],
        &[
            "table.toml:9: data.target: ",
            "rows.csv: column `z` not found",
        ],
    );
    let config = csv_config(tmp.path(), &csv, r#"["x1", "y"]"#, "y");
    refused(
        &config,
        &[],
        &[
            "table.toml:8: data.features: ",
            "`y` is both the target and a feature",
        ],
    );
}

#[test]
fn a_csv_error_names_the_set_or_the_data_flag_that_gave_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = table(tmp.path(), "3");
    let config = csv_config(tmp.path(), &csv, r#"["x1", "x2"]"#, "y");
    let missing = tmp.path().join("gone.csv");
    let set = format!("data.path={}", missing.display());
    refused(
        &config,
        &[&set],
        &[
            &format!("--set {set}: data.path: "),
            "gone.csv: file not found",
        ],
    );
    refused_with_data_flag(
        &config,
        &missing,
        &[
            &format!("--data {}: data.path: ", missing.display()),
            "gone.csv: file not found",
        ],
    );
}

/// `validate` and `train` of `config` with `--data DATA` each print one
/// error line holding `words`, and `train` creates nothing.
fn refused_with_data_flag(config: &Path, data: &Path, words: &[&str]) {
    let mut args = vec![
        "validate",
        config.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ];
    assert_one_error(&burnfit(&args), words);
    let run = config.with_file_name("run");
    args[0] = "train";
    args.extend(["--backend", "flex", "--run-dir", run.to_str().unwrap()]);
    assert_one_error(&burnfit(&args), words);
    assert!(!run.exists(), "{} was created", run.display());
}
