//! Property tests for the activity summary: whatever events arrive, and however they are split
//! between replicas' deltas, `status.activity` stays within its caps and the totals add up.
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

use kubepim::policy::activity::{Limits, Use, empty, merge, record};

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_780_000_000 + s, 0).unwrap()
}

fn a_use() -> impl Strategy<Value = Use> {
    (
        prop::sample::select(vec![
            "get", "list", "watch", "create", "update", "patch", "delete",
        ]),
        // Many more resources and namespaces than the caps allow.
        "[a-z]{1,6}(/exec|/token)?",
        prop::option::of("[a-z]{1,8}"),
        0i64..100_000,
        prop::sample::select(vec![200, 201, 403, 404, 500]),
    )
        .prop_map(|(verb, resource, namespace, at, code)| Use {
            at: t(at),
            verb: verb.into(),
            resource: if resource.starts_with('s') {
                "secrets".into()
            } else {
                resource
            },
            namespace,
            name: Some("n".into()),
            code: Some(code),
            audit_id: "a".repeat(36),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_summary_stays_bounded_and_adds_up(
        uses in prop::collection::vec(a_use(), 0..600),
        split in 0usize..600,
    ) {
        let limits = Limits::default();
        let mut whole = empty();
        for u in &uses {
            record(&mut whole, u, limits);
        }
        prop_assert!(whole.counts.len() <= limits.count_keys);
        prop_assert!(whole.namespaces.len() <= limits.namespaces);
        prop_assert!(whole.notable_writes.len() <= limits.notable_writes);
        prop_assert_eq!(whole.requests, uses.len() as i64);
        prop_assert_eq!(whole.counts.values().sum::<i64>(), whole.requests);
        prop_assert_eq!(
            whole.denied,
            uses.iter().filter(|u| u.code == Some(403)).count() as i64
        );
        // The stored form is small whatever came in.
        let json = serde_json::to_vec(&whole).unwrap();
        prop_assert!(json.len() < 16 * 1024, "{} bytes", json.len());

        // Two deltas (two replicas, or two flushes) merged give the same totals and bounds.
        let split = split.min(uses.len());
        let (mut a, mut b) = (empty(), empty());
        for u in &uses[..split] {
            record(&mut a, u, limits);
        }
        for u in &uses[split..] {
            record(&mut b, u, limits);
        }
        merge(&mut a, &b, limits);
        prop_assert_eq!(a.requests, whole.requests);
        prop_assert_eq!(a.denied, whole.denied);
        prop_assert_eq!(&a.first_use, &whole.first_use);
        prop_assert_eq!(&a.last_use, &whole.last_use);
        prop_assert_eq!(a.counts.values().sum::<i64>(), whole.requests);
        prop_assert!(a.counts.len() <= limits.count_keys);
        prop_assert!(a.namespaces.len() <= limits.namespaces);
        prop_assert!(a.notable_writes.len() <= limits.notable_writes);
        prop_assert_eq!(
            a.notable_writes.len() as i64 + a.notable_writes_dropped,
            whole.notable_writes.len() as i64 + whole.notable_writes_dropped
        );
    }
}
