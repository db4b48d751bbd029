use super::*;
use crate::api::Phase;
use crate::policy::tests::builders::t0;

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn named(mut r: PolicyRule, names: &[&str]) -> PolicyRule {
    r.resource_names = Some(names.iter().map(|s| s.to_string()).collect());
    r
}

fn urls(urls: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        non_resource_urls: Some(urls.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn cmp(granted: &[PolicyRule], now: &[PolicyRule]) -> Integrity {
    compare(&canonical(granted), &canonical(now))
}

fn widened(added: &[&str]) -> Integrity {
    Integrity::Widened {
        added: added.iter().map(|s| s.to_string()).collect(),
    }
}

fn narrowed(removed: &[&str]) -> Integrity {
    Integrity::Narrowed {
        removed: removed.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn canonical_form_and_digest_ignore_order_and_duplicates() {
    let a = [
        rule(&[""], &["pods", "pods"], &["list", "get"]),
        rule(&["apps"], &["deployments"], &["get"]),
    ];
    let b = [
        rule(&["apps"], &["deployments"], &["get"]),
        rule(&[""], &["pods"], &["get", "list"]),
        rule(&[""], &["pods"], &["get", "list"]),
    ];
    assert_eq!(canonical(&a), canonical(&b));
    assert_eq!(Observed::of(&a).digest, Observed::of(&b).digest);
    assert_eq!(Observed::of(&a).digest.len(), 64);
    // sha256 of "[]": a fixed value, so digests are comparable across versions.
    assert_eq!(
        digest(&[]),
        "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
    );
    assert_ne!(
        Observed::of(&a).digest,
        Observed::of(&[rule(&[""], &["pods"], &["get"])]).digest
    );
}

#[test]
fn comparison_table() {
    let pods_get_list = rule(&[""], &["pods"], &["get", "list"]);
    let cases: Vec<(&str, Vec<PolicyRule>, Vec<PolicyRule>, Integrity)> = vec![
        (
            "same rules",
            vec![pods_get_list.clone()],
            vec![pods_get_list.clone()],
            Integrity::Unchanged,
        ),
        (
            "same permissions, split differently",
            vec![pods_get_list.clone()],
            vec![
                rule(&[""], &["pods"], &["get"]),
                rule(&[""], &["pods"], &["list"]),
            ],
            Integrity::Unchanged,
        ),
        (
            "a rule added",
            vec![pods_get_list.clone()],
            vec![pods_get_list.clone(), rule(&[""], &["secrets"], &["get"])],
            widened(&["get secrets"]),
        ),
        (
            "a verb added",
            vec![pods_get_list.clone()],
            vec![rule(&[""], &["pods"], &["get", "list", "delete"])],
            widened(&["delete pods"]),
        ),
        (
            "get, list replaced by *",
            vec![pods_get_list.clone()],
            vec![rule(&[""], &["pods"], &["*"])],
            widened(&["* pods"]),
        ),
        (
            "* replaced by get, list",
            vec![rule(&[""], &["pods"], &["*"])],
            vec![pods_get_list.clone()],
            narrowed(&["* pods"]),
        ),
        (
            "a verb removed",
            vec![pods_get_list.clone()],
            vec![rule(&[""], &["pods"], &["get"])],
            narrowed(&["list pods"]),
        ),
        (
            "every rule removed",
            vec![pods_get_list.clone()],
            vec![],
            narrowed(&["get pods", "list pods"]),
        ),
        (
            "resources * covers a new resource",
            vec![rule(&[""], &["*"], &["get"])],
            vec![
                rule(&[""], &["*"], &["get"]),
                rule(&[""], &["pods"], &["get"]),
            ],
            Integrity::Unchanged,
        ),
        (
            "another API group",
            vec![rule(&[""], &["pods"], &["get"])],
            vec![rule(&["", "apps"], &["pods"], &["get"])],
            widened(&["get pods.apps"]),
        ),
        (
            "apiGroups * covers any group",
            vec![rule(&["*"], &["deployments"], &["get"])],
            vec![rule(&["apps"], &["deployments"], &["get"])],
            narrowed(&["get deployments.*"]),
        ),
        (
            "resourceNames [a] to [] is a widening",
            vec![named(rule(&[""], &["secrets"], &["get"]), &["a"])],
            vec![rule(&[""], &["secrets"], &["get"])],
            widened(&["get secrets"]),
        ),
        (
            "resourceNames [] to [a] is a narrowing",
            vec![rule(&[""], &["secrets"], &["get"])],
            vec![named(rule(&[""], &["secrets"], &["get"]), &["a"])],
            narrowed(&["get secrets"]),
        ),
        (
            "another name",
            vec![named(rule(&[""], &["secrets"], &["get"]), &["a"])],
            vec![named(rule(&[""], &["secrets"], &["get"]), &["a", "b"])],
            widened(&["get secrets named b"]),
        ),
        (
            "*/scale covers the scale subresource of any resource",
            vec![rule(&["apps"], &["*/scale"], &["update"])],
            vec![rule(&["apps"], &["deployments/scale"], &["update"])],
            narrowed(&["update */scale.apps"]),
        ),
        (
            "pods does not cover pods/exec",
            vec![rule(&[""], &["pods"], &["create"])],
            vec![rule(&[""], &["pods", "pods/exec"], &["create"])],
            widened(&["create pods/exec"]),
        ),
        (
            "a URL added",
            vec![urls(&["/healthz"], &["get"])],
            vec![urls(&["/healthz", "/metrics"], &["get"])],
            widened(&["get /metrics"]),
        ),
        (
            "a URL prefix covers what is under it",
            vec![urls(&["/api/*"], &["get"])],
            vec![urls(&["/api/v1"], &["get"])],
            narrowed(&["get /api/*"]),
        ),
        (
            "a URL prefix replacing a URL",
            vec![urls(&["/api/v1"], &["get"])],
            vec![urls(&["/api/*"], &["get"])],
            widened(&["get /api/*"]),
        ),
        (
            "widened and narrowed at once is a widening",
            vec![pods_get_list.clone()],
            vec![rule(&[""], &["pods"], &["get", "watch"])],
            widened(&["watch pods"]),
        ),
    ];
    for (what, granted, now, want) in cases {
        assert_eq!(cmp(&granted, &now), want, "{what}");
    }
}

#[test]
fn a_comparison_too_large_to_make_is_a_widening() {
    let many: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let huge = rule(&many, &many, &many);
    let huge = named(huge, &many[..30]);
    assert!(matches!(cmp(&[], &[huge]), Integrity::Widened { .. }));
}

fn active_status(recorded: &[PolicyRule]) -> ActivationRequestStatus {
    let observed = Observed::of(recorded);
    ActivationRequestStatus {
        phase: Some(Phase::Active),
        granted_rules: observed.rules.clone(),
        role_digest: Some(observed.digest),
        ..Default::default()
    }
}

#[test]
fn judging_a_recorded_grant() {
    let recorded = [rule(&[""], &["pods"], &["get", "list"])];
    let status = active_status(&recorded);
    let same = Observed::of(&recorded);
    let wider = Observed::of(&[recorded[0].clone(), rule(&[""], &["secrets"], &["get"])]);
    let narrower = Observed::of(&[rule(&[""], &["pods"], &["get"])]);
    assert_eq!(judge(&status, Some(&same)), Verdict::Unchanged);
    assert_eq!(
        judge(&status, Some(&wider)),
        Verdict::Widened {
            added: vec!["get secrets".into()]
        }
    );
    assert_eq!(
        judge(&status, Some(&narrower)),
        Verdict::Narrowed {
            removed: vec!["list pods".into()]
        }
    );
    // Not read yet, or nothing recorded (a grant made before rules were recorded).
    assert_eq!(judge(&status, None), Verdict::Unknown);
    assert_eq!(
        judge(&ActivationRequestStatus::default(), Some(&wider)),
        Verdict::Unknown
    );
    // A record that does not hash to its digest, or a digest-only record: any change ends it.
    let mut forged = status.clone();
    forged.granted_rules = canonical(&[rule(&["*"], &["*"], &["*"])]);
    assert_eq!(judge(&forged, Some(&narrower)), Verdict::ChangedUnrecorded);
    let mut digest_only = status.clone();
    digest_only.granted_rules.clear();
    assert_eq!(judge(&digest_only, Some(&same)), Verdict::Unchanged);
    assert_eq!(
        judge(&digest_only, Some(&narrower)),
        Verdict::ChangedUnrecorded
    );
}

fn keep_active() -> Step {
    use crate::policy::lifecycle::Activation;
    Step::KeepActive {
        activation: Activation {
            activated_at: t0(),
            expires_at: t0() + chrono::TimeDelta::hours(1),
        },
        bindings: vec![],
        wake: t0() + chrono::TimeDelta::hours(1),
        tally: Default::default(),
    }
}

#[test]
fn widening_ends_the_grant_and_says_what_was_added() {
    let role = "ClusterRole pod-reader";
    let widened = Verdict::Widened {
        added: vec!["get secrets".into()],
    };
    match check(&keep_active(), &widened, role) {
        Step::End {
            phase,
            reason,
            message,
        } => {
            assert_eq!(phase, Phase::Revoked);
            assert_eq!(reason, reasons::ROLE_CHANGED);
            assert_eq!(
                message,
                "ClusterRole pod-reader now allows more than when the grant was made: added get \
                 secrets; the grant ends"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        check(&keep_active(), &Verdict::ChangedUnrecorded, role),
        Step::End { reason, .. } if reason == reasons::ROLE_CHANGED
    ));
    for kept in [
        Verdict::Unchanged,
        Verdict::Unknown,
        Verdict::Narrowed {
            removed: vec!["list pods".into()],
        },
    ] {
        assert_eq!(
            check(&keep_active(), &kept, role),
            keep_active(),
            "{kept:?}"
        );
    }
    // Only a running grant is ended here.
    let ended = Step::Settled;
    assert_eq!(check(&ended, &widened, role), Step::Settled);
}

#[test]
fn narrowing_is_a_condition_and_the_recorded_rules_stay() {
    let recorded = [rule(&[""], &["pods"], &["get", "list"])];
    let mut status = active_status(&recorded);
    let before = status.clone();
    let removed = Verdict::Narrowed {
        removed: vec!["list pods".into()],
    };
    record(
        &mut status,
        &keep_active(),
        None,
        &removed,
        "Role r",
        Some(1),
        t0(),
    );
    assert_eq!(status.granted_rules, before.granted_rules);
    assert_eq!(status.role_digest, before.role_digest);
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == ROLE_NARROWED)
        .expect("condition");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "RoleNarrowed")
    );
    assert_eq!(
        c.message,
        "Role r now allows less than when the grant was made: removed list pods; the grant is kept"
    );
    // Recorded once: the same verdict again changes nothing.
    let once = status.clone();
    record(
        &mut status,
        &keep_active(),
        None,
        &removed,
        "Role r",
        Some(1),
        t0(),
    );
    assert_eq!(status, once);
    // Back to what it was: the condition turns False.
    record(
        &mut status,
        &keep_active(),
        None,
        &Verdict::Unchanged,
        "Role r",
        Some(1),
        t0(),
    );
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == ROLE_NARROWED)
        .unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "RoleUnchanged")
    );
    // Never narrowed: no condition at all.
    let mut plain = active_status(&recorded);
    record(
        &mut plain,
        &keep_active(),
        None,
        &Verdict::Unchanged,
        "Role r",
        Some(1),
        t0(),
    );
    assert!(plain.conditions.is_empty());
}

fn activate() -> Step {
    use crate::policy::lifecycle::Activation;
    Step::Activate {
        activation: Activation {
            activated_at: t0(),
            expires_at: t0() + chrono::TimeDelta::hours(1),
        },
        bindings: vec![],
        tally: Default::default(),
        grant: crate::policy::validation::Grant {
            duration: chrono::TimeDelta::hours(1),
            namespaces: vec![],
            eligibilities: vec![],
            eligible_until: None,
            recheck_at: None,
        },
        reason: reasons::APPROVED,
        continuous_since: None,
    }
}

#[test]
fn activation_records_the_rules_in_full_or_by_digest_only() {
    let small = Observed::of(&[rule(&[""], &["pods"], &["get"])]);
    let mut status = ActivationRequestStatus::default();
    record(
        &mut status,
        &activate(),
        Some(&small),
        &Verdict::Unknown,
        "r",
        None,
        t0(),
    );
    assert_eq!(status.granted_rules, small.rules);
    assert_eq!(status.role_digest.as_deref(), Some(small.digest.as_str()));

    let resources: Vec<String> = (0..200).map(|i| format!("resource-{i}")).collect();
    let resources: Vec<&str> = resources.iter().map(String::as_str).collect();
    let large = Observed::of(&[rule(&[""], &resources, &["get"])]);
    assert!(!large.recordable());
    let mut status = ActivationRequestStatus::default();
    record(
        &mut status,
        &activate(),
        Some(&large),
        &Verdict::Unknown,
        "r",
        None,
        t0(),
    );
    assert!(status.granted_rules.is_empty());
    assert_eq!(status.role_digest.as_deref(), Some(large.digest.as_str()));
    // Unchanged, it is still judged unchanged; changed, it ends.
    assert_eq!(judge(&status, Some(&large)), Verdict::Unchanged);
    assert_eq!(judge(&status, Some(&small)), Verdict::ChangedUnrecorded);
}
