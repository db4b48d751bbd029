//! `validate(spec, requester, role, eligibilities, now)`: every refusal and every grant shape.
use chrono::{DateTime, TimeDelta, Utc};

use super::builders::*;
use crate::api::{ActivationRequestSpec, Eligibility, PrivilegedRole};
use crate::policy::reasons;
use crate::policy::validation::requested_duration;

/// `payments-admin`: the ClusterRole `admin`, bound by RoleBinding in `payments` only.
fn payments_admin() -> PrivilegedRole {
    role("payments-admin")
        .cluster_role("admin")
        .namespaces(&["payments"])
        .approvers(&["bob"], &["sre-leads"])
}

/// `ops-admin`: the ClusterRole `admin`, bindable in three namespaces.
fn ops_admin() -> PrivilegedRole {
    role("ops-admin")
        .cluster_role("admin")
        .namespaces(&["payments", "billing", "ledger"])
        .approvers(&["bob"], &[])
}

/// `cluster-admin`: the ClusterRole `cluster-admin`, bound by one ClusterRoleBinding.
fn cluster_admin() -> PrivilegedRole {
    role("cluster-admin")
        .cluster_wide()
        .approvers(&["bob"], &[])
}

fn alice() -> crate::api::Requester {
    user("alice")
}

fn alice_may(role: &str) -> Eligibility {
    eligibility(&format!("alice-{role}"), role).users(&["alice"])
}

enum Want {
    Grant {
        namespaces: &'static [&'static str],
        duration: TimeDelta,
    },
    Refused {
        reason: &'static str,
        message_has: String,
    },
}

struct Row {
    case: &'static str,
    spec: ActivationRequestSpec,
    role: PrivilegedRole,
    eligibilities: Vec<Eligibility>,
    now: DateTime<Utc>,
    want: Want,
}

fn grant(namespaces: &'static [&'static str], duration: TimeDelta) -> Want {
    Want::Grant {
        namespaces,
        duration,
    }
}

fn refused(reason: &'static str, message_has: impl Into<String>) -> Want {
    Want::Refused {
        reason,
        message_has: message_has.into(),
    }
}

/// Durations in messages are printed by `crate::time::format_duration`.
fn fmt(d: TimeDelta) -> String {
    crate::time::format_duration(d)
}

fn run(rows: Vec<Row>) {
    let mut failures = Vec::new();
    for row in rows {
        let got = check(&row.spec, &row.role, &row.eligibilities, row.now);
        let ok = match (&row.want, &got) {
            (
                Want::Grant {
                    namespaces,
                    duration,
                },
                Ok(g),
            ) => g.namespaces == *namespaces && g.duration == *duration,
            (
                Want::Refused {
                    reason,
                    message_has,
                },
                Err(r),
            ) => r.reason == *reason && r.message.contains(message_has.as_str()),
            _ => false,
        };
        if !ok {
            failures.push(format!("{}: got {got:?}", row.case));
        }
    }
    assert!(
        failures.is_empty(),
        "{} row(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn hours(h: i64) -> TimeDelta {
    TimeDelta::hours(h)
}

#[test]
fn role_scope_resolves_namespaces() {
    let now = t0();
    let rows = vec![
        Row {
            case: "cluster-wide role, no namespaces: one ClusterRoleBinding",
            spec: request("cluster-admin").by(&alice()),
            role: cluster_admin(),
            eligibilities: vec![alice_may("cluster-admin")],
            now,
            want: grant(&[], hours(1)),
        },
        Row {
            case: "cluster-wide role asked for namespaces",
            spec: request("cluster-admin")
                .by(&alice())
                .namespaces(&["payments"]),
            role: cluster_admin(),
            eligibilities: vec![alice_may("cluster-admin")],
            now,
            want: refused(reasons::NAMESPACES_ON_CLUSTER_WIDE_ROLE, "cluster-wide"),
        },
        Row {
            case: "namespaced role allowing one namespace, none asked: that one",
            spec: request("payments-admin").by(&alice()),
            role: payments_admin(),
            eligibilities: vec![alice_may("payments-admin")],
            now,
            want: grant(&["payments"], hours(1)),
        },
        Row {
            case: "namespaced role allowing one namespace, asked for it",
            spec: request("payments-admin")
                .by(&alice())
                .namespaces(&["payments"]),
            role: payments_admin(),
            eligibilities: vec![alice_may("payments-admin")],
            now,
            want: grant(&["payments"], hours(1)),
        },
        Row {
            case: "namespaced role allowing many, none asked",
            spec: request("ops-admin").by(&alice()),
            role: ops_admin(),
            eligibilities: vec![alice_may("ops-admin")],
            now,
            want: refused(reasons::NAMESPACES_REQUIRED, "[payments, billing, ledger]"),
        },
        Row {
            case: "namespaced role allowing many, some asked (sorted, deduplicated)",
            spec: request("ops-admin")
                .by(&alice())
                .namespaces(&["ledger", "billing", "ledger"]),
            role: ops_admin(),
            eligibilities: vec![alice_may("ops-admin")],
            now,
            want: grant(&["billing", "ledger"], hours(1)),
        },
        Row {
            case: "namespace the role does not allow",
            spec: request("ops-admin")
                .by(&alice())
                .namespaces(&["billing", "kube-system"]),
            role: ops_admin(),
            eligibilities: vec![alice_may("ops-admin")],
            now,
            want: refused(
                reasons::NAMESPACE_OUTSIDE_SCOPE,
                "namespace kube-system is not allowed by role ops-admin",
            ),
        },
        Row {
            case: "a Role is bound in its own namespace",
            spec: request("payments-db").by(&alice()),
            role: role("payments-db").role_in("payments", "db-admin"),
            eligibilities: vec![alice_may("payments-db")],
            now,
            want: grant(&["payments"], hours(1)),
        },
        Row {
            case: "a Role is never bound outside its namespace, whatever the scope says",
            spec: request("payments-db").by(&alice()).namespaces(&["billing"]),
            role: role("payments-db")
                .role_in("payments", "db-admin")
                .namespaces(&["payments", "billing"]),
            eligibilities: vec![alice_may("payments-db")],
            now,
            want: refused(
                reasons::NAMESPACE_OUTSIDE_SCOPE,
                "Role payments/db-admin can only be granted in payments",
            ),
        },
        Row {
            case: "a Role is never granted cluster-wide",
            spec: request("payments-db").by(&alice()),
            role: role("payments-db")
                .role_in("payments", "db-admin")
                .cluster_wide(),
            eligibilities: vec![alice_may("payments-db")],
            now,
            want: refused(
                reasons::NAMESPACE_OUTSIDE_SCOPE,
                "cannot be granted cluster-wide",
            ),
        },
    ];
    run(rows);
}

#[test]
fn duration_default_explicit_and_limits() {
    let now = t0();
    let role = || payments_admin().default_duration("30m").max_duration("2h");
    let elig = || vec![alice_may("payments-admin")];
    let rows = vec![
        Row {
            case: "no duration: the role's default",
            spec: request("payments-admin").by(&alice()),
            role: role(),
            eligibilities: elig(),
            now,
            want: grant(&["payments"], TimeDelta::minutes(30)),
        },
        Row {
            case: "explicit duration below the maximum",
            spec: request("payments-admin").by(&alice()).duration("1h30m"),
            role: role(),
            eligibilities: elig(),
            now,
            want: grant(&["payments"], TimeDelta::minutes(90)),
        },
        Row {
            case: "explicit duration equal to the maximum",
            spec: request("payments-admin").by(&alice()).duration("2h"),
            role: role(),
            eligibilities: elig(),
            now,
            want: grant(&["payments"], hours(2)),
        },
        Row {
            case: "explicit duration over the maximum",
            spec: request("payments-admin").by(&alice()).duration("2h0m1s"),
            role: role(),
            eligibilities: elig(),
            now,
            want: refused(
                reasons::DURATION_TOO_LONG,
                format!(
                    "exceeds the maximum {} of role payments-admin",
                    fmt(hours(2))
                ),
            ),
        },
        Row {
            case: "default duration over the maximum (schema forbids; still refused)",
            spec: request("payments-admin").by(&alice()),
            role: role().default_duration("3h"),
            eligibilities: elig(),
            now,
            want: refused(reasons::DURATION_TOO_LONG, "exceeds the maximum"),
        },
        Row {
            case: "zero duration",
            spec: request("payments-admin").by(&alice()).duration("0s"),
            role: role(),
            eligibilities: elig(),
            now,
            want: refused(reasons::DURATION_TOO_SHORT, "at least 1s"),
        },
        Row {
            case: "negative duration",
            spec: request("payments-admin").by(&alice()).duration("-5m"),
            role: role(),
            eligibilities: elig(),
            now,
            want: refused(reasons::DURATION_TOO_SHORT, "at least 1s"),
        },
        Row {
            case: "sub-second duration (persisted timestamps have whole seconds)",
            spec: request("payments-admin").by(&alice()).duration("500ms"),
            role: role(),
            eligibilities: elig(),
            now,
            want: refused(reasons::DURATION_TOO_SHORT, "at least 1s"),
        },
        Row {
            case: "one second is the shortest grant",
            spec: request("payments-admin").by(&alice()).duration("1s"),
            role: role(),
            eligibilities: elig(),
            now,
            want: grant(&["payments"], TimeDelta::seconds(1)),
        },
    ];
    run(rows);
}

#[test]
fn requested_duration_is_public_and_agrees() {
    let r = payments_admin().default_duration("45m");
    assert_eq!(
        requested_duration(&request("payments-admin"), &r),
        Ok(TimeDelta::minutes(45))
    );
    assert_eq!(
        requested_duration(&request("payments-admin").duration("5h"), &r)
            .unwrap_err()
            .reason,
        reasons::DURATION_TOO_LONG
    );
}

#[test]
fn justification_and_ticket() {
    let now = t0();
    let elig = || vec![alice_may("payments-admin")];
    let ticketed = || payments_admin().ticket_pattern(r"^(INC|CHG)-[0-9]+$");
    let rows = vec![
        Row {
            case: "justification required and missing",
            spec: request("payments-admin")
                .by(&alice())
                .without_justification(),
            role: payments_admin(),
            eligibilities: elig(),
            now,
            want: refused(
                reasons::JUSTIFICATION_REQUIRED,
                "requires spec.justification",
            ),
        },
        Row {
            case: "justification required and empty",
            spec: request("payments-admin").by(&alice()).justification(""),
            role: payments_admin(),
            eligibilities: elig(),
            now,
            want: refused(reasons::JUSTIFICATION_REQUIRED, "payments-admin"),
        },
        Row {
            case: "justification required and only whitespace",
            spec: request("payments-admin")
                .by(&alice())
                .justification(" \t\n "),
            role: payments_admin(),
            eligibilities: elig(),
            now,
            want: refused(reasons::JUSTIFICATION_REQUIRED, "payments-admin"),
        },
        Row {
            case: "justification optional and missing",
            spec: request("payments-admin")
                .by(&alice())
                .without_justification(),
            role: payments_admin().justification_optional(),
            eligibilities: elig(),
            now,
            want: grant(&["payments"], hours(1)),
        },
        Row {
            case: "ticket required and missing",
            spec: request("payments-admin").by(&alice()),
            role: ticketed(),
            eligibilities: elig(),
            now,
            want: refused(reasons::TICKET_REQUIRED, "requires spec.ticket matching"),
        },
        Row {
            case: "ticket required and empty",
            spec: request("payments-admin").by(&alice()).ticket(""),
            role: ticketed(),
            eligibilities: elig(),
            now,
            want: refused(reasons::TICKET_REQUIRED, "requires spec.ticket"),
        },
        Row {
            case: "ticket does not match",
            spec: request("payments-admin").by(&alice()).ticket("JIRA-12"),
            role: ticketed(),
            eligibilities: elig(),
            now,
            want: refused(reasons::TICKET_MISMATCH, "ticket JIRA-12 does not match"),
        },
        Row {
            case: "ticket matches",
            spec: request("payments-admin").by(&alice()).ticket("INC-4711"),
            role: ticketed(),
            eligibilities: elig(),
            now,
            want: grant(&["payments"], hours(1)),
        },
        Row {
            case: "ticket without a pattern is not checked",
            spec: request("payments-admin").by(&alice()).ticket("anything"),
            role: payments_admin(),
            eligibilities: elig(),
            now,
            want: grant(&["payments"], hours(1)),
        },
        Row {
            case: "invalid ticket pattern refuses every request",
            spec: request("payments-admin").by(&alice()).ticket("INC-1"),
            role: payments_admin().ticket_pattern("INC-(["),
            eligibilities: elig(),
            now,
            want: refused(reasons::INVALID_TICKET_PATTERN, "invalid ticketPattern"),
        },
    ];
    run(rows);
}

#[test]
fn step_up_requester_attributes() {
    let now = t0();
    let mfa_role = || payments_admin().requires_attribute("amr", &["mfa", "hwk"]);
    let elig = || vec![alice_may("payments-admin")];
    let with_amr = |values: &[&str]| alice().with_extra("amr", values);
    let rows = vec![
        Row {
            case: "attribute required and absent",
            spec: request("payments-admin").by(&alice()),
            role: mfa_role(),
            eligibilities: elig(),
            now,
            want: refused(
                reasons::REQUESTER_ATTRIBUTES_MISSING,
                "amr to include one of [mfa, hwk]; alice has []",
            ),
        },
        Row {
            case: "attribute present with other values",
            spec: request("payments-admin").by(&with_amr(&["pwd"])),
            role: mfa_role(),
            eligibilities: elig(),
            now,
            want: refused(reasons::REQUESTER_ATTRIBUTES_MISSING, "alice has [pwd]"),
        },
        Row {
            case: "the value under another key does not count",
            spec: request("payments-admin").by(&alice().with_extra("acr", &["mfa"])),
            role: mfa_role(),
            eligibilities: elig(),
            now,
            want: refused(reasons::REQUESTER_ATTRIBUTES_MISSING, "alice has []"),
        },
        Row {
            case: "one of the values among others",
            spec: request("payments-admin").by(&with_amr(&["pwd", "hwk"])),
            role: mfa_role(),
            eligibilities: elig(),
            now,
            want: grant(&["payments"], hours(1)),
        },
        Row {
            case: "no requirement: attributes are not looked at",
            spec: request("payments-admin").by(&alice()),
            role: payments_admin(),
            eligibilities: elig(),
            now,
            want: grant(&["payments"], hours(1)),
        },
    ];
    run(rows);
}

#[test]
fn who_is_eligible() {
    let now = t0();
    let carol_sre = user("carol").in_groups(&["sre", "payments-oncall"]);
    let deployer = sa("ci", "deployer");
    let rows = vec![
        Row {
            case: "no eligibility at all",
            spec: request("payments-admin").by(&alice()),
            role: payments_admin(),
            eligibilities: vec![],
            now,
            want: refused(
                reasons::NOT_ELIGIBLE,
                "alice is not eligible for role payments-admin",
            ),
        },
        Row {
            case: "eligible for another role only",
            spec: request("payments-admin").by(&alice()),
            role: payments_admin(),
            eligibilities: vec![alice_may("ops-admin")],
            now,
            want: refused(reasons::NOT_ELIGIBLE, "alice"),
        },
        Row {
            case: "the eligibility names another user",
            spec: request("payments-admin").by(&alice()),
            role: payments_admin(),
            eligibilities: vec![eligibility("bob-payments", "payments-admin").users(&["bob"])],
            now,
            want: refused(reasons::NOT_ELIGIBLE, "alice"),
        },
        Row {
            case: "eligible by user",
            spec: request("payments-admin").by(&alice()),
            role: payments_admin(),
            eligibilities: vec![alice_may("payments-admin")],
            now,
            want: grant(&["payments"], hours(1)),
        },
        Row {
            case: "eligible by group",
            spec: request("payments-admin").by(&carol_sre),
            role: payments_admin(),
            eligibilities: vec![
                eligibility("oncall", "payments-admin").groups(&["payments-oncall"]),
            ],
            now,
            want: grant(&["payments"], hours(1)),
        },
        Row {
            case: "the eligibility names a group the requester is not in",
            spec: request("payments-admin").by(&alice()),
            role: payments_admin(),
            eligibilities: vec![
                eligibility("oncall", "payments-admin").groups(&["payments-oncall"]),
            ],
            now,
            want: refused(reasons::NOT_ELIGIBLE, "alice"),
        },
        Row {
            case: "eligible as a ServiceAccount",
            spec: request("payments-admin").by(&deployer),
            role: payments_admin(),
            eligibilities: vec![
                eligibility("ci", "payments-admin").service_account("ci", "deployer"),
            ],
            now,
            want: grant(&["payments"], hours(1)),
        },
        Row {
            case: "a ServiceAccount of the same name in another namespace",
            spec: request("payments-admin").by(&sa("other", "deployer")),
            role: payments_admin(),
            eligibilities: vec![
                eligibility("ci", "payments-admin").service_account("ci", "deployer"),
            ],
            now,
            want: refused(
                reasons::NOT_ELIGIBLE,
                "system:serviceaccount:other:deployer",
            ),
        },
        Row {
            case: "a User subject spelled like the ServiceAccount does not make it eligible",
            spec: request("payments-admin").by(&deployer),
            role: payments_admin(),
            eligibilities: vec![
                eligibility("ci", "payments-admin").users(&["system:serviceaccount:ci:deployer"]),
            ],
            now,
            want: refused(reasons::NOT_ELIGIBLE, "deployer"),
        },
        Row {
            case: "a ServiceAccount subject does not match a user called like its name",
            spec: request("payments-admin").by(&user("deployer")),
            role: payments_admin(),
            eligibilities: vec![
                eligibility("ci", "payments-admin").service_account("ci", "deployer"),
            ],
            now,
            want: refused(reasons::NOT_ELIGIBLE, "deployer"),
        },
        Row {
            case: "ServiceAccounts eligible through their namespace group",
            spec: request("payments-admin").by(&deployer),
            role: payments_admin(),
            eligibilities: vec![
                eligibility("ci-all", "payments-admin").groups(&["system:serviceaccounts:ci"]),
            ],
            now,
            want: grant(&["payments"], hours(1)),
        },
    ];
    run(rows);
}

#[test]
fn eligibility_windows() {
    let window = || {
        alice_may("payments-admin")
            .not_before(at(0))
            .not_after(at(60))
    };
    let case = |case: &'static str, now: DateTime<Utc>, want: Want| Row {
        case,
        spec: request("payments-admin").by(&alice()).duration("15m"),
        role: payments_admin(),
        eligibilities: vec![window()],
        now,
        want,
    };
    run(vec![
        case(
            "before notBefore",
            at(-1),
            refused(
                reasons::ELIGIBILITY_NOT_YET_VALID,
                "valid only from 2026-03-02T10:00:00",
            ),
        ),
        case(
            "one second before notBefore",
            at_s(-1),
            refused(reasons::ELIGIBILITY_NOT_YET_VALID, "alice-payments-admin"),
        ),
        case(
            "at notBefore (inclusive)",
            at(0),
            grant(&["payments"], TimeDelta::minutes(15)),
        ),
        case(
            "inside",
            at(30),
            grant(&["payments"], TimeDelta::minutes(15)),
        ),
        case(
            "one second before notAfter",
            at_s(3599),
            grant(&["payments"], TimeDelta::minutes(15)),
        ),
        case(
            "at notAfter (exclusive)",
            at(60),
            refused(reasons::ELIGIBILITY_EXPIRED, "ended at 2026-03-02T11:00:00"),
        ),
        case(
            "after notAfter",
            at(61),
            refused(reasons::ELIGIBILITY_EXPIRED, "alice-payments-admin"),
        ),
    ]);
}

#[test]
fn eligibility_narrows_namespaces_and_duration() {
    let now = t0();
    let only_billing = || {
        eligibility("alice-billing", "ops-admin")
            .users(&["alice"])
            .namespaces(&["billing"])
    };
    let short = || alice_may("payments-admin").max_duration("30m");
    let rows = vec![
        Row {
            case: "namespace inside the eligibility's",
            spec: request("ops-admin").by(&alice()).namespaces(&["billing"]),
            role: ops_admin(),
            eligibilities: vec![only_billing()],
            now,
            want: grant(&["billing"], hours(1)),
        },
        Row {
            case: "namespace the role allows but the eligibility does not",
            spec: request("ops-admin")
                .by(&alice())
                .namespaces(&["billing", "ledger"]),
            role: ops_admin(),
            eligibilities: vec![only_billing()],
            now,
            want: refused(
                reasons::NAMESPACE_OUTSIDE_SCOPE,
                "namespace ledger is not allowed by eligibility alice-billing",
            ),
        },
        Row {
            case: "namespaced eligibility does not grant a cluster-wide role",
            spec: request("cluster-admin").by(&alice()),
            role: cluster_admin(),
            eligibilities: vec![alice_may("cluster-admin").namespaces(&["payments"])],
            now,
            want: refused(reasons::NAMESPACE_OUTSIDE_SCOPE, "cluster-wide"),
        },
        Row {
            case: "default namespace of a one-namespace role, narrowed elsewhere",
            spec: request("payments-admin").by(&alice()),
            role: payments_admin(),
            eligibilities: vec![alice_may("payments-admin").namespaces(&["billing"])],
            now,
            want: refused(reasons::NAMESPACE_OUTSIDE_SCOPE, "namespace payments"),
        },
        Row {
            case: "duration within the eligibility's maximum",
            spec: request("payments-admin").by(&alice()).duration("30m"),
            role: payments_admin(),
            eligibilities: vec![short()],
            now,
            want: grant(&["payments"], TimeDelta::minutes(30)),
        },
        Row {
            case: "duration over the eligibility's maximum",
            spec: request("payments-admin").by(&alice()).duration("31m"),
            role: payments_admin(),
            eligibilities: vec![short()],
            now,
            want: refused(
                reasons::DURATION_TOO_LONG,
                format!(
                    "exceeds the maximum {} of eligibility alice-payments-admin",
                    fmt(TimeDelta::minutes(30))
                ),
            ),
        },
        Row {
            case: "role default over the eligibility's maximum",
            spec: request("payments-admin").by(&alice()),
            role: payments_admin(),
            eligibilities: vec![short()],
            now,
            want: refused(
                reasons::DURATION_TOO_LONG,
                "eligibility alice-payments-admin",
            ),
        },
    ];
    run(rows);
}

#[test]
fn several_eligibilities_one_allows() {
    let now = t0();
    let expired = eligibility("a-expired", "ops-admin")
        .users(&["alice"])
        .not_after(at(-10));
    let narrow = eligibility("b-narrow", "ops-admin")
        .users(&["alice"])
        .namespaces(&["billing"]);
    let short = eligibility("c-short", "ops-admin")
        .users(&["alice"])
        .max_duration("10m");
    let wide = eligibility("d-wide", "ops-admin")
        .groups(&["sre"])
        .namespaces(&["billing", "ledger"]);
    let other_role = eligibility("e-other", "payments-admin").users(&["alice"]);
    let alice_sre = alice().in_groups(&["sre"]);
    let spec = request("ops-admin")
        .by(&alice_sre)
        .namespaces(&["ledger"])
        .duration("1h");

    let all = vec![
        expired.clone(),
        narrow.clone(),
        short.clone(),
        wide.clone(),
        other_role.clone(),
    ];
    let g = check(&spec, &ops_admin(), &all, now).expect("d-wide allows it");
    assert_eq!(g.eligibilities, vec!["d-wide"]);

    // Without the one that allows, the refusal is that of the first by name, whatever the order.
    let rest = vec![
        short.clone(),
        other_role.clone(),
        narrow.clone(),
        expired.clone(),
    ];
    let r = check(&spec, &ops_admin(), &rest, now).unwrap_err();
    assert_eq!(r.reason, reasons::ELIGIBILITY_EXPIRED, "{r}");
    let mut reversed = rest.clone();
    reversed.reverse();
    assert_eq!(check(&spec, &ops_admin(), &reversed, now).unwrap_err(), r);

    // Both allow: both are named, sorted.
    let both = vec![
        wide.clone(),
        eligibility("a-all", "ops-admin").users(&["alice"]),
    ];
    assert_eq!(
        check(&spec, &ops_admin(), &both, now)
            .unwrap()
            .eligibilities,
        vec!["a-all", "d-wide"]
    );
}

#[test]
fn eligibilities_are_not_combined() {
    // Each eligibility must allow the whole grant: two that each allow one of the namespaces asked
    // for do not add up (ask twice instead), nor does one's window lend itself to another's scope.
    let billing = eligibility("a-billing", "ops-admin")
        .users(&["alice"])
        .namespaces(&["billing"]);
    let ledger = eligibility("b-ledger", "ops-admin")
        .users(&["alice"])
        .namespaces(&["ledger"]);
    let spec = request("ops-admin")
        .by(&alice())
        .namespaces(&["billing", "ledger"]);
    let r = check(
        &spec,
        &ops_admin(),
        &[billing.clone(), ledger.clone()],
        t0(),
    )
    .unwrap_err();
    assert_eq!(r.reason, reasons::NAMESPACE_OUTSIDE_SCOPE);
    assert!(r.message.contains("eligibility a-billing"), "{r}");
    let one = request("ops-admin").by(&alice()).namespaces(&["ledger"]);
    assert_eq!(
        check(&one, &ops_admin(), &[billing, ledger], t0())
            .unwrap()
            .eligibilities,
        vec!["b-ledger"]
    );
}

#[test]
fn eligible_until_and_recheck_at() {
    let now = t0();
    let spec = request("payments-admin")
        .by(&alice())
        .namespaces(&["payments"]);
    let ends_at =
        |name: &str, end: i64| alice_may("payments-admin").not_after(at(end)).renamed(name);
    let unbounded = alice_may("payments-admin").renamed("unbounded");
    let not_yet = alice_may("payments-admin")
        .not_before(at(5))
        .renamed("not-yet");

    /// (case, eligibilities, eligible_until, recheck_at), in minutes after t0.
    type Case = (&'static str, Vec<Eligibility>, Option<i64>, Option<i64>);
    let cases: Vec<Case> = vec![
        ("one unbounded", vec![unbounded.clone()], None, None),
        ("one bounded", vec![ends_at("e90", 90)], Some(90), Some(90)),
        (
            "two bounded: until the later, recheck at the earlier",
            vec![ends_at("e90", 90), ends_at("e30", 30)],
            Some(90),
            Some(30),
        ),
        (
            "bounded and unbounded: unbounded, recheck at the bounded end",
            vec![ends_at("e30", 30), unbounded.clone()],
            None,
            Some(30),
        ),
        (
            "an eligibility not yet valid does not count",
            vec![ends_at("e30", 30), not_yet.clone()],
            Some(30),
            Some(30),
        ),
        (
            "a window with a start and an end: the end",
            vec![
                alice_may("payments-admin")
                    .not_before(at(-5))
                    .not_after(at(45)),
            ],
            Some(45),
            Some(45),
        ),
    ];
    for (case, eligs, until, recheck) in cases {
        let g =
            check(&spec, &payments_admin(), &eligs, now).unwrap_or_else(|r| panic!("{case}: {r}"));
        assert_eq!(g.eligible_until, until.map(at), "{case}: eligible_until");
        assert_eq!(g.recheck_at, recheck.map(at), "{case}: recheck_at");
    }
}

#[test]
fn refusal_order_is_scope_then_duration_then_justification_then_eligibility() {
    // Everything is wrong: the first problem in the documented order is reported.
    let spec = request("ops-admin")
        .by(&alice())
        .namespaces(&["kube-system"])
        .duration("9h")
        .without_justification();
    let r = check(&spec, &ops_admin(), &[], t0()).unwrap_err();
    assert_eq!(r.reason, reasons::NAMESPACE_OUTSIDE_SCOPE);
    let spec = spec.namespaces(&["billing"]);
    assert_eq!(
        check(&spec, &ops_admin(), &[], t0()).unwrap_err().reason,
        reasons::DURATION_TOO_LONG
    );
    let spec = spec.duration("1h");
    assert_eq!(
        check(&spec, &ops_admin(), &[], t0()).unwrap_err().reason,
        reasons::JUSTIFICATION_REQUIRED
    );
    let spec = spec.justification("x");
    assert_eq!(
        check(&spec, &ops_admin(), &[], t0()).unwrap_err().reason,
        reasons::NOT_ELIGIBLE
    );
}

#[test]
fn refusal_displays_reason_and_message() {
    let r = check(
        &request("payments-admin").by(&alice()),
        &payments_admin(),
        &[],
        t0(),
    )
    .unwrap_err();
    assert_eq!(r.to_string(), format!("NotEligible: {}", r.message));
}

trait Renamed {
    fn renamed(self, name: &str) -> Self;
}

impl Renamed for Eligibility {
    fn renamed(mut self, name: &str) -> Self {
        self.metadata.name = Some(name.into());
        self
    }
}
