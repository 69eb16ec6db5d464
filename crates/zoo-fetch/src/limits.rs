//! Every network read has limits: a connect timeout, a stall timeout (no data at all for that
//! long) and a low-speed limit (fewer than `low_speed_bytes` per second over a whole
//! `low_speed_window`, as curl's `--speed-limit`/`--speed-time`). A server that accepts and
//! never answers, sends headers and no body, or drips a byte a second fails within them.

use std::time::{Duration, Instant};

/// Defaults: 30 s to connect, 30 s without any data, under 1 KiB/s for 30 s.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetLimits {
    pub connect: Duration,
    pub stall: Duration,
    pub low_speed_bytes: u64,
    pub low_speed_window: Duration,
}

impl Default for NetLimits {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(30),
            stall: Duration::from_secs(30),
            low_speed_bytes: 1024,
            low_speed_window: Duration::from_secs(30),
        }
    }
}

impl NetLimits {
    /// The defaults, overridden by `ZOO_FETCH_TIMEOUT` (seconds, connect and stall),
    /// `ZOO_LOW_SPEED_LIMIT` (bytes per second, 0 turns the check off) and
    /// `ZOO_LOW_SPEED_TIME` (seconds).
    pub fn from_env() -> Self {
        let secs = |key: &str| {
            std::env::var(key)
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| *v > 0.0 && v.is_finite())
                .map(Duration::from_secs_f64)
        };
        let mut limits = Self::default();
        if let Some(t) = secs("ZOO_FETCH_TIMEOUT") {
            limits.connect = t;
            limits.stall = t;
        }
        if let Some(b) = std::env::var("ZOO_LOW_SPEED_LIMIT")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            limits.low_speed_bytes = b;
        }
        if let Some(t) = secs("ZOO_LOW_SPEED_TIME") {
            limits.low_speed_window = t;
        }
        limits
    }
}

/// Watches a transfer's progress against the limits.
pub(crate) struct Watch {
    limits: NetLimits,
    /// The most bytes the transfer may bring (a card's size): an endless body is cut there.
    cap: Option<u64>,
    last_data: Instant,
    window_start: Instant,
    window_bytes: u64,
    total: u64,
}

impl Watch {
    /// A watch that also gives up past `cap` bytes.
    pub(crate) fn capped(limits: NetLimits, cap: Option<u64>) -> Self {
        let now = Instant::now();
        Self {
            limits,
            cap,
            last_data: now,
            window_start: now,
            window_bytes: 0,
            total: 0,
        }
    }

    /// Records that the transfer has `done` bytes now.
    pub(crate) fn progress(&mut self, done: u64) {
        if done > self.total {
            self.window_bytes += done - self.total;
            self.total = done;
            self.last_data = Instant::now();
        }
    }

    /// Why the transfer must be given up, if it must.
    pub(crate) fn verdict(&mut self) -> Option<String> {
        if let Some(cap) = self.cap.filter(|&cap| self.total > cap) {
            return Some(format!(
                "the server sent more than the {cap} bytes expected (the card's size); stopped at {} bytes",
                self.total
            ));
        }
        let now = now();
        if now.duration_since(self.last_data) >= self.limits.stall {
            return Some(format!(
                "no data for {:.0} s after {} bytes (stalled; ZOO_FETCH_TIMEOUT sets the limit)",
                self.limits.stall.as_secs_f64(),
                self.total
            ));
        }
        let window = now.duration_since(self.window_start);
        if self.limits.low_speed_bytes > 0 && window >= self.limits.low_speed_window {
            let rate = self.window_bytes as f64 / window.as_secs_f64();
            if rate < self.limits.low_speed_bytes as f64 {
                return Some(format!(
                    "too slow: {rate:.0} bytes/s over the last {:.0} s, below {} bytes/s (ZOO_LOW_SPEED_LIMIT / ZOO_LOW_SPEED_TIME set the limit)",
                    window.as_secs_f64(),
                    self.limits.low_speed_bytes
                ));
            }
            self.window_start = now;
            self.window_bytes = 0;
        }
        None
    }
}

fn now() -> Instant {
    Instant::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_and_a_drip_are_both_caught() {
        let limits = NetLimits {
            connect: Duration::from_millis(50),
            stall: Duration::from_millis(50),
            low_speed_bytes: 1000,
            low_speed_window: Duration::from_millis(80),
        };
        let mut stalled = Watch::capped(limits, None);
        std::thread::sleep(Duration::from_millis(60));
        assert!(stalled.verdict().unwrap().contains("stalled"));
        let mut drip = Watch::capped(limits, None);
        for i in 1..=5 {
            std::thread::sleep(Duration::from_millis(20));
            drip.progress(i);
        }
        assert!(drip.verdict().unwrap().contains("too slow"));
        let mut endless = Watch::capped(limits, Some(100));
        endless.progress(100);
        assert!(endless.verdict().is_none());
        endless.progress(101);
        assert!(endless
            .verdict()
            .unwrap()
            .contains("more than the 100 bytes"));
        let mut fast = Watch::capped(limits, None);
        fast.progress(1 << 20);
        assert!(fast.verdict().is_none());
    }
}
