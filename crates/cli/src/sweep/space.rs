//! The searched space: `--param` specs, the grid or the random draws.

use burnfit_callbacks::tensorboard::HParamValue;

use crate::error::{CliError, CliResult};

/// One trial's parameters: `(key.path, value)` pairs, applied with `--set`.
pub type TrialParams = Vec<(String, toml::Value)>;

/// `--set` arguments for a trial's parameters.
pub fn sets(trial: &TrialParams) -> Vec<String> {
    trial.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// One searched dimension.
#[derive(Clone, Debug)]
pub enum Space {
    /// A list of values (a grid axis, or drawn from at random).
    Values(Vec<toml::Value>),
    /// Uniform between two numbers.
    Uniform(f64, f64),
    /// Uniform in the logarithm between two positive numbers.
    LogUniform(f64, f64),
}

/// Refuses a key searched by two `--param`s: each trial would set it
/// twice, and only the last value would count.
pub fn check_keys_once(space: &[(String, Space)]) -> CliResult<()> {
    for (index, (key, _)) in space.iter().enumerate() {
        if space[..index].iter().any(|(earlier, _)| earlier == key) {
            return Err(CliError::usage(format!(
                "--param {key}: the key is searched by another --param already; give its values \
                 in one list"
            )));
        }
    }
    Ok(())
}

/// Parses `key.path=[v1,v2]`, `key.path=uniform(lo,hi)` or
/// `key.path=loguniform(lo,hi)`.
pub fn parse_param(spec: &str) -> CliResult<(String, Space)> {
    let (key, raw) = spec.split_once('=').ok_or_else(|| {
        CliError::usage(format!(
            "--param {spec}: expected key.path=[v1,v2] or key.path=loguniform(lo,hi)"
        ))
    })?;
    let raw = raw.trim();
    let range = |name: &str| -> Option<CliResult<(f64, f64)>> {
        let inner = raw
            .strip_prefix(name)?
            .strip_prefix('(')?
            .strip_suffix(')')?;
        let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
        Some(match parts.as_slice() {
            [lo, hi] => match (lo.parse::<f64>(), hi.parse::<f64>()) {
                (Ok(lo), Ok(hi)) if lo < hi => Ok((lo, hi)),
                _ => Err(CliError::usage(format!(
                    "--param {spec}: {name}(lo, hi) needs two numbers with lo < hi"
                ))),
            },
            _ => Err(CliError::usage(format!(
                "--param {spec}: {name}(lo, hi) needs two numbers"
            ))),
        })
    };
    let space = if let Some(r) = range("loguniform") {
        let (lo, hi) = r?;
        if lo <= 0.0 {
            return Err(CliError::usage(format!(
                "--param {spec}: loguniform needs lo > 0"
            )));
        }
        Space::LogUniform(lo, hi)
    } else if let Some(r) = range("uniform") {
        let (lo, hi) = r?;
        Space::Uniform(lo, hi)
    } else {
        match crate::config::parse_value(raw) {
            toml::Value::Array(values) if !values.is_empty() => Space::Values(values),
            _ => {
                return Err(CliError::usage(format!(
                    "--param {spec}: values must be a list like [1e-3, 3e-4] or loguniform(lo, hi)"
                )));
            }
        }
    };
    Ok((key.trim().to_string(), space))
}

/// SplitMix64: small, seedable, enough for drawing trials.
struct Draw(u64);

impl Draw {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Every combination (a grid), or `random` draws from the ranges.
pub fn trials(
    space: &[(String, Space)],
    random: Option<usize>,
    seed: u64,
) -> CliResult<Vec<TrialParams>> {
    match random {
        None => {
            let mut out: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
            for (key, dim) in space {
                let Space::Values(values) = dim else {
                    return Err(CliError::usage(format!(
                        "--param {key}: a range needs --random N (a grid needs a list of values)"
                    )));
                };
                out = out
                    .into_iter()
                    .flat_map(|trial| {
                        values.iter().map(move |v| {
                            let mut t = trial.clone();
                            t.push((key.clone(), v.clone()));
                            t
                        })
                    })
                    .collect();
            }
            Ok(out)
        }
        Some(n) => {
            let mut draw = Draw(seed);
            Ok((0..n)
                .map(|_| {
                    space
                        .iter()
                        .map(|(key, dim)| {
                            let u = draw.next_f64();
                            let value = match dim {
                                Space::Values(values) => values
                                    [((u * values.len() as f64) as usize).min(values.len() - 1)]
                                .clone(),
                                Space::Uniform(lo, hi) => toml::Value::Float(lo + u * (hi - lo)),
                                Space::LogUniform(lo, hi) => {
                                    toml::Value::Float((lo.ln() + u * (hi.ln() - lo.ln())).exp())
                                }
                            };
                            (key.clone(), value)
                        })
                        .collect()
                })
                .collect())
        }
    }
}

/// A parameter value as TensorBoard's hparams plugin shows it.
pub fn hparam(value: &toml::Value) -> HParamValue {
    match value {
        toml::Value::Integer(i) => HParamValue::Number(*i as f64),
        toml::Value::Float(f) => HParamValue::Number(*f),
        toml::Value::Boolean(b) => HParamValue::Bool(*b),
        toml::Value::String(s) => HParamValue::Text(s.clone()),
        other => HParamValue::Text(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_and_random_trials() {
        let space = vec![
            parse_param("optimizer.lr=[1e-4, 1e-3]").unwrap(),
            parse_param("training.batch_size=[32,64]").unwrap(),
        ];
        let grid = trials(&space, None, 0).unwrap();
        assert_eq!(grid.len(), 4);
        assert_eq!(grid[3][1].1, toml::Value::Integer(64));
        let space = vec![parse_param("optimizer.lr=loguniform(1e-5,1e-2)").unwrap()];
        let drawn = trials(&space, Some(20), 7).unwrap();
        assert_eq!(drawn, trials(&space, Some(20), 7).unwrap(), "seeded");
        for t in drawn {
            let v = t[0].1.as_float().unwrap();
            assert!((1e-5..=1e-2).contains(&v));
        }
        assert!(trials(&space, None, 0).is_err(), "a range needs --random");
        assert!(parse_param("optimizer.lr=loguniform(0,1)").is_err());
        assert!(parse_param("optimizer.lr").is_err());
        let twice = vec![
            parse_param("optimizer.lr=[1e-3]").unwrap(),
            parse_param("optimizer.lr=[2e-3]").unwrap(),
        ];
        let error = check_keys_once(&twice).unwrap_err();
        assert!(error.message().contains("--param optimizer.lr"), "{error}");
        assert!(check_keys_once(&twice[..1]).is_ok());
    }
}
