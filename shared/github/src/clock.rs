//! GitHub's clock, estimated from the `Date` header of its answers.

use std::{
    sync::atomic::{AtomicI64, Ordering},
    time::{Duration, SystemTime},
};

/// `Date` has one-second resolution; differences below this are noise.
const NOISE_MS: i64 = 2_000;

/// Tracks the offset between GitHub's clock and ours, so JWT claims are valid
/// on GitHub's side and `expires_at` maps onto our clock even when the local
/// clock is skewed.
#[derive(Debug, Default)]
pub struct ServerClock {
    offset_ms: AtomicI64,
}

impl ServerClock {
    /// A clock that starts assuming no skew.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the `Date` header of a GitHub answer; returns true when the
    /// estimate changed.
    pub fn observe(&self, date_header: &str) -> bool {
        let Ok(server) = httpdate::parse_http_date(date_header) else {
            return false;
        };
        let offset = signed_ms(server, SystemTime::now());
        let offset = if offset.abs() < NOISE_MS { 0 } else { offset };
        let previous = self.offset_ms.swap(offset, Ordering::Relaxed);
        (previous - offset).abs() >= NOISE_MS
    }

    /// GitHub's clock minus ours, in milliseconds.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// Now, on GitHub's clock.
    pub fn server_now(&self) -> SystemTime {
        shift(SystemTime::now(), self.offset_ms())
    }

    /// Converts a time on GitHub's clock to ours.
    pub fn to_local(&self, server_time: SystemTime) -> SystemTime {
        shift(server_time, -self.offset_ms())
    }
}

fn signed_ms(a: SystemTime, b: SystemTime) -> i64 {
    match a.duration_since(b) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

fn shift(t: SystemTime, ms: i64) -> SystemTime {
    if ms >= 0 {
        t + Duration::from_millis(ms as u64)
    } else {
        t - Duration::from_millis(ms.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_and_applies_skew() {
        let clock = ServerClock::new();
        let ahead = SystemTime::now() + Duration::from_secs(900);
        assert!(clock.observe(&httpdate::fmt_http_date(ahead)));
        let offset = clock.offset_ms();
        assert!((898_000..=900_000).contains(&offset), "{offset}");
        let local = clock.to_local(ahead);
        let diff = signed_ms(local, SystemTime::now()).abs();
        assert!(diff < 2_000, "{diff}");
        // A Date within the noise band resets to no skew.
        assert!(clock.observe(&httpdate::fmt_http_date(SystemTime::now())));
        assert_eq!(clock.offset_ms(), 0);
        assert!(!clock.observe("not a date"));
    }
}
