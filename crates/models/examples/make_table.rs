//! Generates the committed regression table `data/tables/friedman1.csv`.
//!
//! ```text
//! cargo run -p burnfit-models --example make_table -- [OUT] [ROWS] [SEED]
//! ```
//!
//! The table follows the "Friedman #1" benchmark (J. H. Friedman, *Multivariate
//! Adaptive Regression Splines*, Annals of Statistics 19(1), 1991):
//!
//! ```text
//! y = 10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5 + e,   e ~ N(0, 1)
//! ```
//!
//! with `x1..x6` uniform on `[0, 1)`; `x6` does not enter `y` (a distractor).
//! Defaults: 500 rows, seed 20240601. The random numbers come from a
//! self-contained SplitMix64 generator and Box-Muller transform (not `rand`), so
//! the output never changes with dependency versions. Values are written with
//! 6 decimals.

use std::fmt::Write as _;
use std::path::PathBuf;

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-mixed 64-bit generator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform on `[0, 1)` with 53 random bits.
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal by Box-Muller.
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args.first().map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../data/tables/friedman1.csv"
            ))
        },
        PathBuf::from,
    );
    let rows: usize = args.get(1).map_or(Ok(500), |s| s.parse())?;
    let seed: u64 = args.get(2).map_or(Ok(20240601), |s| s.parse())?;

    let mut rng = SplitMix64(seed);
    let mut csv = String::from("x1,x2,x3,x4,x5,x6,y\n");
    for _ in 0..rows {
        let x: Vec<f64> = (0..6).map(|_| rng.uniform()).collect();
        let y = 10.0 * (std::f64::consts::PI * x[0] * x[1]).sin()
            + 20.0 * (x[2] - 0.5).powi(2)
            + 10.0 * x[3]
            + 5.0 * x[4]
            + rng.normal();
        for v in &x {
            write!(csv, "{v:.6},")?;
        }
        writeln!(csv, "{y:.6}")?;
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, csv)?;
    println!("wrote {rows} rows to {}", out.display());
    Ok(())
}
