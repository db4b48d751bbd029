//! The journeys of `tests/e2e_plugin.rs`: each test has a control plane of its own, because the
//! operator it runs sees every request in the cluster.
use super::*;

/// alice requests with --wait, bob approves, alice's wait exits 0 when Active; the refusals of
/// alice (her own request) and mallory (not an approver) name their reason; `ls --to-approve`,
/// `show`, `roles`, `cancel`.
#[tokio::test]
async fn request_approve_wait_show_cancel() {
    let Some((env, _operator)) = cluster("plugin-approve").await else {
        return;
    };
    let (role, ns) = role_for_alice(&env).await;

    let roles = expect(&env, "alice", &["roles"], 0).await;
    let row = roles
        .stdout
        .lines()
        .find(|l| l.starts_with(&role))
        .unwrap_or_else(|| panic!("{}", roles.text()));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..5],
        [role.as_str(), ns.as_str(), "1h0m0s", "10m0s", "1"],
        "{row}"
    );
    let none = expect(&env, "mallory", &["roles"], 0).await;
    assert_eq!(
        none.stdout,
        "You are not eligible for any PrivilegedRole.\n"
    );

    let (wait, name) = request_and_wait(
        &env,
        "alice",
        &[
            "request",
            &role,
            "-n",
            &ns,
            "--for",
            "20m",
            "--reason",
            "INC-1 pods crash",
            "--ticket",
            "INC-1",
            "--wait",
            "--timeout",
            "2m",
        ],
    )
    .await;
    assert!(name.starts_with(&format!("{role}-alice-")), "{name}");
    assert!(name.len() <= 63, "{name}");

    // Who sees it as something to approve.
    let bob_todo = expect(&env, "bob", &["ls", "--to-approve"], 0).await;
    assert!(bob_todo.stdout.contains(&name), "{}", bob_todo.text());
    let mallory_todo = expect(&env, "mallory", &["ls", "--to-approve"], 0).await;
    assert!(
        !mallory_todo.stdout.contains(&name),
        "{}",
        mallory_todo.text()
    );
    let alice_todo = expect(&env, "alice", &["ls", "--to-approve"], 0).await;
    assert!(!alice_todo.stdout.contains(&name), "{}", alice_todo.text());
    let mine = expect(&env, "alice", &["ls"], 0).await;
    assert!(
        mine.stdout.contains(&name) && mine.stdout.contains("Pending"),
        "{}",
        mine.text()
    );
    assert!(!expect(&env, "bob", &["ls"], 0).await.stdout.contains(&name));

    // Refusals, each with its own sentence.
    let own = expect(&env, "alice", &["approve", &name], 3).await;
    assert!(
        own.stderr.contains("it is your own request"),
        "{}",
        own.text()
    );
    let stranger = expect(&env, "mallory", &["approve", &name, "--reason", "sure"], 3).await;
    assert!(
        stranger
            .stderr
            .contains("you are not an approver of PrivilegedRole"),
        "{}",
        stranger.text()
    );

    let approved = expect(&env, "bob", &["approve", &name, "--reason", "lgtm"], 0).await;
    assert_eq!(
        approved.stdout,
        format!("activationrequest.kubepim.io/{name} approved\n")
    );
    let again = expect(&env, "bob", &["approve", &name], 3).await;
    assert!(again.stderr.contains("already decided"), "{}", again.text());

    let waited = finished(wait).await;
    assert_eq!(waited.code, 0, "{}", waited.text());
    assert!(
        waited
            .stderr
            .contains("Pending, waiting for approval (0/1)"),
        "{}",
        waited.text()
    );
    assert!(
        waited.stderr.contains("approved by bob: \"lgtm\" (1/1)"),
        "{}",
        waited.text()
    );
    assert!(
        waited.stderr.contains(&format!("{name}: Active until ")),
        "{}",
        waited.text()
    );

    let show = expect(&env, "alice", &["show", &name], 0).await;
    for needle in [
        format!("requested {role} in {ns} for 20m0s by alice: \"INC-1 pods crash\" (ticket INC-1)"),
        "approved by bob: \"lgtm\"".to_string(),
        format!("activated: RoleBinding {ns}/kubepim-{name}"),
        "expires".to_string(),
    ] {
        assert!(
            show.stdout.contains(&needle),
            "show lacks {needle:?}:\n{}",
            show.text()
        );
    }
    // alice may not read Events; the admin sees the controller's.
    assert!(
        show.stdout.contains("not allowed to read Events"),
        "{}",
        show.text()
    );
    security::eventually("the Activated Event", Duration::from_secs(20), || async {
        let r = run(&env, "admin", &["show", &name]).await;
        if r.stdout.contains("Normal Activated") {
            Ok(())
        } else {
            Err(r.text())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));

    let active = expect(&env, "alice", &["ls", "--active", "-o", "json"], 0).await;
    let doc: serde_json::Value = serde_json::from_str(&active.stdout).expect("ls -o json");
    assert_eq!(
        doc["items"][0]["metadata"]["name"],
        name.as_str(),
        "{}",
        active.text()
    );
    assert_eq!(doc["items"][0]["status"]["phase"], "Active");

    let cancel_other = expect(&env, "bob", &["cancel", &name], 3).await;
    assert!(
        cancel_other
            .stderr
            .contains(&format!("Only the requester of {name} can cancel it.")),
        "{}",
        cancel_other.text()
    );
    expect(&env, "alice", &["cancel", &name], 0).await;
    phase_becomes(&env, &name, Phase::Cancelled).await;
    // A decision on an ended request: the server refuses it, the plugin says why.
    let late = expect(&env, "carol", &["approve", &name], 3).await;
    assert!(late.stderr.contains("has already ended"), "{}", late.text());
    assert!(
        late.stderr.contains("the API server said:"),
        "{}",
        late.text()
    );
    let again = expect(&env, "alice", &["cancel", &name], 0).await;
    assert!(
        again.stdout.contains("already cancelled"),
        "{}",
        again.text()
    );
}

/// carol denies: alice's wait exits 3 with the controller's reason; a request nobody approves
/// times out (4); mallory's request is denied as not eligible (3).
#[tokio::test]
async fn deny_timeout_and_not_eligible() {
    let Some((env, _operator)) = cluster("plugin-deny").await else {
        return;
    };
    let (role, ns) = role_for_alice(&env).await;

    let (wait, name) = request_and_wait(
        &env,
        "alice",
        &["request", &role, "-n", &ns, "--reason", "deploy", "--wait"],
    )
    .await;
    let denied = expect(
        &env,
        "carol",
        &["deny", &name, "--reason", "use the runbook"],
        0,
    )
    .await;
    assert_eq!(
        denied.stdout,
        format!("activationrequest.kubepim.io/{name} denied\n")
    );
    let waited = finished(wait).await;
    assert_eq!(waited.code, 3, "{}", waited.text());
    assert!(
        waited.stderr.contains(&format!(
            "{name}: Denied: DeniedByApprover: denied by carol"
        )),
        "{}",
        waited.text()
    );
    assert!(
        waited.stderr.contains("use the runbook"),
        "{}",
        waited.text()
    );
    let late = expect(&env, "bob", &["approve", &name], 3).await;
    assert!(late.stderr.contains("has already ended"), "{}", late.text());
    assert!(
        late.stderr
            .contains("is Denied: approvals after a terminal phase are refused"),
        "{}",
        late.text()
    );
    let show = expect(&env, "alice", &["show", &name, "-o", "yaml"], 0).await;
    let doc: serde_json::Value = serde_saphyr::from_str(&show.stdout).expect("show -o yaml");
    assert_eq!(
        doc["request"]["status"]["phase"],
        "Denied",
        "{}",
        show.text()
    );
    assert!(
        doc["request"]["metadata"].get("managedFields").is_none(),
        "{}",
        show.text()
    );
    let said: Vec<&str> = doc["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .filter_map(|e| e["what"].as_str())
        .collect();
    assert!(
        said.contains(&"denied by carol: \"use the runbook\""),
        "{said:?}"
    );

    let slow = expect(
        &env,
        "alice",
        &[
            "request",
            &role,
            "-n",
            &ns,
            "--reason",
            "later",
            "--name",
            &env.name("slow"),
            "--wait",
            "--timeout",
            "3s",
        ],
        4,
    )
    .await;
    assert!(
        slow.stderr.contains("timed out after 3s"),
        "{}",
        slow.text()
    );
    assert!(slow.stderr.contains("still Pending"), "{}", slow.text());

    let stranger = expect(
        &env,
        "mallory",
        &[
            "request",
            &role,
            "-n",
            &ns,
            "--reason",
            "curious",
            "--wait",
            "--timeout",
            "1m",
        ],
        3,
    )
    .await;
    assert!(
        stranger.stderr.contains("Denied: NotEligible"),
        "{}",
        stranger.text()
    );

    // Without the cluster: usage errors and completion.
    let usage = expect(&env, "alice", &["deny", &name], 2).await;
    assert!(usage.stderr.contains("--reason"), "{}", usage.text());
    let completion = expect(&env, "alice", &["completion", "bash"], 0).await;
    assert!(
        completion.stdout.contains("kubectl-pim"),
        "{}",
        completion.text()
    );
}

/// alice extends her active grant with `kubectl pim extend --wait`; bob approves the extension;
/// the wait exits 0, the original ends `Extended`, and alice keeps access throughout.
#[tokio::test]
async fn extend_hands_over() {
    let Some((env, _operator)) = cluster("plugin-extend").await else {
        return;
    };
    let (role, ns) = role_for_alice(&env).await;
    let (wait, first) = request_and_wait(
        &env,
        "alice",
        &[
            "request", &role, "-n", &ns, "--for", "20m", "--reason", "INC-2", "--wait",
        ],
    )
    .await;
    expect(&env, "bob", &["approve", &first], 0).await;
    assert_eq!(finished(wait).await.code, 0);

    let (wait, second) = request_and_wait(
        &env,
        "alice",
        &[
            "extend",
            &first,
            "--for",
            "10m",
            "--reason",
            "INC-2 still open",
            "--wait",
            "--timeout",
            "2m",
        ],
    )
    .await;
    assert!(second.starts_with(&format!("{role}-alice-")), "{second}");
    let bob_todo = expect(&env, "bob", &["ls", "--to-approve"], 0).await;
    assert!(bob_todo.stdout.contains(&second), "{}", bob_todo.text());
    expect(&env, "bob", &["approve", &second], 0).await;
    let done = finished(wait).await;
    assert_eq!(done.code, 0, "{}", done.text());
    phase_becomes(&env, &first, Phase::Expired).await;
    let original = Api::<ActivationRequest>::all(env.admin())
        .get(&first)
        .await
        .expect("the original");
    assert_eq!(
        original.status.as_ref().and_then(|s| s.reason.as_deref()),
        Some(kubepim::policy::reasons::EXTENDED)
    );
    assert!(fixtures::can(&env, "alice", "list", "pods", Some(&ns)).await);

    // Extending someone else's grant ends Denied (here without the webhook, so the controller
    // says it: mallory is not even eligible), and --wait exits 3 with the reason.
    let theirs = expect(
        &env,
        "mallory",
        &[
            "extend",
            &second,
            "--reason",
            "mine now",
            "--wait",
            "--timeout",
            "1m",
        ],
        3,
    )
    .await;
    assert!(theirs.stderr.contains("Denied"), "{}", theirs.text());
}
