//! The memory budget (`--memory-budget`): how much a run may hold in decoded images and cached
//! features. Images that do not fit half of it are streamed from disk, features that do not fit
//! the other half spill to a file. The model itself is not the budget's: one whose weights,
//! gradients and optimizer state alone exceed the memory available is refused before training.

/// Used when the machine's available memory cannot be read (not Linux).
const FALLBACK_BUDGET: u64 = 4 << 30;

/// The default budget: half of the memory available now (the smaller of the kernel's
/// `MemAvailable` and what the cgroup still allows), so other programs and the allocator's
/// slack keep the rest.
pub fn default_budget() -> u64 {
    available_bytes().map_or(FALLBACK_BUDGET, |bytes| bytes / 2)
}

/// Memory this process could still take: `MemAvailable`, capped by a cgroup v2 limit.
pub fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let available = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })?
        * 1024;
    let cgroup = |name: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{name}"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    let left_in_cgroup = match (cgroup("memory.max"), cgroup("memory.current")) {
        (Some(max), Some(current)) => Some(max.saturating_sub(current)),
        _ => None,
    };
    Some(left_in_cgroup.map_or(available, |left| left.min(available)))
}

/// `400M`, `1.5G`, `2GiB`, `123456` (bytes): K, M, G, T are powers of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    let unit = unit.trim().to_ascii_uppercase();
    let scale: u64 = match unit.trim_end_matches("IB").trim_end_matches('B') {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => {
            return Err(format!(
                "`{text}` is not a size (use e.g. 400M, 1.5G or bytes)"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (use e.g. 400M, 1.5G or bytes)"))?;
    let bytes = value * scale as f64;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("`{text}` is not a usable size"));
    }
    Ok(bytes as u64)
}

/// `1.5 GB`, `400 MB`, `12 KB` (powers of 1024, one decimal).
pub fn human(bytes: u64) -> String {
    let units = [
        ("TB", 1u64 << 40),
        ("GB", 1 << 30),
        ("MB", 1 << 20),
        ("KB", 1 << 10),
    ];
    for (name, size) in units {
        if bytes >= size {
            return format!("{:.1} {name}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes} B")
}

/// Bytes training holds for a model whatever the data: every weight, the frozen ones' copy the
/// freeze audit compares against, and for each trainable weight its gradient and up to two
/// optimizer moments.
pub fn model_bytes(trainable_params: usize, frozen_params: usize) -> u64 {
    4 * (2 * frozen_params as u64 + 4 * trainable_params as u64)
}

/// Whether a model needing `needed` bytes to train fits in `available` (unknown: assumed to).
pub fn check_model_fits(needed: u64, available: Option<u64>) -> Result<(), String> {
    match available {
        Some(available) if needed > available => Err(format!(
            "needs about {} for its weights, gradients and optimizer state, more than this machine has available ({})",
            human(needed),
            human(available)
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_powers_of_1024_and_nonsense_is_refused() {
        assert_eq!(parse_size("400M"), Ok(400 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("64kb"), Ok(64 << 10));
        assert_eq!(parse_size("123456"), Ok(123_456));
        for bad in ["", "M", "12X", "-1G", "0", "1e400"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(human(400 << 20), "400.0 MB");
        assert_eq!(human(3 << 29), "1.5 GB");
        assert_eq!(human(17), "17 B");
    }

    #[test]
    fn a_model_larger_than_the_memory_available_is_refused_naming_both_sizes() {
        let refused = check_model_fits(3 << 30, Some(2 << 30)).unwrap_err();
        assert!(refused.contains("about 3.0 GB"), "{refused}");
        assert!(refused.contains("available (2.0 GB)"), "{refused}");
        assert_eq!(check_model_fits(2 << 30, Some(2 << 30)), Ok(()));
        assert_eq!(check_model_fits(u64::MAX, None), Ok(()));
    }

    #[test]
    fn the_default_budget_is_some_of_this_machines_memory() {
        let budget = default_budget();
        assert!(budget > 0);
        if let Some(available) = available_bytes() {
            assert!(budget <= available, "{budget} of {available}");
        }
    }
}
