//! How soon a failed watch is tried again.
//!
//! kube's default doubles from 800 ms to 30 s. Under API-server restarts a few seconds apart the
//! caches then spend most of their time backing off, and every decision waits for them: the fault
//! soak saw revocations 10–15 s late for exactly this reason. Revocation is retried with a backoff
//! capped at a few seconds, and so are the watches it depends on.
use std::time::Duration;

use kube::runtime::utils::Backoff;

/// Doubles from [`WatchBackoff::FIRST`] up to [`WatchBackoff::CAP`]; an event received resets it.
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    pub const FIRST: Duration = Duration::from_millis(200);
    pub const CAP: Duration = Duration::from_secs(4);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    // Never ends: a watch is retried for as long as the process runs.
    fn next(&mut self) -> Option<Duration> {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::CAP);
        Some(wait)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_starts_over_after_a_reset() {
        let mut backoff = WatchBackoff::default();
        let waits: Vec<u64> = backoff
            .by_ref()
            .take(8)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 4000, 4000, 4000]);
        backoff.reset();
        assert_eq!(backoff.next(), Some(Duration::from_millis(200)));
    }
}
