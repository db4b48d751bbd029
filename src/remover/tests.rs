//! The foothold remover against a scripted API server: what it reads, what it deletes (each
//! conditional on the uid the review saw), and what it leaves alone.
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::api::ObjectMeta;

use crate::api::{ActivationRequest, Phase};
use crate::controller::fixtures::*;
use crate::policy::foothold_removal::{RemovableKind, Removal};
use crate::time::{to_k8s, truncate_to_second};

use super::remove::{Outcome, one};

/// Alice's grant: active for the hour before it expired a second ago, reviewed.
fn ended_grant() -> ActivationRequest {
    let until = truncate_to_second(now()) - secs(1);
    activation_request("r1")
        .finalized()
        .approved_by(BOB)
        .active_until(until)
        .status_with(|s| {
            s.phase = Some(Phase::Expired);
            s.activated_at = Some(to_k8s(until - secs(3600)));
            s.ended_at = Some(to_k8s(until));
        })
}

fn meta(name: &str, uid: &str, minutes_ago: i64) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NAMESPACE.into()),
        uid: Some(uid.into()),
        creation_timestamp: Some(to_k8s(now() - secs(60 * minutes_ago))),
        ..Default::default()
    }
}

fn binding(name: &str, uid: &str, minutes_ago: i64, subject: Subject) -> RoleBinding {
    RoleBinding {
        metadata: meta(name, uid, minutes_ago),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "edit".into(),
        },
        subjects: Some(vec![subject]),
    }
}

fn alice() -> Subject {
    Subject {
        kind: "User".into(),
        name: ALICE.into(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        namespace: None,
    }
}

fn account(name: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: name.into(),
        api_group: None,
        namespace: Some(NAMESPACE.into()),
    }
}

fn removal(kind: RemovableKind, name: &str, uid: &str) -> Removal {
    Removal {
        kind,
        namespace: Some(NAMESPACE.into()),
        name: name.into(),
        uid: uid.into(),
        why: "binds the requester".into(),
    }
}

#[tokio::test]
async fn a_binding_made_during_the_grant_is_read_again_then_deleted_on_its_uid() {
    let request = ended_grant();
    let outcome = Scenario::new()
        .holding(&binding("edit-for-alice", "u1", 10, alice()))
        .then(expect::role_binding_read(NAMESPACE, "edit-for-alice"))
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "edit-for-alice",
            "u1",
        ))
        .run(|client| async move {
            one(
                &client,
                &request,
                &removal(RemovableKind::RoleBinding, "edit-for-alice", "u1"),
            )
            .await
        })
        .await;
    assert_eq!(outcome.result, Outcome::Removed);
    assert_eq!(outcome.server.writes(), 1);
    assert!(
        !outcome
            .server
            .objects
            .has_role_binding(NAMESPACE, "edit-for-alice")
    );
}

#[tokio::test]
async fn a_binding_to_a_service_account_made_during_the_grant_is_deleted() {
    let request = ended_grant();
    let made = ServiceAccount {
        metadata: meta("backdoor", "sa1", 20),
        ..Default::default()
    };
    let outcome = Scenario::new()
        .holding(&binding("backdoor-admin", "u2", 10, account("backdoor")))
        .holding(&made)
        .then(expect::role_binding_read(NAMESPACE, "backdoor-admin"))
        .then(expect::service_account_read(NAMESPACE, "backdoor"))
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "backdoor-admin",
            "u2",
        ))
        .run(|client| async move {
            one(
                &client,
                &request,
                &removal(RemovableKind::RoleBinding, "backdoor-admin", "u2"),
            )
            .await
        })
        .await;
    assert_eq!(outcome.result, Outcome::Removed);
}

#[tokio::test]
async fn what_is_not_a_foothold_as_it_is_now_is_left_alone_without_a_write() {
    let request = ended_grant();
    let older = ServiceAccount {
        metadata: meta("builder", "sa2", 600),
        ..Default::default()
    };
    let cases: Vec<(&str, Scenario, Removal, Outcome)> = vec![
        (
            "made before the grant (a verdict that names it is wrong)",
            Scenario::new()
                .holding(&binding("older", "u3", 120, alice()))
                .then(expect::role_binding_read(NAMESPACE, "older")),
            removal(RemovableKind::RoleBinding, "older", "u3"),
            Outcome::NoLongerAFoothold(""),
        ),
        (
            "binds a ServiceAccount that existed before the grant",
            Scenario::new()
                .holding(&binding("builder-admin", "u4", 10, account("builder")))
                .holding(&older)
                .then(expect::role_binding_read(NAMESPACE, "builder-admin"))
                .then(expect::service_account_read(NAMESPACE, "builder")),
            removal(RemovableKind::RoleBinding, "builder-admin", "u4"),
            Outcome::NoLongerAFoothold(""),
        ),
        (
            "the name is another object's now",
            Scenario::new()
                .holding(&binding("edit-for-alice", "someone-elses", 1, alice()))
                .then(expect::role_binding_read(NAMESPACE, "edit-for-alice")),
            removal(RemovableKind::RoleBinding, "edit-for-alice", "u1"),
            Outcome::Replaced,
        ),
        (
            "gone already",
            Scenario::new().then(expect::role_binding_read(NAMESPACE, "edit-for-alice")),
            removal(RemovableKind::RoleBinding, "edit-for-alice", "u1"),
            Outcome::AlreadyGone,
        ),
    ];
    for (what, scenario, removal, want) in cases {
        let request = request.clone();
        let outcome = scenario
            .run(|client| async move { one(&client, &request, &removal).await })
            .await;
        match (&outcome.result, &want) {
            (Outcome::NoLongerAFoothold(_), Outcome::NoLongerAFoothold(_)) => {}
            (got, want) => assert_eq!(got, want, "{what}"),
        }
        assert_eq!(outcome.server.writes(), 0, "{what}");
    }
}

#[tokio::test]
async fn a_refusal_is_reported_and_an_outage_is_retried() {
    let request = ended_grant();
    let held = binding("edit-for-alice", "u1", 10, alice());
    let refused = Scenario::new()
        .holding(&held)
        .then(expect::role_binding_read(NAMESPACE, "edit-for-alice"))
        .then(expect::role_binding_deleted(NAMESPACE, "edit-for-alice", "u1").replies_forbidden());
    let r = request.clone();
    let outcome = refused
        .run(|client| async move {
            one(
                &client,
                &r,
                &removal(RemovableKind::RoleBinding, "edit-for-alice", "u1"),
            )
            .await
        })
        .await;
    assert!(
        matches!(outcome.result, Outcome::Refused(_)),
        "{:?}",
        outcome.result
    );

    let down = Scenario::new()
        .holding(&held)
        .then(expect::role_binding_read(NAMESPACE, "edit-for-alice").replies_unavailable());
    let outcome = down
        .run(|client| async move {
            one(
                &client,
                &request,
                &removal(RemovableKind::RoleBinding, "edit-for-alice", "u1"),
            )
            .await
        })
        .await;
    assert!(
        matches!(outcome.result, Outcome::Failed(_)),
        "{:?}",
        outcome.result
    );
    assert_eq!(outcome.server.writes(), 0);
}

#[tokio::test]
async fn a_token_secret_is_deleted_on_its_uid_and_never_read() {
    let request = ended_grant();
    let token = Secret {
        metadata: meta("backdoor-token", "s1", 10),
        type_: Some("kubernetes.io/service-account-token".into()),
        ..Default::default()
    };
    // The only call is the conditional delete: no GET of a Secret, ever.
    let outcome = Scenario::new()
        .holding(&token)
        .then(expect::secret_deleted(NAMESPACE, "backdoor-token", "s1"))
        .run(|client| async move {
            one(
                &client,
                &request,
                &removal(RemovableKind::TokenSecret, "backdoor-token", "s1"),
            )
            .await
        })
        .await;
    assert_eq!(outcome.result, Outcome::Removed);
    assert_eq!(outcome.server.calls.len(), 1);
}

/// A role that reported when the grant's review finished, and says Remove now: the grant's
/// footholds are removed (within the horizon). A request looked at under Report is not set aside.
#[tokio::test]
async fn a_role_switched_to_remove_still_has_the_grants_footholds_removed() {
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    use crate::api::{FootholdAction, FootholdRef};

    let mut request = ended_grant().status_with(|s| {
        s.footholds = vec![FootholdRef {
            kind: "RoleBinding".into(),
            namespace: Some(NAMESPACE.into()),
            name: "edit-for-alice".into(),
            uid: Some("u1".into()),
            why: "binds the requester".into(),
        }];
    });
    request.metadata.uid = Some("request-uid".into());
    let reporting = privileged_role(ROLE);
    let mut removing = privileged_role(ROLE);
    removing.spec.on_footholds = FootholdAction::Remove;

    let outcome = Scenario::new()
        .holding(&binding("edit-for-alice", "u1", 10, alice()))
        // Nothing at all while the role reports; then the read and the conditional delete.
        .then(expect::role_binding_read(NAMESPACE, "edit-for-alice"))
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "edit-for-alice",
            "u1",
        ))
        .run(|client| async move {
            let (roles, mut writer) = reflector::store();
            writer.apply_watcher_event(&Event::Init);
            writer.apply_watcher_event(&Event::InitApply(reporting));
            writer.apply_watcher_event(&Event::InitDone);
            let mut remover = super::Remover {
                client: client.clone(),
                recorder: crate::events::Recorder::new(
                    client,
                    kube::runtime::events::Reporter {
                        controller: "kubepim-footholds".into(),
                        instance: None,
                    },
                ),
                roles,
                horizon: chrono::Duration::days(3650),
                settled: Default::default(),
                failing: Default::default(),
            };
            remover.consider(&request).await;
            writer.apply_watcher_event(&Event::Apply(removing));
            remover.consider(&request).await;
            // Settled now: a later status write of the same request is not acted on again.
            remover.consider(&request).await;
        })
        .await;
    assert_eq!(outcome.server.writes(), 1);
    assert!(
        outcome
            .server
            .published(crate::policy::reasons::FOOTHOLD_REMOVED)
    );
}
