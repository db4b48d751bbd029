//! Per-key throttling of trigger streams.
//!
//! The PrivilegedRole and Eligibility statuses count requests (`activeGrants`, `activations`), so
//! request changes trigger their reconcilers. A burst of activations is many request events for
//! one role; passing each on would make as many status writes. A throttled key passes at once,
//! then at most once per period, and a key held back always passes once the period is over: the
//! status settles within one period of the last change, and an idle cluster has nothing left to
//! write. (The controller's own debounce restarts its wait on every event, so under steady churn
//! it would hold a status back for as long as the churn lasts.)
use std::collections::HashMap;
use std::hash::Hash;
use std::pin::Pin;
use std::time::Duration;

use futures::stream::{Fuse, FusedStream, Stream, StreamExt};
use tokio::time::Instant;

struct State<T, S> {
    input: Fuse<Pin<Box<S>>>,
    period: Duration,
    /// When each key last passed, kept for one period.
    passed: HashMap<T, Instant>,
    /// Keys that arrived within a period of passing, and when they may pass again.
    held: HashMap<T, Instant>,
}

impl<T: Hash + Eq + Clone, S: Stream<Item = T>> State<T, S> {
    /// A key that arrives: passes now (`Some`) or is held.
    fn arrive(&mut self, key: T, now: Instant) -> Option<T> {
        if self.held.contains_key(&key) {
            return None;
        }
        let period = self.period;
        self.passed.retain(|_, at| now.duration_since(*at) < period);
        match self.passed.get(&key) {
            Some(at) => {
                self.held.insert(key, *at + period);
                None
            }
            None => {
                self.passed.insert(key.clone(), now);
                Some(key)
            }
        }
    }

    /// A held key whose time has come, if any.
    fn due(&mut self, now: Instant) -> Option<T> {
        let key = self
            .held
            .iter()
            .find(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())?;
        self.held.remove(&key);
        self.passed.insert(key.clone(), now);
        Some(key)
    }
}

/// `input`, each key passed on at most once per `period`; a key that arrives again within the
/// period passes once when it is over. Ends when `input` has ended and nothing is held.
pub fn throttle<T, S>(input: S, period: Duration) -> impl Stream<Item = T>
where
    T: Hash + Eq + Clone,
    S: Stream<Item = T>,
{
    let state = State {
        input: Box::pin(input).fuse(),
        period,
        passed: HashMap::new(),
        held: HashMap::new(),
    };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            let now = Instant::now();
            if let Some(key) = state.due(now) {
                return Some((key, state));
            }
            let next_due = state.held.values().min().copied();
            if state.input.is_terminated() {
                tokio::time::sleep_until(next_due?).await;
                continue;
            }
            tokio::select! {
                item = state.input.next() => {
                    if let Some(key) = item.and_then(|key| state.arrive(key, Instant::now())) {
                        return Some((key, state));
                    }
                }
                _ = tokio::time::sleep_until(next_due.unwrap_or(now)), if next_due.is_some() => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    /// What passed, with the time (ms since the start) it passed at.
    async fn run(events: Vec<(u64, &'static str)>, period_ms: u64) -> Vec<(u64, &'static str)> {
        let start = Instant::now();
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for (at, key) in events {
                tokio::time::sleep_until(start + Duration::from_millis(at)).await;
                let _ = tx.send(key);
            }
        });
        let input = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        throttle(input, Duration::from_millis(period_ms))
            .map(|key| (start.elapsed().as_millis() as u64, key))
            .collect()
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_once_at_once_and_once_when_the_period_is_over() {
        let passed = run(vec![(0, "a"), (10, "a"), (20, "a"), (30, "a")], 500).await;
        assert_eq!(passed, vec![(0, "a"), (500, "a")]);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_throttled_apart() {
        let passed = run(vec![(0, "a"), (10, "b"), (20, "a"), (30, "b")], 500).await;
        assert_eq!(passed, vec![(0, "a"), (10, "b"), (500, "a"), (510, "b")]);
    }

    #[tokio::test(start_paused = true)]
    async fn steady_churn_still_passes_once_per_period() {
        // An event every 100 ms for 2 s: a debounce would hold it back until the end.
        let events = (0..20).map(|i| (i * 100, "a")).collect();
        let passed = run(events, 500).await;
        let times: Vec<u64> = passed.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, vec![0, 500, 1000, 1500, 2000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_quiet_for_a_period_passes_at_once_again() {
        let passed = run(vec![(0, "a"), (700, "a")], 500).await;
        assert_eq!(passed, vec![(0, "a"), (700, "a")]);
    }
}
