//! A CSV table reader for regression: numeric feature columns and one numeric
//! target column, chosen by name.
//!
//! The first line must be a header. Cells are trimmed of surrounding
//! whitespace. Every error names the file and, where it concerns a cell, the
//! line (1-based, the header being line 1) and the column.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Which columns of a CSV file to use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TableConfig {
    /// Feature column names, in the order the model sees them. Empty means
    /// "every column except the target", in file order.
    pub features: Vec<String>,
    /// The target column name.
    pub target: String,
    /// Field delimiter (a single ASCII character).
    pub delimiter: char,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            features: Vec::new(),
            target: "target".to_string(),
            delimiter: ',',
        }
    }
}

impl TableConfig {
    /// A config using `target` as target and every other column as a feature.
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            ..Self::default()
        }
    }

    /// Sets the feature columns.
    pub fn with_features<S: Into<String>>(mut self, features: impl IntoIterator<Item = S>) -> Self {
        self.features = features.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the delimiter.
    pub fn with_delimiter(mut self, delimiter: char) -> Self {
        self.delimiter = delimiter;
        self
    }
}

/// Errors raised while reading a CSV table. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// The file does not exist.
    #[error("{path}: file not found", path = .path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be opened or read.
    #[error("{path}: cannot read: {source}", path = .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The configured delimiter is not a single ASCII character.
    #[error("{path}: delimiter {delimiter:?} is not an ASCII character", path = .path.display())]
    BadDelimiter {
        /// The file.
        path: PathBuf,
        /// The delimiter given.
        delimiter: char,
    },
    /// The CSV could not be parsed (bad UTF-8, I/O failure mid-file...).
    #[error("{path}{at}: malformed CSV: {source}", path = .path.display(), at = LineSuffix(*.line))]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The line, where known.
        line: Option<u64>,
        /// The CSV parser's error.
        #[source]
        source: csv::Error,
    },
    /// A row does not have as many fields as the header.
    #[error(
        "{path}:{line}: row has {found} fields but the header has {expected}",
        path = .path.display()
    )]
    FieldCount {
        /// The file.
        path: PathBuf,
        /// The line of the row.
        line: u64,
        /// Number of header fields.
        expected: u64,
        /// Number of fields in the row.
        found: u64,
    },
    /// A configured column is not in the header.
    #[error(
        "{path}: column `{column}` not found in the header (columns: {available})",
        path = .path.display(),
        available = .available.join(", ")
    )]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column looked for.
        column: String,
        /// The columns the header has.
        available: Vec<String>,
    },
    /// The target column is also listed as a feature.
    #[error("{path}: column `{column}` is both the target and a feature", path = .path.display())]
    TargetIsFeature {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
    },
    /// A column is listed twice among the features.
    #[error("{path}: column `{column}` is listed twice in the features", path = .path.display())]
    DuplicateFeature {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
    },
    /// No feature columns remain.
    #[error("{path}: no feature columns (the table has only the target column)", path = .path.display())]
    NoFeatures {
        /// The file.
        path: PathBuf,
    },
    /// A cell is not a finite number.
    #[error(
        "{path}:{line}: column `{column}`: {value:?} is not a finite number",
        path = .path.display()
    )]
    NotNumeric {
        /// The file.
        path: PathBuf,
        /// The line of the cell.
        line: u64,
        /// The column name.
        column: String,
        /// The cell's text.
        value: String,
    },
    /// The file is empty: no header row naming the columns.
    #[error(
        "{path}: the CSV has no header row (the file is empty); its first line must name the \
         columns",
        path = .path.display()
    )]
    NoHeader {
        /// The file.
        path: PathBuf,
    },
    /// The file has a header but no data rows.
    #[error("{path}: no data rows", path = .path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Formats `Some(line)` as `:line` and `None` as nothing.
struct LineSuffix(Option<u64>);

impl fmt::Display for LineSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, ":{line}"),
            None => Ok(()),
        }
    }
}

/// A numeric table read from CSV: a dense feature matrix and a target vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Feature column names, in model order.
    pub feature_names: Vec<String>,
    /// Target column name.
    pub target_name: String,
    /// Features, row-major: `len() * num_features()` values.
    pub features: Vec<f32>,
    /// One target per row.
    pub targets: Vec<f32>,
}

impl Table {
    /// Reads a table from a CSV file.
    pub fn from_csv(path: impl AsRef<Path>, config: &TableConfig) -> Result<Self, CsvError> {
        let path = path.as_ref();
        Self::from_reader(open(path)?, path, config)
    }

    /// Reads the feature columns of a CSV file whose target column may be
    /// absent (inputs to predict): the targets of such a file are NaN.
    pub fn features_from_csv(
        path: impl AsRef<Path>,
        config: &TableConfig,
    ) -> Result<Self, CsvError> {
        let path = path.as_ref();
        Self::read(open(path)?, path, config, false)
    }

    /// Reads a table from any reader; `path` is only used in error messages.
    pub fn from_reader(
        reader: impl std::io::Read,
        path: &Path,
        config: &TableConfig,
    ) -> Result<Self, CsvError> {
        Self::read(reader, path, config, true)
    }

    /// Reads a table; without `target_required`, a header without the
    /// target column gives NaN targets.
    fn read(
        reader: impl std::io::Read,
        path: &Path,
        config: &TableConfig,
        target_required: bool,
    ) -> Result<Self, CsvError> {
        let delimiter = u8::try_from(config.delimiter)
            .ok()
            .filter(u8::is_ascii)
            .ok_or_else(|| CsvError::BadDelimiter {
                path: path.to_path_buf(),
                delimiter: config.delimiter,
            })?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .delimiter(delimiter)
            .trim(csv::Trim::All)
            .from_reader(reader);
        let csv_error = |source: csv::Error| map_csv_error(path, source);

        let header: Vec<String> = reader
            .headers()
            .map_err(csv_error)?
            .iter()
            .map(str::to_string)
            .collect();
        if header.iter().all(String::is_empty) {
            return Err(CsvError::NoHeader {
                path: path.to_path_buf(),
            });
        }
        let Columns {
            target: target_index,
            feature_names,
            feature_indices,
        } = Columns::resolve(&header, config, target_required, path)?;

        let mut features = Vec::new();
        let mut targets = Vec::new();
        let mut record = csv::StringRecord::new();
        while reader.read_record(&mut record).map_err(csv_error)? {
            let line = record.position().map_or(0, csv::Position::line);
            let cell = |index: usize| -> Result<f32, CsvError> {
                let text = record.get(index).unwrap_or("");
                text.parse::<f32>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| CsvError::NotNumeric {
                        path: path.to_path_buf(),
                        line,
                        column: header[index].clone(),
                        value: text.to_string(),
                    })
            };
            for &index in &feature_indices {
                features.push(cell(index)?);
            }
            targets.push(match target_index {
                Some(index) => cell(index)?,
                None => f32::NAN,
            });
        }
        if targets.is_empty() {
            return Err(CsvError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Self {
            feature_names,
            target_name: config.target.clone(),
            features,
            targets,
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Number of feature columns.
    pub fn num_features(&self) -> usize {
        self.feature_names.len()
    }

    /// The features of row `index`.
    pub fn row(&self, index: usize) -> &[f32] {
        let n = self.num_features();
        &self.features[index * n..(index + 1) * n]
    }

    /// A new table holding the given rows, in the given order.
    pub fn select(&self, indices: &[usize]) -> Self {
        let mut features = Vec::with_capacity(indices.len() * self.num_features());
        for &i in indices {
            features.extend_from_slice(self.row(i));
        }
        Self {
            feature_names: self.feature_names.clone(),
            target_name: self.target_name.clone(),
            features,
            targets: indices.iter().map(|&i| self.targets[i]).collect(),
        }
    }
}

/// Per-feature standardisation `(x - mean) / std`, fitted on a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Mean of each feature.
    pub mean: Vec<f32>,
    /// Standard deviation of each feature (1 where a feature is constant).
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Fits the mean and (population) standard deviation of every feature of `table`.
    ///
    /// # Panics
    ///
    /// Panics if the table is empty.
    pub fn fit(table: &Table) -> Self {
        assert!(
            !table.is_empty(),
            "cannot fit a standardizer on an empty table"
        );
        let n = table.num_features();
        let rows = table.len() as f64;
        let mut sum = vec![0f64; n];
        let mut sum_sq = vec![0f64; n];
        for r in 0..table.len() {
            for (j, &x) in table.row(r).iter().enumerate() {
                sum[j] += f64::from(x);
                sum_sq[j] += f64::from(x) * f64::from(x);
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / rows).collect();
        let std = sum_sq
            .iter()
            .zip(&mean)
            .map(|(sq, m)| {
                let var = (sq / rows - m * m).max(0.0);
                let std = var.sqrt();
                if std > 1e-12 { std as f32 } else { 1.0 }
            })
            .collect();
        Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        }
    }

    /// Applies the standardisation to every row of `table`, in place.
    ///
    /// # Panics
    ///
    /// Panics if the table's feature count differs from the fitted one.
    pub fn apply(&self, table: &mut Table) {
        let n = table.num_features();
        assert_eq!(n, self.mean.len(), "feature count mismatch");
        for row in table.features.chunks_exact_mut(n) {
            for ((x, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *x = (*x - m) / s;
            }
        }
    }
}

/// Opens `path`, telling a missing file from one that cannot be read.
fn open(path: &Path) -> Result<std::fs::File, CsvError> {
    std::fs::File::open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            CsvError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            CsvError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

fn map_csv_error(path: &Path, source: csv::Error) -> CsvError {
    match source.kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => CsvError::FieldCount {
            path: path.to_path_buf(),
            line: pos.as_ref().map_or(0, csv::Position::line),
            expected: *expected_len,
            found: *len,
        },
        _ => CsvError::Malformed {
            path: path.to_path_buf(),
            line: source.position().map(csv::Position::line),
            source,
        },
    }
}
/// The columns a table is read from: the target's (if the header has it)
/// and the features', by name and position in the header.
struct Columns {
    target: Option<usize>,
    feature_names: Vec<String>,
    feature_indices: Vec<usize>,
}

impl Columns {
    /// Finds the config's columns in `header`: the target (required unless
    /// `target_required` is false), the features (by default every other
    /// column), none repeated and none the target.
    fn resolve(
        header: &[String],
        config: &TableConfig,
        target_required: bool,
        path: &Path,
    ) -> Result<Self, CsvError> {
        let find = |column: &str| {
            header
                .iter()
                .position(|h| h == column)
                .ok_or_else(|| CsvError::MissingColumn {
                    path: path.to_path_buf(),
                    column: column.to_string(),
                    available: header.to_vec(),
                })
        };
        let target = match find(&config.target) {
            Ok(index) => Some(index),
            Err(_) if !target_required => None,
            Err(e) => return Err(e),
        };
        let feature_names: Vec<String> = if config.features.is_empty() {
            header
                .iter()
                .enumerate()
                .filter(|&(i, _)| Some(i) != target)
                .map(|(_, h)| h.clone())
                .collect()
        } else {
            config.features.clone()
        };
        if feature_names.is_empty() {
            return Err(CsvError::NoFeatures {
                path: path.to_path_buf(),
            });
        }
        let repeated = (1..feature_names.len())
            .find(|&i| feature_names[..i].contains(&feature_names[i]))
            .map(|i| &feature_names[i]);
        if let Some(column) = repeated {
            return Err(CsvError::DuplicateFeature {
                path: path.to_path_buf(),
                column: column.clone(),
            });
        }
        if let Some(column) = feature_names.iter().find(|f| **f == config.target) {
            return Err(CsvError::TargetIsFeature {
                path: path.to_path_buf(),
                column: column.clone(),
            });
        }
        let feature_indices = feature_names
            .iter()
            .map(|f| find(f))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Columns {
            target,
            feature_names,
            feature_indices,
        })
    }
}
