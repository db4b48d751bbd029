//! The PrivilegedRole reconciler.
use std::sync::Arc;
use std::time::Duration;

use crate::api::PrivilegedRole;
use crate::api::conditions::READY;
use crate::controller::fixtures::*;
use crate::controller::role::reconcile;
use crate::policy::reasons;

#[tokio::test(start_paused = true)]
async fn missing_cluster_role_makes_the_role_not_ready_and_a_second_look_writes_nothing() {
    let role = privileged_role(ROLE);
    let caches = Caches::new().role(role.clone());

    let outcome = Scenario::new()
        .holding(&role)
        .then(expect::cluster_role_read(ROLE).replies_not_found())
        .then(expect::privileged_role_status_patched(ROLE).checking(|c| {
            let ready = c.body["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|x| x["type"] == READY))
                .cloned()
                .unwrap_or_else(|| panic!("no Ready condition: {:#}", c.body));
            assert_eq!(ready["status"], "False");
            assert_eq!(ready["reason"], reasons::REFERENCED_ROLE_NOT_FOUND);
            assert_eq!(c.body["status"]["activeGrants"], 0);
        }))
        .run(|client| reconcile(Arc::new(role.clone()), caches.context(client)))
        .await;
    let action = outcome.result.expect("the role reconcile succeeds");
    assert_eq!(outcome.server.writes(), 1);
    assert_eq!(requeue_after(&action), Some(Duration::from_secs(60)));

    let observed: PrivilegedRole = outcome
        .server
        .objects
        .get(&format!("/apis/kubepim.io/v1alpha1/privilegedroles/{ROLE}"))
        .expect("the server holds the role");
    let again = Scenario::new()
        .then(expect::cluster_role_read(ROLE).replies_not_found())
        .run(|client| reconcile(Arc::new(observed), caches.context(client)))
        .await;
    again.result.expect("the role reconcile succeeds");
    assert_eq!(
        again.server.writes(),
        0,
        "an unchanged status is not written again"
    );
}
