//! Access review fill benchmark (pure, no cluster): the time to fill a review's items from
//! 5,000 eligibilities and 50,000 historical requests, the memory the fill takes (peak RSS above
//! the RSS before it), and the size of the status it produces (an object must stay under etcd's
//! 1.5 MiB limit).
//!
//!     cargo bench --bench review
//!     KUBEPIM_REVIEW_ELIGIBILITIES=5000 KUBEPIM_REVIEW_REQUESTS=50000 cargo bench --bench review
//!
//! The data: 500 roles, each eligibility names one user (10,000 users in all, two per eligibility
//! on average across the history) and every tenth also a group; the requests are spread over 180
//! days, so about half fall in the 90-day lookback, each approved by one of 50 approvers; the
//! last fifth of the eligibilities has no request at all (their items recommend removal). Five
//! fills: every eligibility (capped at `MAX_ITEMS`, the rest counted), and each quarter of the roles
//! (what a team splitting a big review by role would run).
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubepim::api::{
    AccessReviewSpec, AccessReviewStatus, ActivationRequestSpec, ActivationRequestStatus, Approval,
    Decision, Eligibility, EligibilitySpec, Phase, Requester, ReviewDecision, ReviewSelector,
    Reviewers, SubjectRef,
};
use kubepim::policy::extension::Related;
use kubepim::policy::review;
use kubepim::time::to_k8s;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

const ROLES: usize = 500;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

fn eligibilities(n: usize) -> Vec<Eligibility> {
    (0..n)
        .map(|i| {
            let mut subjects = vec![SubjectRef::user(format!("user-{}", i * 2 % 10_000))];
            if i % 10 == 0 {
                subjects.push(SubjectRef::group(format!("team-{}", i % 50)));
            }
            Eligibility {
                metadata: ObjectMeta {
                    name: Some(format!("elig-{i:05}")),
                    uid: Some(format!("uid-{i}")),
                    generation: Some(1),
                    creation_timestamp: Some(to_k8s(now() - Duration::days(365))),
                    ..Default::default()
                },
                spec: EligibilitySpec {
                    role: format!("role-{}", i % ROLES),
                    subjects,
                    namespaces: vec![],
                    max_duration: None,
                    not_before: None,
                    not_after: None,
                    budget: None,
                },
                status: None,
            }
        })
        .collect()
}

/// Requests of the users the eligibilities name, on their eligibility's role.
fn history(
    n: usize,
    eligibilities: usize,
) -> Vec<(String, ActivationRequestSpec, ActivationRequestStatus)> {
    (0..n)
        .map(|i| {
            // The last fifth of the eligibilities is never used: their items recommend removal.
            let e = i % (eligibilities * 4 / 5).max(1);
            let start = now() - Duration::minutes((i as i64 * 7_919) % (180 * 24 * 60));
            let end = start + Duration::hours(1 + (i as i64 % 4));
            let spec = ActivationRequestSpec {
                role: format!("role-{}", e % ROLES),
                namespaces: vec![],
                duration: None,
                justification: Some("benchmark".into()),
                ticket: None,
                start_at: None,
                extends: None,
                cancel: false,
                requester: Some(Requester {
                    username: format!("user-{}", e * 2 % 10_000),
                    groups: vec![format!("team-{}", e % 50)],
                    ..Default::default()
                }),
            };
            let status = ActivationRequestStatus {
                phase: Some(Phase::Expired),
                approvals: vec![Approval {
                    approver: format!("approver-{}", i % 50),
                    groups: vec![],
                    decision: Decision::Approved,
                    reason: None,
                    time: None,
                }],
                activated_at: Some(to_k8s(start)),
                expires_at: Some(to_k8s(end)),
                ended_at: Some(to_k8s(end)),
                ..Default::default()
            };
            (format!("req-{i:06}"), spec, status)
        })
        .collect()
}

fn spec(selector: ReviewSelector) -> AccessReviewSpec {
    AccessReviewSpec {
        selector,
        reviewers: Reviewers {
            users: vec!["bob".into()],
            groups: vec![],
            subjects_approvers: true,
        },
        due_at: Some(to_k8s(now() + Duration::days(14))),
        duration: None,
        default_decision: ReviewDecision::Keep,
        lookback: kube::core::Duration::from(std::time::Duration::from_secs(2160 * 3600)),
        schedule: None,
    }
}

fn main() {
    let n_elig = env_usize("KUBEPIM_REVIEW_ELIGIBILITIES", 5_000);
    let n_req = env_usize("KUBEPIM_REVIEW_REQUESTS", 50_000);
    let eligibilities = eligibilities(n_elig);
    let kept = history(n_req, n_elig);
    let refs: Vec<&Eligibility> = eligibilities.iter().collect();
    let related: Vec<Related<'_>> = kept
        .iter()
        .map(|(name, spec, status)| Related { name, spec, status })
        .collect();
    println!("access review fill: {n_elig} eligibilities, {n_req} requests, {ROLES} roles");
    let quarter = |q: usize| -> Vec<String> {
        (q * ROLES / 4..(q + 1) * ROLES / 4)
            .map(|r| format!("role-{r}"))
            .collect()
    };
    let mut runs = vec![(
        "all eligibilities".to_string(),
        ReviewSelector {
            all: true,
            ..Default::default()
        },
    )];
    for q in 0..4 {
        runs.push((
            format!("roles, quarter {}", q + 1),
            ReviewSelector {
                roles: quarter(q),
                ..Default::default()
            },
        ));
    }
    // One warm-up fill, so allocator growth of the first run is not counted against it.
    let _ = review::fill(&runs[0].1.clone().into_spec(), &refs, &related, now());
    for (what, selector) in runs {
        let spec = spec(selector);
        let mut times = Vec::new();
        let mut growth = 0;
        let mut last = None;
        for _ in 0..5 {
            let (before, _) = rss_kib();
            reset_peak_rss();
            let t = Instant::now();
            let fill = review::fill(&spec, &refs, &related, now());
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            let (_, peak) = rss_kib();
            growth = growth.max(peak.saturating_sub(before));
            last = Some(fill);
        }
        times.sort_by(f64::total_cmp);
        let Some(fill) = last else { continue };
        let removals = fill
            .items
            .iter()
            .filter(|i| i.recommendation == ReviewDecision::Remove)
            .count();
        let status = AccessReviewStatus {
            items: fill.items,
            ..Default::default()
        };
        let bytes = serde_json::to_vec(&status).map(|v| v.len()).unwrap_or(0);
        println!(
            "{what:<26} items={:<5} left_out={:<5} recommend_remove={removals:<5} fill median={:>7.1} ms min={:>7.1} ms  peak RSS growth={:>6} KiB  status JSON={:>8} bytes",
            status.items.len(),
            fill.left_out,
            times[times.len() / 2],
            times[0],
            growth,
            bytes,
        );
    }
    let (rss, hwm) = rss_kib();
    println!("process RSS={rss} KiB, peak={hwm} KiB (data set included)");
}

trait IntoSpec {
    fn into_spec(self) -> AccessReviewSpec;
}

impl IntoSpec for ReviewSelector {
    fn into_spec(self) -> AccessReviewSpec {
        spec(self)
    }
}
