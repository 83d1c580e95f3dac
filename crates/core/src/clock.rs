//! Wall-clock time, as every layer stores and compares it: milliseconds
//! since the Unix epoch. A leaf: it depends on nothing in the crate.

/// Milliseconds since the Unix epoch (0 on a clock set before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
