//! The CSV table reader on the committed table and on broken tables.

use std::path::{Path, PathBuf};

use burn::data::dataset::Dataset;
use burnfit_models::data::{CsvError, Standardizer, Table, TableConfig, TableDataset};

const FRIEDMAN1: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../data/tables/friedman1.csv"
);

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn committed_table_reads() {
    let config = TableConfig::new("y").with_features(["x1", "x2", "x3", "x4", "x5"]);
    let table = Table::from_csv(FRIEDMAN1, &config).unwrap();
    assert_eq!(table.len(), 500);
    assert_eq!(table.num_features(), 5);
    assert_eq!(table.target_name, "y");
    assert!(table.features.iter().all(|x| (0.0..1.0).contains(x)));
    // Friedman #1 targets lie roughly in [-5, 35].
    assert!(table.targets.iter().all(|y| (-5.0..35.0).contains(y)));

    // No feature list: every other column, in file order.
    let all = Table::from_csv(FRIEDMAN1, &TableConfig::new("y")).unwrap();
    assert_eq!(all.feature_names, ["x1", "x2", "x3", "x4", "x5", "x6"]);
    assert_eq!(all.targets, table.targets);

    let ds = TableDataset::new(table);
    let item = ds.get(3).unwrap();
    assert_eq!(item.features.len(), 5);
    assert_eq!(item.target, ds.table().targets[3]);
}

#[test]
fn feature_order_follows_the_config_and_cells_are_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "t.csv", "a, b ,t\n1, 2 ,3\n4,5,6\n");
    let table = Table::from_csv(&path, &TableConfig::new("t").with_features(["b", "a"])).unwrap();
    assert_eq!(table.features, [2.0, 1.0, 5.0, 4.0]);
    assert_eq!(table.targets, [3.0, 6.0]);

    let semi = write(dir.path(), "s.csv", "a;t\n1.5;-2e3\n");
    let table = Table::from_csv(&semi, &TableConfig::new("t").with_delimiter(';')).unwrap();
    assert_eq!(table.features, [1.5]);
    assert_eq!(table.targets, [-2000.0]);
}

#[test]
fn missing_column_lists_the_available_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "t.csv", "a,b,t\n1,2,3\n");
    let err = Table::from_csv(&path, &TableConfig::new("t").with_features(["a", "c"])).unwrap_err();
    match &err {
        CsvError::MissingColumn {
            column, available, ..
        } => {
            assert_eq!(column, "c");
            assert_eq!(available, &["a", "b", "t"]);
        }
        other => panic!("expected MissingColumn, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("t.csv") && msg.contains("`c`") && msg.contains("a, b, t"),
        "{msg}"
    );

    let err = Table::from_csv(&path, &TableConfig::new("price")).unwrap_err();
    assert!(matches!(err, CsvError::MissingColumn { ref column, .. } if column == "price"));
}

#[test]
fn non_numeric_cells_give_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bad.csv", "a,b,t\n1,2,3\n4,5,6\n7,oops,9\n");
    let err = Table::from_csv(&path, &TableConfig::new("t")).unwrap_err();
    match &err {
        CsvError::NotNumeric {
            line,
            column,
            value,
            ..
        } => {
            assert_eq!(*line, 4);
            assert_eq!(column, "b");
            assert_eq!(value, "oops");
        }
        other => panic!("expected NotNumeric, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("bad.csv:4") && msg.contains("`b`") && msg.contains("oops"),
        "{msg}"
    );

    // Empty cells and non-finite values are not numbers either.
    let path = write(dir.path(), "empty.csv", "a,t\n1,2\n,3\n");
    assert!(matches!(
        Table::from_csv(&path, &TableConfig::new("t")),
        Err(CsvError::NotNumeric { line: 3, .. })
    ));
    let path = write(dir.path(), "nan.csv", "a,t\n1,NaN\n");
    assert!(matches!(
        Table::from_csv(&path, &TableConfig::new("t")),
        Err(CsvError::NotNumeric { line: 2, ref column, .. }) if column == "t"
    ));
}

#[test]
fn structural_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ragged = write(dir.path(), "ragged.csv", "a,b,t\n1,2,3\n4,5\n");
    let err = Table::from_csv(&ragged, &TableConfig::new("t")).unwrap_err();
    assert!(
        matches!(
            err,
            CsvError::FieldCount {
                line: 3,
                expected: 3,
                found: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("ragged.csv:3"));

    let header_only = write(dir.path(), "h.csv", "a,t\n");
    assert!(matches!(
        Table::from_csv(&header_only, &TableConfig::new("t")),
        Err(CsvError::Empty { .. })
    ));

    let only_target = write(dir.path(), "o.csv", "t\n1\n");
    assert!(matches!(
        Table::from_csv(&only_target, &TableConfig::new("t")),
        Err(CsvError::NoFeatures { .. })
    ));

    let both = write(dir.path(), "b.csv", "a,t\n1,2\n");
    assert!(matches!(
        Table::from_csv(&both, &TableConfig::new("t").with_features(["a", "t"])),
        Err(CsvError::TargetIsFeature { .. })
    ));

    let missing = dir.path().join("absent.csv");
    let err = Table::from_csv(&missing, &TableConfig::new("t")).unwrap_err();
    assert!(matches!(err, CsvError::Missing { .. }));
    assert!(err.to_string().contains("absent.csv"));
}

#[test]
fn standardizer_centres_and_scales() {
    let mut table = Table::from_csv(FRIEDMAN1, &TableConfig::new("y")).unwrap();
    let s = Standardizer::fit(&table);
    s.apply(&mut table);
    let again = Standardizer::fit(&table);
    assert!(
        again.mean.iter().all(|m| m.abs() < 1e-4),
        "{:?}",
        again.mean
    );
    assert!(
        again.std.iter().all(|s| (s - 1.0).abs() < 1e-3),
        "{:?}",
        again.std
    );

    let sub = table.select(&[4, 0]);
    assert_eq!(sub.len(), 2);
    assert_eq!(sub.row(0), table.row(4));
    assert_eq!(sub.targets, [table.targets[4], table.targets[0]]);
}

#[test]
fn config_deserialises_with_defaults() {
    let config: TableConfig = toml::from_str("target = \"y\"\nfeatures = [\"x1\"]").unwrap();
    assert_eq!(config, TableConfig::new("y").with_features(["x1"]));
    assert!(toml::from_str::<TableConfig>("targte = \"y\"").is_err());
}
