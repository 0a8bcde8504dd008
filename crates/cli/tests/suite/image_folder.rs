//! `[data] kind = "image_folder"` on trees the tests draw: the built-in CNNs
//! train on them, `eval` and `predict` read them back, and bad folders get
//! one `error:` line, exit code 2, and nothing created.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{assert_one_error, burnfit, subset, text, train_flex as train};

/// The classes drawn: a bright image, a dark one, and horizontal stripes.
const CLASSES: [&str; 3] = ["bright", "dark", "striped"];

/// A small deterministic noise source (the tests draw their own images).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u8 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 59) as u8 * 4
    }
}

/// Image `index` of `class`, `size` x `size` RGB.
fn draw(class: &str, index: u64, size: u32) -> image::RgbImage {
    let mut noise = Noise(index * 31 + class.len() as u64);
    image::RgbImage::from_fn(size, size, |_, y| {
        let base: u8 = match class {
            "bright" => 200,
            "dark" => 40,
            _ if y % 2 == 0 => 230,
            _ => 20,
        };
        let n = noise.next();
        image::Rgb([base.saturating_add(n), base.saturating_sub(n), base])
    })
}

/// Writes `per_class` images of each class into `dir/CLASS/`, every other
/// one as a JPEG; `size(i)` is the size of the i-th image.
fn write_classes(dir: &Path, per_class: u64, size: impl Fn(u64) -> u32) {
    for class in CLASSES {
        let folder = dir.join(class);
        std::fs::create_dir_all(&folder).unwrap();
        for i in 0..per_class {
            let extension = if i % 2 == 0 { "png" } else { "jpg" };
            draw(class, i, size(i))
                .save(folder.join(format!("{class}{i:03}.{extension}")))
                .unwrap();
        }
    }
}

/// A config training `model` on the image folder `data` (extra `[data]`
/// keys in `data_keys`).
fn config(dir: &Path, model: &str, data: &Path, data_keys: &str) -> PathBuf {
    let path = dir.join("images.toml");
    std::fs::write(
        &path,
        format!(
            r#"[model]
{model}

[data]
kind = "image_folder"
dir = "{data}"
{data_keys}

[optimizer]
kind = "adam"
lr = 3e-3

[training]
epochs = 6
batch_size = 8
workers = 1
"#,
            data = data.display()
        ),
    )
    .unwrap();
    path
}

/// The accuracy of `eval`'s line, and the number of images it read.
fn eval_accuracy(run: &Path) -> (f64, usize) {
    let out = burnfit(&["eval", run.to_str().unwrap()]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    let line = printed
        .lines()
        .find(|l| l.starts_with("test ("))
        .unwrap_or_else(|| panic!("no test line in {printed}"));
    let count = line["test (".len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line}"));
    let accuracy = line
        .rsplit("accuracy ")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in {line}"));
    (accuracy, count)
}

#[test]
fn a_cnn_trains_on_class_folders_and_predicts_new_images_by_class_name() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("shapes");
    write_classes(&data, 16, |_| 12);
    let config = config(
        tmp.path(),
        "kind = \"cnn\"\nchannels = [4, 8]\nfc_size = 16\nconv_dropout = 0.0\nfc_dropout = 0.0",
        &data,
        "validation_split = 0.25",
    );
    let run = tmp.path().join("run");
    let out = train(&config, &run);
    assert!(out.status.success(), "{}", text(&out));

    // The data set the model's input and class count: 3 RGB channels of
    // 12x12, 3 classes, in folder-name order.
    let inputs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("image_folder.json")).unwrap()).unwrap();
    assert_eq!(inputs["classes"], serde_json::json!(CLASSES));
    assert_eq!(inputs["shape"], serde_json::json!([3, 12, 12]));
    let history = std::fs::read_to_string(run.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 1 + 6, "{history}");

    // 12 of the 48 images are held out, and are the test set.
    let (accuracy, count) = eval_accuracy(&run);
    assert_eq!(count, 12);
    assert!(accuracy >= 0.9, "the three classes are easy: {accuracy}");

    // New images, one per class, in a folder of their own.
    let new = tmp.path().join("new");
    for class in CLASSES {
        std::fs::create_dir_all(new.join(class)).unwrap();
        draw(class, 99, 12)
            .save(new.join(class).join("x.png"))
            .unwrap();
    }
    let out = burnfit(&["predict", run.to_str().unwrap(), new.to_str().unwrap()]);
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<Vec<&str>> = printed.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 3, "{printed}");
    for (line, class) in lines.iter().zip(CLASSES) {
        assert!(line[4].ends_with(&format!("{class}/x.png")), "{printed}");
        assert_eq!(line[2], class, "{printed}");
    }

    // An image of another size is refused by name: this run kept each
    // image's own size.
    let odd = tmp.path().join("odd.png");
    draw("dark", 1, 16).save(&odd).unwrap();
    let out = burnfit(&["predict", run.to_str().unwrap(), odd.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("odd.png: is 16x16"), "{}", text(&out));

    // An IDX file, what an IDX run predicts from, is not an image: the
    // message says what this run reads instead.
    let idx = subset().join("t10k-images-idx3-ubyte.gz");
    let out = burnfit(&["predict", run.to_str().unwrap(), idx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("t10k-images-idx3-ubyte.gz: cannot read this image")
            && said.contains("this run trained on an image folder, so predict reads PNG or JPEG"),
        "{said}"
    );
}

#[test]
fn a_split_layout_resizes_mixed_sizes_to_grayscale_and_evaluates_on_test() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("splits");
    write_classes(&data.join("train"), 8, |i| if i % 3 == 0 { 10 } else { 14 });
    write_classes(&data.join("valid"), 3, |_| 9);
    write_classes(&data.join("test"), 2, |_| 20);
    let config = config(
        tmp.path(),
        "kind = \"simple_cnn\"\nchannels = [4, 8]\nfc_size = 16",
        &data,
        "image_size = 8\ngrayscale = true",
    );
    let run = tmp.path().join("run");
    let out = train(&config, &run);
    assert!(out.status.success(), "{}", text(&out));
    let inputs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("image_folder.json")).unwrap()).unwrap();
    assert_eq!(inputs["shape"], serde_json::json!([1, 8, 8]));
    // eval reads test/ (6 images), not valid/ (9).
    let (_, count) = eval_accuracy(&run);
    assert_eq!(count, 6);
    // predict resizes an image of any size, as training did.
    let big = tmp.path().join("big.jpg");
    draw("bright", 5, 30).save(&big).unwrap();
    let out = burnfit(&["predict", run.to_str().unwrap(), big.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

/// Runs `train` on a broken copy of a good folder; expects one `error:`
/// line containing `expected`, exit 2, and no run directory.
fn refused(break_it: impl Fn(&Path), data_keys: &str, expected: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("shapes");
    write_classes(&data, 4, |_| 12);
    break_it(&data);
    let config = config(tmp.path(), "kind = \"mlp\"\nhidden = [8]", &data, data_keys);
    let run = tmp.path().join("run");
    let out = train(&config, &run);
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(2), "{printed}");
    let errors: Vec<&str> = printed
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{printed}");
    assert!(
        errors[0].contains(expected),
        "wanted {expected:?} in {printed}"
    );
    assert!(!run.exists(), "nothing is created before the checks pass");
}

#[test]
fn bad_image_folders_get_one_error_line_exit_2_and_create_nothing() {
    refused(
        |d| {
            std::fs::create_dir(d.join("empty")).unwrap();
        },
        "",
        "empty: no PNG or JPEG images in this class folder",
    );
    refused(
        |d| {
            let png = std::fs::read(d.join("dark/dark000.png")).unwrap();
            std::fs::write(d.join("dark/dark000.png"), &png[..png.len() / 2]).unwrap();
        },
        "",
        "dark000.png: cannot read this image",
    );
    refused(
        |d| {
            draw("bright", 7, 16)
                .save(d.join("bright/bright999.png"))
                .unwrap();
        },
        "",
        "bright999.png is 16x16; set data.image_size",
    );
    refused(
        |d| {
            for class in ["dark", "striped"] {
                std::fs::remove_dir_all(d.join(class)).unwrap();
            }
        },
        "",
        "one class folder only (bright)",
    );
    refused(
        |d| {
            for split in ["train", "valid"] {
                write_classes(&d.join(split), 2, |_| 12);
            }
        },
        "validation_split = 0.2",
        "data.validation_split",
    );
}

/// `burnfit train CONFIG --backend flex --run-dir RUN` and `extra`, with
/// the environment `env` (the crash tests' hooks).
fn train_with(config: &Path, run: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec![
        "train",
        config.to_str().unwrap(),
        "--backend",
        "flex",
        "--run-dir",
        run.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Command::new(env!("CARGO_BIN_EXE_burnfit"))
        .args(&args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn a_killed_run_resumes_with_its_own_config_and_a_changed_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("shapes");
    write_classes(&data, 8, |_| 8);
    let config = config(
        tmp.path(),
        "kind = \"mlp\"\nhidden = [8]",
        &data,
        "validation_split = 0.25",
    );
    // 18 training images in batches of 8: 3 steps an epoch; killed in the
    // third epoch, after the second epoch's backup.
    let run = tmp.path().join("run");
    let out = train_with(&config, &run, &[], &[("BURNFIT_ABORT_AT_STEP", "8")]);
    assert!(!out.status.success(), "{}", text(&out));
    // A class folder added since: the model the data gives is not the run's.
    let extra = data.join("extra");
    std::fs::create_dir(&extra).unwrap();
    draw("dark", 50, 8).save(extra.join("x.png")).unwrap();
    assert_one_error(
        &train_with(&config, &run, &["--resume"], &[]),
        &["--resume: the data gives", "model.num_classes: 3 -> 4"],
    );
    std::fs::remove_dir_all(&extra).unwrap();
    // The config leaves num_classes out, as the run's first process read
    // it: the resume takes it from the folder again.
    let out = train_with(&config, &run, &["--resume"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let history = std::fs::read_to_string(run.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 1 + 6, "{history}");
}

/// The `[model]` table of the run's `config.toml`.
fn run_model(run: &Path) -> toml::Table {
    let text = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let mut config: toml::Table = toml::from_str(&text).unwrap();
    match config.remove("model") {
        Some(toml::Value::Table(model)) => model,
        other => panic!("no [model] table: {other:?}\n{text}"),
    }
}

#[test]
fn the_run_config_records_the_sizes_the_model_trained_with() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("shapes");
    write_classes(&data, 4, |_| 12);
    let int = |model: &toml::Table, key: &str| model.get(key).and_then(toml::Value::as_integer);
    // A CNN on 12x12 RGB images of 3 classes (not its defaults: 28x28, one
    // channel, 10 classes).
    let cnn = config(
        tmp.path(),
        "kind = \"cnn\"\nchannels = [4, 8]\nfc_size = 8",
        &data,
        "validation_split = 0.25",
    );
    let run = tmp.path().join("cnn");
    let out = train_with(&cnn, &run, &["--epochs", "1"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let model = run_model(&run);
    assert_eq!(int(&model, "in_channels"), Some(3), "{model:?}");
    assert_eq!(int(&model, "image_size"), Some(12), "{model:?}");
    assert_eq!(int(&model, "num_classes"), Some(3), "{model:?}");
    // Resized to 8x8 gray: an MLP takes 64 values.
    let mlp = config(
        tmp.path(),
        "kind = \"mlp\"\nhidden = [8]",
        &data,
        "image_size = 8\ngrayscale = true",
    );
    let run = tmp.path().join("mlp");
    let out = train_with(&mlp, &run, &["--epochs", "1"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let model = run_model(&run);
    assert_eq!(int(&model, "input_size"), Some(64), "{model:?}");
    assert_eq!(int(&model, "num_classes"), Some(3), "{model:?}");
    // eval builds the model from that config and loads its weights (the
    // default validation split holds out 1 of the 12 images).
    let (_, count) = eval_accuracy(&run);
    assert_eq!(count, 1);
}
