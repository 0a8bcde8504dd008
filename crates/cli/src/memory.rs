//! The memory this machine has free, and sizes as a message shows them:
//! for the checks that refuse, before anything is created, work that
//! would end in an allocation failure and a backtrace.

/// `MemAvailable` of `/proc/meminfo`, in bytes; `None` where it cannot be
/// read (then nothing is checked).
pub fn available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// `bytes` in GiB or TiB, for a message.
pub fn shown(bytes: u128) -> String {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    if gib >= 1024.0 {
        format!("{:.1} TiB", gib / 1024.0)
    } else {
        format!("{gib:.1} GiB")
    }
}
