//! [`ModelSummary`]: print the model's parameter table when training
//! begins (Lightning's `ModelSummary`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::callback::Callback;
use crate::context::{Context, ParamInfo, ParamRead};
use crate::error::Result;

const NAME: &str = "ModelSummary";

/// The parameters of [`ModelSummary`], with Lightning's names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSummaryConfig {
    /// How many levels of the module tree get a row (default 1: the
    /// model's direct children); `-1` lists every parameter.
    pub max_depth: i64,
}

impl Default for ModelSummaryConfig {
    fn default() -> Self {
        Self { max_depth: 1 }
    }
}

/// Prints, at train begin, one row per module down to `max_depth` with its
/// parameter count (buffers such as BatchNorm statistics included; at the
/// leaves, each parameter's shape), then the trainable, non-trainable and
/// total counts and the size of the parameters in 32-bit floats:
///
/// ```text
///   | Name   | Params | Shape
/// ----------------------------------
/// 0 | conv1  | 320    |
/// 1 | linear | 7.9 K  |
/// ----------------------------------
/// 8.2 K     Trainable params
/// 0         Non-trainable params
/// 8.2 K     Total params
/// 0.033     Total estimated model params size (MB)
/// ```
///
/// It reads paths and shapes from the model snapshot, which the Burn glue
/// can list for any model; elsewhere (a snapshot that cannot list its
/// parameters) it warns and prints nothing.
#[derive(Clone, Debug, Default)]
pub struct ModelSummary {
    config: ModelSummaryConfig,
    table: Option<String>,
}

impl ModelSummary {
    /// The callback.
    pub fn new(config: ModelSummaryConfig) -> Self {
        Self {
            config,
            table: None,
        }
    }

    /// The table printed at train begin (`None` before).
    pub fn table(&self) -> Option<&str> {
        self.table.as_deref()
    }
}

/// `1234` → `"1.2 K"`, as Lightning writes counts.
pub fn human_count(n: usize) -> String {
    let units = ["", " K", " M", " B", " T"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}")
    } else {
        format!("{value:.1}{}", units[unit])
    }
}

/// The summary table of `params`, grouped to `max_depth` levels.
pub fn summary_table(params: &[ParamInfo], max_depth: i64) -> String {
    // Rows in first-seen order: (name, count, shape of a lone leaf).
    let mut order: Vec<String> = Vec::new();
    let mut rows: BTreeMap<String, (usize, Option<Vec<usize>>)> = BTreeMap::new();
    for param in params {
        let segments: Vec<&str> = param.path.split('/').collect();
        let depth = if max_depth < 0 {
            segments.len()
        } else {
            (max_depth as usize).clamp(1, segments.len())
        };
        let name = segments[..depth].join("/");
        let leaf = depth == segments.len();
        let row = rows.entry(name.clone()).or_insert_with(|| {
            order.push(name.clone());
            (0, None)
        });
        row.0 += param.numel();
        row.1 = leaf.then(|| param.shape.clone());
    }
    let total: usize = params.iter().map(ParamInfo::numel).sum();
    let trainable: usize = params
        .iter()
        .filter(|p| p.trainable)
        .map(ParamInfo::numel)
        .sum();
    let name_width = order.iter().map(String::len).max().unwrap_or(0).max(4);
    let counts: Vec<String> = order.iter().map(|n| human_count(rows[n].0)).collect();
    let count_width = counts.iter().map(String::len).max().unwrap_or(0).max(6);
    let index_width = order.len().saturating_sub(1).to_string().len();
    let mut lines = vec![format!(
        "{:index_width$} | {:name_width$} | {:count_width$} | Shape",
        "", "Name", "Params"
    )];
    let rule = "-".repeat(lines[0].len() + 10);
    lines.push(rule.clone());
    for (i, (name, count)) in order.iter().zip(&counts).enumerate() {
        let shape = rows[name]
            .1
            .as_ref()
            .map(|s| format!("{s:?}"))
            .unwrap_or_default();
        lines.push(
            format!("{i:index_width$} | {name:name_width$} | {count:count_width$} | {shape}")
                .trim_end()
                .to_string(),
        );
    }
    lines.push(rule);
    lines.push(format!("{:<10}Trainable params", human_count(trainable)));
    lines.push(format!(
        "{:<10}Non-trainable params",
        human_count(total - trainable)
    ));
    lines.push(format!("{:<10}Total params", human_count(total)));
    lines.push(format!(
        "{:<10.3}Total estimated model params size (MB)",
        total as f64 * 4.0 / 1e6
    ));
    lines.join("\n")
}

impl Callback for ModelSummary {
    fn name(&self) -> String {
        NAME.into()
    }

    fn on_train_begin(&mut self, ctx: &mut Context) -> Result<()> {
        match ctx.snapshot_model().params(ParamRead::Shapes) {
            Some(params) => {
                let table = summary_table(&params, self.config.max_depth);
                ctx.info(table.clone());
                self.table = Some(table);
            }
            None => ctx.warn(format!(
                "{NAME}: this training loop cannot list the model's parameters"
            )),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(path: &str, shape: &[usize]) -> ParamInfo {
        ParamInfo {
            path: path.into(),
            shape: shape.to_vec(),
            trainable: !path.contains("running"),
            values: None,
        }
    }

    #[test]
    fn rows_group_to_max_depth_and_totals_add_up() {
        let params = [
            param("conv1/weight", &[8, 1, 3, 3]),
            param("conv1/bias", &[8]),
            param("head/linear/weight", &[100, 10]),
            param("bn/running_mean", &[8]),
        ];
        let table = summary_table(&params, 1);
        assert!(table.contains("0 | conv1"), "{table}");
        assert!(table.contains("| 80 "), "{table}");
        assert!(table.contains("1.1 K     Trainable params"), "{table}");
        assert!(table.contains("8         Non-trainable params"), "{table}");
        assert!(table.contains("1.1 K     Total params"), "{table}");
        let deep = summary_table(&params, -1);
        assert!(
            deep.contains("head/linear/weight | 1.0 K  | [100, 10]"),
            "{deep}"
        );
        assert_eq!(human_count(999), "999");
        assert_eq!(human_count(1_234_567), "1.2 M");
    }
}
