//! Waiting with a deadline: poll until a check passes; on timeout, fail with what was last seen.
use std::future::Future;
use std::time::{Duration, Instant};

use kube::api::Api;
use kubepim::api::{ActivationRequest, Phase};

use super::Env;

/// Generous, so a loaded machine does not fail a correct operator; a working operator is fast.
pub const TIMEOUT: Duration = Duration::from_secs(30);
const INTERVAL: Duration = Duration::from_millis(50);

/// Polls `check` every 50 ms until it returns `Ok`; `Err` describes the state seen. Panics after
/// `timeout` with `what`, the last state and the operator's state; panics at once if the operator
/// exited on its own.
pub async fn until<T, F, Fut>(env: &Env, what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        env.check_operator();
        let last = match check().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}; last seen: {last}; {}",
                env.operator_state()
            );
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Short description of a request's status for failure messages.
pub fn describe(ar: &ActivationRequest) -> String {
    match &ar.status {
        None => "no status".into(),
        Some(s) => format!(
            "phase={:?} reason={:?} message={:?} approvals={} expiresAt={:?} bindings={:?}",
            s.phase,
            s.reason,
            s.message,
            s.approvals.len(),
            s.expires_at.as_ref().map(|t| t.0.to_string()),
            s.bindings
                .iter()
                .map(|b| format!("{}/{}", b.namespace.as_deref().unwrap_or("-"), b.name))
                .collect::<Vec<_>>()
        ),
    }
}

/// Waits until the request is in `phase` and returns it.
pub async fn phase(env: &Env, name: &str, want: Phase) -> ActivationRequest {
    phase_within(env, name, want, TIMEOUT).await
}

pub async fn phase_within(
    env: &Env,
    name: &str,
    want: Phase,
    timeout: Duration,
) -> ActivationRequest {
    let api: Api<ActivationRequest> = Api::all(env.admin());
    until(
        env,
        &format!("request {name} to be {want}"),
        timeout,
        || {
            let api = api.clone();
            async move {
                let ar = api.get(name).await.map_err(|e| format!("get: {e}"))?;
                match ar.phase() {
                    Some(p) if p == want => Ok(ar),
                    // A terminal phase never changes: fail now rather than at the deadline.
                    Some(p) if p.is_terminal() => panic!(
                        "request {name} reached terminal phase {p} while waiting for {want}: {}",
                        describe(&ar)
                    ),
                    _ => Err(describe(&ar)),
                }
            }
        },
    )
    .await
}

/// Watches the request for `window` and fails if it ever leaves `phase` (or never had it).
/// For "nothing happens" assertions, where there is no event to wait for.
pub async fn stays(
    env: &Env,
    name: &str,
    want: Option<Phase>,
    window: Duration,
) -> ActivationRequest {
    let api: Api<ActivationRequest> = Api::all(env.admin());
    let deadline = Instant::now() + window;
    loop {
        env.check_operator();
        let ar = api
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("get {name}: {e}"));
        assert_eq!(
            ar.phase(),
            want,
            "request {name} left {want:?}: {}",
            describe(&ar)
        );
        if Instant::now() >= deadline {
            return ar;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
