//! Request-rate anomalies: requests per tenant in one-minute windows.

use std::collections::HashMap;
use std::sync::Mutex;

/// Requests per tenant in fixed one-minute windows, in this replica's memory.
#[derive(Debug, Default)]
pub struct RateCounter {
    windows: Mutex<HashMap<String, (i64, u64)>>,
}

impl RateCounter {
    /// Count a request of `tenant` at `unix_seconds`; returns the count in
    /// its minute, this request included.
    pub fn hit(&self, tenant: &str, unix_seconds: i64) -> u64 {
        let minute = unix_seconds.div_euclid(60);
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        // Keep the map from growing with tenants long gone.
        if windows.len() > 10_000 {
            windows.retain(|_, (m, _)| *m == minute);
        }
        let entry = windows.entry(tenant.to_owned()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        entry.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_windows_reset_each_minute() {
        let counter = RateCounter::default();
        assert_eq!(counter.hit("acme", 120), 1);
        assert_eq!(counter.hit("acme", 179), 2);
        assert_eq!(counter.hit("beta", 179), 1);
        assert_eq!(counter.hit("acme", 180), 1);
    }
}
