//! `kubepim remove-footholds`: the foothold remover. For a role with `onFootholds: Remove`, it
//! deletes the RBAC bindings and ServiceAccount token Secrets a grant's foothold review named.
//!
//! It runs as an identity of its own (the chart's `<release>-footholds` ServiceAccount), not as
//! the operator. The operator's admission policy holds it to deleting the bindings it manages, so
//! a stolen operator token cannot strip other people's access. The remover's own policy holds it
//! to deletions alone, of bindings and token Secrets only, outside kube-system and kubepim's
//! namespace. It creates and changes nothing.
//!
//! It trusts the verdict only as far as it must. A binding is read again and judged as it is
//! now, by the review's own rule ([`crate::policy::foothold_removal`]). Every deletion is
//! conditional on the uid the review saw. Each outcome is an Event on the request and an audit
//! line. Nothing is cached but the PrivilegedRoles.
mod remove;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::api::{ActivationRequest, FootholdAction, PrivilegedRole};
use crate::events::Recorder;
use crate::policy::foothold_removal::{Skip, plan};

pub use remove::Outcome;

/// How the remover is run.
#[derive(clap::Args, Debug, Clone)]
pub struct RemoverArgs {
    /// Grants that ended longer ago than this are left alone, so that turning `Remove` on for a
    /// role does not reach back into its kept history.
    #[arg(long, default_value = "24h", value_parser = crate::time::parse_duration)]
    pub horizon: Duration,
    #[arg(long, value_enum, default_value_t = crate::telemetry::LogFormat::Text)]
    pub log_format: crate::telemetry::LogFormat,
}

/// A request whose removals failed is tried again this often, this many times.
const RETRY_EVERY: Duration = Duration::from_secs(15);
const ATTEMPTS: u32 = 5;

/// Watches requests until `shutdown`, removing what each verdict calls for.
pub async fn run(client: Client, horizon: Duration, shutdown: impl Future<Output = ()>) {
    let (roles, writer) = reflector::store::<PrivilegedRole>();
    let roles_watch = reflector::reflector(
        writer,
        watcher(Api::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .for_each(|_| std::future::ready(()));
    let requests = watcher(
        Api::<ActivationRequest>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects();
    let reporter = Reporter {
        controller: "kubepim-footholds".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let mut remover = Remover {
        client: client.clone(),
        recorder: Recorder::new(client, reporter),
        roles: roles.clone(),
        horizon: chrono::Duration::from_std(horizon).unwrap_or(chrono::Duration::hours(24)),
        settled: HashSet::new(),
        failing: HashMap::new(),
    };
    tokio::pin!(shutdown);
    tokio::pin!(requests);
    let roles_ready = roles.wait_until_ready();
    tokio::pin!(roles_ready);
    tokio::pin!(roles_watch);
    // A request is judged against its role, so nothing is done before the roles are known.
    tokio::select! {
        _ = &mut shutdown => return,
        _ = &mut roles_watch => return,
        ready = &mut roles_ready => if ready.is_err() { return },
    }
    tracing::info!("foothold remover started");
    let mut retry = tokio::time::interval(RETRY_EVERY);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut roles_watch => break,
            next = requests.next() => match next {
                Some(Ok(request)) => remover.consider(&request).await,
                Some(Err(error)) => tracing::debug!(%error, "request watch failed; retrying"),
                None => break,
            },
            _ = retry.tick() => remover.retry().await,
        }
    }
    tracing::info!("foothold remover stopped");
}

struct Remover {
    client: Client,
    recorder: Recorder,
    roles: Store<PrivilegedRole>,
    horizon: chrono::Duration,
    /// Requests (by uid) whose removals are all done: their later status writes are not looked
    /// at again. Forgotten at a restart, when the deletions find the objects gone.
    settled: HashSet<String>,
    /// Requests whose removals failed, with the attempts made.
    failing: HashMap<String, (ActivationRequest, u32)>,
}

impl Remover {
    async fn consider(&mut self, request: &ActivationRequest) {
        let Some(uid) = request.uid() else { return };
        if self.settled.contains(&uid) {
            return;
        }
        let action = self
            .roles
            .get(&ObjectRef::new(&request.spec.role))
            .map(|role| role.spec.on_footholds)
            .unwrap_or(FootholdAction::Report);
        let removals = match plan(request, action, chrono::Utc::now(), self.horizon) {
            Ok(removals) => removals,
            // Not settled: the review may finish, and the role may be switched to Remove while
            // the grant is still inside the horizon.
            Err(Skip::NotReviewed | Skip::RoleReports) => return,
            Err(skip @ (Skip::EndedLongAgo | Skip::Nothing)) => {
                tracing::trace!(request = %request.name_any(), ?skip, "no footholds to remove");
                self.settled.insert(uid);
                return;
            }
        };
        let mut failed = false;
        for removal in &removals {
            let outcome = remove::one(&self.client, request, removal).await;
            failed |= matches!(outcome, Outcome::Failed(_));
            remove::record(&self.recorder, request, removal, &outcome).await;
        }
        if failed {
            let attempts = self.failing.get(&uid).map_or(0, |(_, n)| *n) + 1;
            if attempts < ATTEMPTS {
                self.failing.insert(uid, (request.clone(), attempts));
                return;
            }
            tracing::warn!(request = %request.name_any(), attempts, "foothold removal gave up");
        }
        self.failing.remove(&uid);
        self.settled.insert(uid);
    }

    async fn retry(&mut self) {
        let due: Vec<ActivationRequest> = self.failing.values().map(|(r, _)| r.clone()).collect();
        for request in due {
            self.consider(&request).await;
        }
    }
}

/// `kubepim remove-footholds`.
pub fn run_blocking(args: RemoverArgs) -> std::process::ExitCode {
    crate::telemetry::init(args.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match Client::try_default().await {
            Ok(client) => {
                run(client, args.horizon, crate::runtime::shutdown_signal()).await;
                std::process::ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: connecting to the cluster: {error}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

#[cfg(test)]
mod tests;
