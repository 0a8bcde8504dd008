//! Per-thread random streams, so that several devices can train at once and
//! still draw the same numbers on every run.
//!
//! Burn's random generators are process-wide: when two device workers draw
//! from them at the same time, which worker gets which numbers depends on
//! the scheduler. The engine therefore gives each worker thread a stream of
//! its own, seeded from the run's seed, the step and the device
//! ([`with_stream`]); model code that draws random numbers (a dropout mask)
//! takes its seeds from [`next_seed`] when a stream is set, and from Burn's
//! generator otherwise.
//!
//! Invariants, each with a test below:
//!
//! * **A stream is a pure function of its seed**: the same seed gives the
//!   same sequence of seeds, whatever other threads do.
//! * **A stream belongs to one thread and one scope**: outside
//!   [`with_stream`] (and on other threads) [`next_seed`] is `None`, and the
//!   previous stream is back when the scope ends, even by a panic.

use std::cell::Cell;

thread_local! {
    static STREAM: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Runs `f` with this thread's stream seeded from `seed` (`None`: no
/// stream, model code falls back to Burn's generator), then puts the
/// previous stream back.
pub fn with_stream<R>(seed: Option<u64>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<u64>);
    impl Drop for Restore {
        fn drop(&mut self) {
            STREAM.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(STREAM.with(|s| s.replace(seed)));
    f()
}

/// The next seed of this thread's stream, or `None` when no stream is set
/// (then draw from Burn's generator, which `Device::seed` controls).
pub fn next_seed() -> Option<u64> {
    STREAM.with(|stream| {
        let state = stream.get()?;
        let next = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        stream.set(Some(next));
        Some(split_mix(next))
    })
}

/// Whether this thread has a stream (model code that cannot use one, such
/// as a layer drawing from Burn's generator, may want to know).
pub fn has_stream() -> bool {
    STREAM.with(|s| s.get().is_some())
}

/// SplitMix64's output function: a well-spread 64-bit value from `z`.
fn split_mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_a_pure_function_of_its_seed() {
        let draw = |seed| with_stream(Some(seed), || [next_seed(), next_seed(), next_seed()]);
        let first = draw(5);
        let other = std::thread::spawn(move || draw(5)).join().unwrap();
        assert_eq!(first, other);
        assert!(first.iter().all(Option::is_some));
        assert_ne!(first[0], first[1]);
        assert_ne!(draw(6), first);
    }

    #[test]
    fn a_stream_belongs_to_one_thread_and_one_scope() {
        assert_eq!(next_seed(), None);
        with_stream(Some(1), || {
            assert!(has_stream());
            let elsewhere = std::thread::spawn(next_seed).join().unwrap();
            assert_eq!(elsewhere, None);
            with_stream(None, || assert_eq!(next_seed(), None));
            assert!(next_seed().is_some());
        });
        assert!(!has_stream());
        let _ = std::panic::catch_unwind(|| with_stream(Some(2), || panic!("inside")));
        assert_eq!(next_seed(), None);
    }
}
