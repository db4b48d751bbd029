//! End-to-end: access reviews (issue 13 §1) on a real API server, as distinct users, with the
//! chart's RBAC and admission policies (`review-status`) rendered by real Helm and applied.
//!
//! - `decisions_are_the_reviewers_own_and_append_only`: admission alone (the admin, allowed
//!   every verb and so "the controller", writes the items): two reviewers decide (bob by name,
//!   carol through the group sre-leads); alice's self-review is refused, and so is carol's on a
//!   group she is in; a ServiceAccount with the reviewer role is refused; a non-reviewer, a
//!   decision in another's name or groups, two at once, an edit, a controller field, the
//!   controller deciding, and a decision after close are refused. Each refusal has a positive
//!   control.
//!
//! Run: `KUBEBUILDER_ASSETS=/opt/kubebuilder-assets cargo test --test e2e_review`
#[allow(dead_code)]
#[path = "support/security.rs"]
mod security;
mod support;

use std::io::Write as _;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kubepim::api::{
    AccessReview, AccessReviewSpec, AccessReviewStatus, Evidence, ReviewDecision, ReviewItem,
    ReviewPhase, ReviewSelector, Reviewers, SubjectRef,
};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use support::Env;
use support::envtest::{ASSETS_ENV, KUBECONFIG_ENV, groups_of};

const POLICY_TIMEOUT: Duration = Duration::from_secs(30);
const POLICY: &str = "ValidatingAdmissionPolicy 'kubepim-review-status'";

fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn cluster_configured() -> bool {
    [ASSETS_ENV, KUBECONFIG_ENV]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
}

static RELEASE: OnceCell<bool> = OnceCell::const_new();

/// The shared control plane with the chart's RBAC and policies, and the chart's reviewer role
/// bound to bob, carol, alice and mallory (RBAC lets all four patch review status; the policy
/// decides). `None`: skipped.
async fn env(test: &str) -> Option<Env> {
    if !cluster_configured() {
        say("SKIPPED: e2e_review: set KUBEBUILDER_ASSETS (or KUBEPIM_E2E_KUBECONFIG)");
        return None;
    }
    let env = Env::shared(test).await?;
    let installed = *RELEASE
        .get_or_init(|| async {
            let values = json!({"admission": {"policies": {"enabled": true}}});
            let release = security::install(&env, values)
                .await
                .unwrap_or_else(|e| panic!("installing the chart's security layer: {e:#}"));
            if release.is_none() {
                return false;
            }
            let binding = ClusterRoleBinding {
                metadata: ObjectMeta {
                    name: Some("kubepim-e2e-reviewers".into()),
                    ..Default::default()
                },
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "ClusterRole".into(),
                    name: "kubepim-reviewer".into(),
                },
                subjects: Some(
                    ["alice", "bob", "carol", "mallory"]
                        .iter()
                        .map(|u| Subject {
                            api_group: Some("rbac.authorization.k8s.io".into()),
                            kind: "User".into(),
                            name: u.to_string(),
                            namespace: None,
                        })
                        .collect(),
                ),
            };
            Api::<ClusterRoleBinding>::all(env.admin())
                .patch(
                    "kubepim-e2e-reviewers",
                    &PatchParams::apply("kubepim-e2e").force(),
                    &Patch::Apply(&binding),
                )
                .await
                .expect("binding the reviewer role");
            true
        })
        .await;
    if !installed {
        say("SKIPPED: e2e_review: python3 module helm_python missing");
        return None;
    }
    Some(env)
}

fn item(eligibility: &str, subject: SubjectRef) -> ReviewItem {
    ReviewItem {
        id: kubepim::policy::review::item_id(eligibility, &subject),
        eligibility: eligibility.into(),
        eligibility_uid: "uid".into(),
        eligibility_generation: 1,
        eligibility_subjects: None,
        role: "payments-admin".into(),
        subject,
        evidence: Evidence::default(),
        recommendation: ReviewDecision::Remove,
        recommendation_reason: "unused for 90 days".into(),
        outcome: None,
    }
}

/// A review by bob and the group sre-leads, opened by the admin with three items: alice,
/// mallory, and the group payments-oncall (alice and carol are in it).
async fn open_review(env: &Env, base: &str) -> String {
    let name = env.name(base);
    let spec = AccessReviewSpec {
        selector: ReviewSelector {
            all: true,
            ..Default::default()
        },
        reviewers: Reviewers {
            users: vec!["bob".into()],
            groups: vec!["sre-leads".into()],
            subjects_approvers: false,
        },
        due_at: None,
        duration: Some("336h".parse().expect("duration")),
        default_decision: ReviewDecision::Keep,
        lookback: "2160h".parse().expect("duration"),
        schedule: None,
    };
    let mut review = AccessReview::new(&name, spec);
    review.metadata.labels = Some(env.labels());
    let api: Api<AccessReview> = Api::all(env.admin());
    api.create(&PostParams::default(), &review)
        .await
        .expect("creating the review");
    let status = AccessReviewStatus {
        phase: Some(ReviewPhase::Open),
        items: vec![
            item("pay", SubjectRef::user("alice")),
            item("pay", SubjectRef::user("mallory")),
            item("pay", SubjectRef::group("payments-oncall")),
        ],
        item_count: Some(3),
        ..Default::default()
    };
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .expect("the admin (allowed manage) opening the review");
    name
}

fn entry(item: &str, decision: &str, reviewer: &str) -> Value {
    json!({"item": item, "decision": decision, "reviewer": reviewer, "groups": groups_of(reviewer)})
}

/// Appends `entries` to the review's decisions as `client` (merge patch of the whole list).
async fn append(client: &Client, name: &str, entries: &[Value]) -> Result<(), kube::Error> {
    let api: Api<AccessReview> = Api::all(client.clone());
    let current = api.get_status(name).await?;
    let mut decisions: Vec<Value> = current
        .status
        .map(|s| s.decisions)
        .unwrap_or_default()
        .iter()
        .map(|d| serde_json::to_value(d).expect("decision to JSON"))
        .collect();
    decisions.extend(entries.iter().cloned());
    patch(client, name, json!({"status": {"decisions": decisions}})).await
}

async fn patch(client: &Client, name: &str, body: Value) -> Result<(), kube::Error> {
    Api::<AccessReview>::all(client.clone())
        .patch_status(name, &PatchParams::default(), &Patch::Merge(body))
        .await
        .map(drop)
}

#[track_caller]
fn refused(what: &str, result: Result<(), kube::Error>, message: &str) {
    match result {
        Err(kube::Error::Api(e)) => {
            assert!(
                e.message.contains(POLICY) && e.message.contains(message),
                "{what}: refused, but not by the review-status policy with {message:?}: {}",
                e.message
            );
        }
        Err(e) => panic!("{what}: failed without an API error: {e}"),
        Ok(()) => panic!("{what}: accepted, must be refused ({message})"),
    }
}

#[track_caller]
fn accepted(what: &str, result: Result<(), kube::Error>) {
    if let Err(e) = result {
        panic!("{what}: refused, must be accepted: {e}");
    }
}

#[tokio::test]
async fn decisions_are_the_reviewers_own_and_append_only() {
    let Some(env) = env("decisions").await else {
        return;
    };
    let name = open_review(&env, "q1").await;
    let (alice, bob, carol, mallory) = (
        env.client("alice"),
        env.client("bob"),
        env.client("carol"),
        env.client("mallory"),
    );
    let alice_item = "pay/User/alice";
    let mallory_item = "pay/User/mallory";
    let group_item = "pay/Group/payments-oncall";

    // The policy takes effect through the API server's informers: wait for the first refusal,
    // on a review of its own (a probe accepted before the policy is in effect must not leave a
    // decision in the review under test).
    let probe = open_review(&env, "probe").await;
    security::eventually("the review-status policy", POLICY_TIMEOUT, || async {
        match append(&alice, &probe, &[entry(alice_item, "Keep", "alice")]).await {
            Err(kube::Error::Api(e)) if e.message.contains(POLICY) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("policy in effect");

    refused(
        "alice keeping her own access",
        append(&alice, &name, &[entry(alice_item, "Keep", "alice")]).await,
        "you cannot review your own access",
    );
    refused(
        "carol deciding about a group she is in",
        append(&carol, &name, &[entry(group_item, "Keep", "carol")]).await,
        "you cannot review your own access",
    );
    refused(
        "mallory, not a reviewer",
        append(&mallory, &name, &[entry(alice_item, "Remove", "mallory")]).await,
        "is not a reviewer of item",
    );
    refused(
        "bob deciding in carol's name",
        append(&bob, &name, &[entry(alice_item, "Keep", "carol")]).await,
        "must be your own identity 'bob'",
    );
    let mut no_groups = entry(alice_item, "Keep", "bob");
    no_groups["groups"] = json!([]);
    refused(
        "bob without his groups",
        append(&bob, &name, &[no_groups]).await,
        "must be exactly your own groups",
    );
    refused(
        "bob deciding two items at once",
        append(
            &bob,
            &name,
            &[
                entry(alice_item, "Keep", "bob"),
                entry(mallory_item, "Remove", "bob"),
            ],
        )
        .await,
        "append exactly one decision per write",
    );
    refused(
        "bob on an item the review does not have",
        append(&bob, &name, &[entry("pay/User/zed", "Keep", "bob")]).await,
        "no item 'pay/User/zed'",
    );

    // Positive controls: bob by name, carol through sre-leads, bob on the group.
    accepted(
        "bob keeping alice",
        append(&bob, &name, &[entry(alice_item, "Keep", "bob")]).await,
    );
    accepted(
        "carol removing mallory",
        append(&carol, &name, &[entry(mallory_item, "Remove", "carol")]).await,
    );
    accepted(
        "bob keeping payments-oncall",
        append(&bob, &name, &[entry(group_item, "Keep", "bob")]).await,
    );

    // Append-only: no edit, no removal, no duplicate.
    let edited = json!({"status": {"decisions": [
        entry(alice_item, "Remove", "bob"),
        entry(mallory_item, "Remove", "carol"),
        entry(group_item, "Keep", "bob"),
        entry(alice_item, "Remove", "bob"),
    ]}});
    refused(
        "bob rewriting his decision",
        patch(&bob, &name, edited).await,
        "append-only",
    );
    refused(
        "bob recording the same decision twice",
        append(&bob, &name, &[entry(alice_item, "Keep", "bob")]).await,
        "already recorded",
    );
    refused(
        "bob closing the review",
        patch(&bob, &name, json!({"status": {"phase": "Closed"}})).await,
        "only the kubepim controller may set status.phase",
    );

    // A ServiceAccount with the reviewer role.
    let ns = env.namespace("robots").await;
    let robot = security::service_account_client(&env, &ns, "robot").await;
    let robot_name = format!("system:serviceaccount:{ns}:robot");
    let crb = ClusterRoleBinding {
        metadata: env.meta("robot-reviewer"),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "kubepim-reviewer".into(),
        },
        subjects: Some(vec![Subject {
            api_group: None,
            kind: "ServiceAccount".into(),
            name: "robot".into(),
            namespace: Some(ns.clone()),
        }]),
    };
    Api::<ClusterRoleBinding>::all(env.admin())
        .create(&PostParams::default(), &crb)
        .await
        .expect("binding the robot");
    let robot_entry = json!({"item": alice_item, "decision": "Remove", "reviewer": robot_name,
        "groups": security::service_account_groups(&ns)});
    security::eventually("the robot's RBAC", POLICY_TIMEOUT, || async {
        match append(&robot, &name, std::slice::from_ref(&robot_entry)).await {
            Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains(POLICY) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("robot reaches admission");
    refused(
        "a ServiceAccount reviewing",
        append(&robot, &name, &[robot_entry]).await,
        "cannot review access",
    );

    // The controller (here the admin, allowed every verb) never decides.
    refused(
        "the controller deciding",
        append(&env.admin(), &name, &[entry(alice_item, "Remove", "admin")]).await,
        "never adds, removes or changes review decisions",
    );
    // It closes; after that nobody decides.
    accepted(
        "the controller closing",
        patch(&env.admin(), &name, json!({"status": {"phase": "Closed"}})).await,
    );
    refused(
        "bob deciding after close",
        append(&bob, &name, &[entry(mallory_item, "Keep", "bob")]).await,
        "decisions are accepted only while it is Open",
    );

    let review = Api::<AccessReview>::all(env.admin())
        .get(&name)
        .await
        .expect("the review");
    let recorded: Vec<(String, String)> = review
        .status
        .map(|s| s.decisions)
        .unwrap_or_default()
        .into_iter()
        .map(|d| (d.item, d.reviewer))
        .collect();
    assert_eq!(
        recorded,
        [
            (alice_item.to_string(), "bob".to_string()),
            (mallory_item.to_string(), "carol".to_string()),
            (group_item.to_string(), "bob".to_string()),
        ],
        "{}",
        review.metadata.name.as_deref().unwrap_or_default()
    );
}

/// Binds the chart's reviewer role to `users` (RBAC lets them patch review status; the policy
/// decides what they may write).
async fn bind_reviewers(env: &Env, users: &[&str]) {
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some("kubepim-e2e-reviewers".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "kubepim-reviewer".into(),
        },
        subjects: Some(
            users
                .iter()
                .map(|u| Subject {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "User".into(),
                    name: u.to_string(),
                    namespace: None,
                })
                .collect(),
        ),
    };
    Api::<ClusterRoleBinding>::all(env.admin())
        .patch(
            "kubepim-e2e-reviewers",
            &PatchParams::apply("kubepim-e2e").force(),
            &Patch::Apply(&binding),
        )
        .await
        .expect("binding the reviewer role");
}

async fn review_of(env: &Env, name: &str) -> AccessReview {
    Api::<AccessReview>::all(env.admin())
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("review {name}: {e}"))
}

/// The operator (as the chart's ServiceAccount, with the chart's RBAC and policies) fills a
/// quarterly review, two reviewers decide, alice's self-review is refused, the review closes at
/// its due time, bob's removal revokes alice's active grant and shows on the Eligibility, the
/// schedule creates the next review, and a change of the Eligibility in Git lifts the removal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarterly_review_removes_and_revokes() {
    if !cluster_configured() {
        say("SKIPPED: e2e_review: set KUBEBUILDER_ASSETS (or KUBEPIM_E2E_KUBECONFIG)");
        return;
    }
    let Some(env) = Env::isolated("review-flow").await else {
        return;
    };
    if env.startup().is_none() {
        say("SKIPPED: a_quarterly_review_removes_and_revokes needs a control plane of its own");
        return;
    }
    let values = json!({
        "admission": {"policies": {"enabled": true}},
        "bindableRoles": {"clusterRoles": [support::envtest::POD_READER], "roles": []},
    });
    let Some(_release) = security::install(&env, values)
        .await
        .unwrap_or_else(|e| panic!("installing: {e:#}"))
    else {
        say("SKIPPED: e2e_review: python3 module helm_python missing");
        return;
    };
    bind_reviewers(&env, &["alice", "bob", "carol"]).await;
    let mut config =
        security::service_account_config(&env, security::RELEASE_NAMESPACE, security::OPERATOR_SA)
            .await
            .expect("operator identity");
    config.default_retry = false;
    env.start_operator_with(Default::default(), config);

    let ns = env.namespace("apps").await;
    let role =
        support::fixtures::create_role(&env, &support::fixtures::pod_reader(&env, "pods", &[&ns]))
            .await
            .metadata
            .name
            .expect("role name");
    let el = support::fixtures::eligibility(
        &env,
        "pay",
        &role,
        vec![SubjectRef::user("alice"), SubjectRef::user("mallory")],
    );
    let el = support::fixtures::create_eligibility(&env, &el).await;
    let elig = el.metadata.name.clone().expect("eligibility name");
    let request = support::fixtures::request(&env, "grant", "alice", &role, &[&ns], "30m");
    let request = support::fixtures::submit(&env, "alice", &request)
        .await
        .metadata
        .name
        .expect("request name");
    support::wait::phase(&env, &request, kubepim::api::Phase::Active).await;

    // The review: by bob and sre-leads (carol), due 20 s after creation, quarterly.
    let name = env.name("quarterly");
    let mut review = AccessReview::new(
        &name,
        AccessReviewSpec {
            selector: ReviewSelector {
                roles: vec![role.clone()],
                ..Default::default()
            },
            reviewers: Reviewers {
                users: vec!["bob".into()],
                groups: vec!["sre-leads".into()],
                subjects_approvers: false,
            },
            due_at: None,
            duration: Some("20s".parse().expect("duration")),
            default_decision: ReviewDecision::Keep,
            lookback: "2160h".parse().expect("duration"),
            schedule: Some(kubepim::api::ReviewSchedule {
                every: "2160h".parse().expect("duration"),
            }),
        },
    );
    review.metadata.labels = Some(env.labels());
    Api::<AccessReview>::all(env.admin())
        .create(&PostParams::default(), &review)
        .await
        .expect("creating the review");
    let opened = support::wait::until(
        &env,
        "the review to open",
        support::wait::TIMEOUT,
        || async {
            let r = review_of(&env, &name).await;
            match r.phase() {
                Some(ReviewPhase::Open) => Ok(r),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let status = opened.status.expect("status");
    let ids: Vec<&str> = status.items.iter().map(|i| i.id.as_str()).collect();
    let alice_item = format!("{elig}/User/alice");
    let mallory_item = format!("{elig}/User/mallory");
    assert_eq!(ids, [alice_item.as_str(), mallory_item.as_str()]);
    assert_eq!(
        status.items[0].evidence.activations, 1,
        "alice's grant is evidence"
    );
    assert_eq!(
        status.items[1].recommendation,
        ReviewDecision::Keep,
        "young eligibility"
    );

    security::eventually("the review-status policy", POLICY_TIMEOUT, || async {
        match append(
            &env.client("alice"),
            &name,
            &[entry(&alice_item, "Keep", "alice")],
        )
        .await
        {
            Err(kube::Error::Api(e)) if e.message.contains(POLICY) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("policy in effect");
    refused(
        "alice keeping her own access",
        append(
            &env.client("alice"),
            &name,
            &[entry(&alice_item, "Keep", "alice")],
        )
        .await,
        "you cannot review your own access",
    );
    accepted(
        "bob removing alice",
        append(
            &env.client("bob"),
            &name,
            &[entry(&alice_item, "Remove", "bob")],
        )
        .await,
    );
    // carol as `kubectl pim review` does it: her items (never her own), then her decision
    // under the identity the API server reports for her.
    let carol = env.client("carol");
    let me = kubepim::ops::who_am_i(&carol)
        .await
        .expect("carol's identity");
    let listed = review_of(&env, &name).await;
    let mine: Vec<&str> = kubepim::ops::reviews::my_items(&listed, &me)
        .iter()
        .map(|i| i.item.id.as_str())
        .collect();
    assert_eq!(mine, [alice_item.as_str(), mallory_item.as_str()]);
    kubepim::ops::reviews::decide(
        &carol,
        &me,
        &name,
        &mallory_item,
        ReviewDecision::Keep,
        Some("still on call"),
    )
    .await
    .expect("carol keeping mallory through kubectl pim's operation");
    // alice through the same operation: refused before anything is written.
    let alice_me = kubepim::ops::who_am_i(&env.client("alice"))
        .await
        .expect("alice");
    let refused_locally = kubepim::ops::reviews::decide(
        &env.client("alice"),
        &alice_me,
        &name,
        &alice_item,
        ReviewDecision::Keep,
        None,
    )
    .await;
    assert!(
        matches!(&refused_locally, Err(kubepim::ops::OpsError::Refused(r)) if r.sentence.contains("cannot review your own access")),
        "{refused_locally:?}"
    );

    // Closed at the due time; alice's grant, resting only on the removed subject, is revoked.
    let closed = support::wait::until(
        &env,
        "the review to close",
        Duration::from_secs(60),
        || async {
            let r = review_of(&env, &name).await;
            match r.phase() {
                Some(ReviewPhase::Closed) => Ok(r),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let outcomes: Vec<_> = closed
        .status
        .as_ref()
        .expect("status")
        .items
        .iter()
        .map(|i| i.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [Some(ReviewDecision::Remove), Some(ReviewDecision::Keep)]
    );
    let revoked = support::wait::phase(&env, &request, kubepim::api::Phase::Revoked).await;
    assert!(
        support::fixtures::role_bindings_of(&env, &request)
            .await
            .is_empty(),
        "alice's binding is gone: {}",
        support::wait::describe(&revoked)
    );
    let eligibilities: Api<kubepim::api::Eligibility> = Api::all(env.admin());
    support::wait::until(
        &env,
        "the removal on the Eligibility",
        support::wait::TIMEOUT,
        || async {
            let e = eligibilities.get(&elig).await.map_err(|e| e.to_string())?;
            let status = e.status.unwrap_or_default();
            let removed: Vec<&str> = status
                .removed_by_review
                .iter()
                .map(|r| r.subject.name.as_str())
                .collect();
            let condition = status
                .conditions
                .iter()
                .find(|c| c.type_ == "ReviewRemoved");
            match condition {
                Some(c) if c.status == "True" && removed == ["alice"] => Ok(()),
                other => Err(format!("removed {removed:?}, condition {other:?}")),
            }
        },
    )
    .await;
    // A new request by alice on the same eligibility is denied; mallory's still granted.
    let again = support::fixtures::request(&env, "again", "alice", &role, &[&ns], "5m");
    let again = support::fixtures::submit(&env, "alice", &again)
        .await
        .metadata
        .name
        .expect("name");
    support::wait::phase(&env, &again, kubepim::api::Phase::Denied).await;
    let mallory = support::fixtures::request(&env, "mallory", "mallory", &role, &[&ns], "5m");
    let mallory = support::fixtures::submit(&env, "mallory", &mallory)
        .await
        .metadata
        .name
        .expect("name");
    support::wait::phase(&env, &mallory, kubepim::api::Phase::Active).await;

    // The schedule: the next review exists, due one period after this one.
    let next = support::wait::until(&env, "the next review", support::wait::TIMEOUT, || async {
        let r = review_of(&env, &name).await;
        r.status
            .and_then(|s| s.next_review)
            .ok_or_else(|| "no status.nextReview yet".to_string())
    })
    .await;
    let next = review_of(&env, &next).await;
    let due = kubepim::policy::review::due_at(&closed).expect("due");
    assert_eq!(
        next.spec.due_at.as_ref().map(kubepim::time::from_k8s),
        Some(due + chrono::Duration::hours(2160))
    );

    // Git changes the Eligibility: the removal no longer holds.
    eligibilities
        .patch(
            &elig,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"subjects": [
                {"kind": "User", "name": "alice"}, {"kind": "User", "name": "mallory"},
                {"kind": "User", "name": "carol"}]}})),
        )
        .await
        .expect("Git edits the Eligibility");
    support::wait::until(
        &env,
        "the removal lifted",
        support::wait::TIMEOUT,
        || async {
            let e = eligibilities.get(&elig).await.map_err(|e| e.to_string())?;
            let status = e.status.unwrap_or_default();
            let condition = status
                .conditions
                .iter()
                .find(|c| c.type_ == "ReviewRemoved");
            match condition {
                Some(c) if c.status == "False" && status.removed_by_review.is_empty() => Ok(()),
                other => Err(format!("condition {other:?}")),
            }
        },
    )
    .await;
    assert_eq!(env.stop_operator().await, "Ok(())");
}
