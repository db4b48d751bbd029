//! End-to-end: the real `kubectl-pim` binary, run as different people with their own
//! kubeconfigs, against a real API server with the chart's admission policies and RBAC
//! (`admission.rbacApproval` on) and the in-process operator running as the chart's
//! ServiceAccount. No webhook: the plugin writes the caller's own identity (from a
//! SelfSubjectReview) into requests and approvals, which is what the policies then check.
//!
//! People: alice is eligible and requests; bob and carol approve (users of the role, and bound to
//! the chart's `kubepim-approver`); mallory is neither eligible nor an approver.
//!
//! Needs a local control plane (`KUBEBUILDER_ASSETS`: per-user kubeconfigs) and helm_python to
//! render the chart (`pip install -r tests/chart/requirements.txt`); without them it says so on
//! one line and passes.
//! Run: `KUBEBUILDER_ASSETS=/opt/kubebuilder-assets cargo test --test e2e_plugin -- --test-threads 2`
// Not every helper of the security layer is needed here.
#[allow(dead_code)]
#[path = "support/security.rs"]
mod security;
mod support;

use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use kubepim::api::{ActivationRequest, Phase, SubjectRef};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use security::{OPERATOR_SA, RELEASE_NAMESPACE};
use support::envtest::{NAMESPACE_READER, POD_READER, groups_of};
use support::{Env, fixtures};

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-pim");
const POLICY_TIMEOUT: Duration = Duration::from_secs(30);

fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn text(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn pim(env: &Env, user: &str, args: &[&str]) -> Command {
    let kubeconfig = env
        .kubeconfig(user)
        .expect("a local control plane has kubeconfigs");
    let mut cmd = Command::new(BIN);
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    // No ambient kubeconfig may leak in.
    cmd.env_remove("KUBECONFIG").stdin(Stdio::null());
    cmd
}

async fn run(env: &Env, user: &str, args: &[&str]) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(120), pim(env, user, args).output())
        .await
        .unwrap_or_else(|_| panic!("{user} {args:?}: no exit within 120s"))
        .unwrap_or_else(|e| panic!("running {BIN}: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// Runs, and asserts the exit code.
async fn expect(env: &Env, user: &str, args: &[&str], code: i32) -> Run {
    let r = run(env, user, args).await;
    assert_eq!(
        r.code,
        code,
        "{user}: kubectl pim {}\n{}",
        args.join(" "),
        r.text()
    );
    r
}

/// `request ... --wait` in the background; returns the child and the generated request name
/// (read from its first stdout line).
async fn request_and_wait(env: &Env, user: &str, args: &[&str]) -> (Child, String) {
    let mut child = pim(env, user, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn kubectl-pim");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the request is created within 60s")
        .expect("stdout")
        .unwrap_or_default();
    let name = first
        .strip_prefix("activationrequest.kubepim.io/")
        .and_then(|rest| rest.strip_suffix(" created"))
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    (child, name)
}

/// Waits for the background `--wait` to exit.
async fn finished(child: Child) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("--wait exits within 120s")
        .expect("wait for kubectl-pim");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

fn user(name: &str) -> Subject {
    fixtures::user_subject(name)
}

/// The chart's security layer, bob and carol bound to `kubepim-approver`, and the operator as
/// the chart's ServiceAccount. `None` (said why) when this machine cannot run it.
async fn cluster(test: &str) -> Option<(Env, tokio::sync::oneshot::Sender<()>)> {
    let env = Env::isolated(test).await?;
    if env.kubeconfig("alice").is_none() {
        say(
            "SKIPPED: e2e_plugin needs a local control plane (KUBEBUILDER_ASSETS) for per-user kubeconfigs",
        );
        return None;
    }
    let values = json!({
        "admission": {"policies": {"enabled": true}, "rbacApproval": true},
        "bindableRoles": {"clusterRoles": [POD_READER, NAMESPACE_READER]},
    });
    let Some(_release) = security::install(&env, values)
        .await
        .expect("installing the chart's policies")
    else {
        say(
            "SKIPPED: e2e_plugin: python3 module helm_python missing; pip install -r tests/chart/requirements.txt",
        );
        return None;
    };
    let approvers = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some("kubepim-e2e-approvers".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "kubepim-approver".into(),
        },
        subjects: Some(vec![user("bob"), user("carol")]),
    };
    Api::<ClusterRoleBinding>::all(env.admin())
        .create(&PostParams::default(), &approvers)
        .await
        .expect("binding the approvers");
    wait_enforced(&env).await;

    let mut config = security::service_account_config(&env, RELEASE_NAMESPACE, OPERATOR_SA)
        .await
        .expect("operator identity");
    config.default_retry = false;
    let client = Client::try_from(config).expect("operator client");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(kubepim::runtime::run_operator(
        client,
        kubepim::runtime::OperatorSettings::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    Some((env, stop))
}

/// Until the policies refuse a forged requester and bob may `approve` (both take effect through
/// the API server's informers, a moment after they are written).
async fn wait_enforced(env: &Env) {
    let alice: Api<ActivationRequest> = Api::all(env.client("alice"));
    let mut forged = fixtures::request(env, "canary", "alice", "none", &[], "10m");
    forged.spec.requester = Some(env.requester("bob"));
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    security::eventually("the request-create policy", POLICY_TIMEOUT, || async {
        match alice.create(&dry, &forged).await {
            Err(kube::Error::Api(e)) if e.message.contains("ValidatingAdmissionPolicy") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let admin = env.admin();
    let target = ("kubepim.io", "privilegedroles", Some("any"), None);
    security::eventually("bob's approver role", POLICY_TIMEOUT, || async {
        if security::allowed(&admin, "bob", &groups_of("bob"), target, "approve").await {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// A role needing one approval from bob or carol, in one namespace, and alice's eligibility.
async fn role_for_alice(env: &Env) -> (String, String) {
    let ns = env.namespace("apps").await;
    let pr = fixtures::with_approvers(
        fixtures::pod_reader(env, "pods", &[&ns]),
        1,
        &["bob", "carol"],
        &[],
    );
    let role = fixtures::create_role(env, &pr).await.name_any();
    let el = fixtures::eligibility(env, "alice", &role, vec![SubjectRef::user("alice")]);
    fixtures::create_eligibility(env, &el).await;
    (role, ns)
}

async fn phase_becomes(env: &Env, name: &str, want: Phase) {
    let api: Api<ActivationRequest> = Api::all(env.admin());
    security::eventually(
        &format!("{name} {want}"),
        Duration::from_secs(30),
        || async {
            match api.get(name).await.map(|ar| ar.phase()) {
                Ok(Some(p)) if p == want => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

#[path = "e2e_plugin/journeys.rs"]
mod journeys;
