//! Kernels compiled for wider vectors where the CPU has them.
//!
//! The crate's baseline on x86-64 is SSE2 (4-lane `f32` vectors). [`wide!`]
//! wraps an `#[inline(always)]` body in a function that runs it compiled
//! for AVX2 (8 lanes) when the CPU has AVX2, and as it is otherwise: the
//! same arithmetic either way, so the same values.

/// Defines `$name`, which runs `$body` (an `#[inline(always)]` function)
/// compiled for AVX2 where the CPU has it, so that its loops use 8-lane
/// vectors (the crate's baseline, SSE2, has 4). The same arithmetic either
/// way, so the same values.
macro_rules! wide {
    ($vis:vis $name:ident => $body:ident ($($arg:ident: $ty:ty),* $(,)?)) => {
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                // SAFETY: the CPU has AVX2.
                return unsafe { avx2($($arg),*) };
            }
            $body($($arg),*)
        }
    };
}

pub(crate) use wide;
