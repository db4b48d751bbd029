//! Starting the operator: caches, the start-up sweep, the three controllers and the sweeper loop.
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, future};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::ListParams;
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use crate::api::{ActivationRequest, Eligibility, PrivilegedRole, labels};

use super::context::Context;
use super::{
    Error, OperatorSettings, RunArgs, bindings, eligibility, request, role, standing, sweeper,
};

/// Dead watch connections are noticed after this (+5 s); the default of 290 s is too slow for
/// approvals and revocations.
const WATCH_TIMEOUT_SECS: u32 = 60;
/// Retry of a failed reconcile: capped well below the library's minutes.
const ERROR_REQUEUE: Duration = Duration::from_secs(2);

fn error_policy<K>(_obj: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, category = error.category(), "reconcile failed; retrying");
    Action::requeue(ERROR_REQUEUE)
}

async fn check_crds(client: &Client) -> Result<(), Error> {
    let lp = ListParams::default().limit(1);
    let probe = |e: kube::Error| Error::CrdsMissing(e.to_string());
    Api::<PrivilegedRole>::all(client.clone())
        .list_metadata(&lp)
        .await
        .map_err(probe)?;
    Api::<Eligibility>::all(client.clone())
        .list_metadata(&lp)
        .await
        .map_err(probe)?;
    Api::<ActivationRequest>::all(client.clone())
        .list_metadata(&lp)
        .await
        .map_err(probe)?;
    Ok(())
}

/// Runs all controllers until `shutdown` resolves.
pub async fn run_operator(
    client: Client,
    settings: OperatorSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    check_crds(&client).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let fast = watcher::Config::default().timeout(WATCH_TIMEOUT_SECS);
    let managed = fast.clone().labels(labels::MANAGED_SELECTOR);

    let (roles, roles_writer) = reflector::store::<PrivilegedRole>();
    let (eligibilities, eligibilities_writer) = reflector::store::<Eligibility>();
    let (role_bindings, rb_writer) = reflector::store::<RoleBinding>();
    let (cluster_role_bindings, crb_writer) = reflector::store::<ClusterRoleBinding>();

    let role_stream = reflector::reflector(
        roles_writer,
        watcher(Api::<PrivilegedRole>::all(client.clone()), fast.clone()),
    )
    .default_backoff()
    .touched_objects();
    let eligibility_stream = reflector::reflector(
        eligibilities_writer,
        watcher(Api::<Eligibility>::all(client.clone()), fast.clone()),
    )
    .default_backoff()
    .touched_objects();
    let rb_stream = reflector::reflector(
        rb_writer,
        watcher(Api::<RoleBinding>::all(client.clone()), managed.clone()),
    )
    .default_backoff()
    .touched_objects();
    let crb_stream = reflector::reflector(
        crb_writer,
        watcher(Api::<ClusterRoleBinding>::all(client.clone()), managed),
    )
    .default_backoff()
    .touched_objects();

    // Bound before anything else starts, so that a taken port stops the operator at once.
    let webhook = match settings.webhook.clone() {
        Some(webhook_settings) => {
            let snapshots = crate::admission::Snapshots {
                roles: roles.clone(),
                eligibilities: eligibilities.clone(),
            };
            let webhook = crate::admission::Webhook::bind(
                Some(client.clone()),
                webhook_settings,
                Some(snapshots),
            );
            Some(webhook.await?)
        }
        None => None,
    };
    let stop_webhook = stopped();
    let webhook = async move {
        if let Some(webhook) = webhook
            && let Err(error) = webhook.run(stop_webhook).await
        {
            tracing::error!(%error, "admission webhook failed");
        }
    };

    let requests_api = Api::<ActivationRequest>::all(client.clone());
    let controller = Controller::new(requests_api, fast.clone())
        .with_config(ControllerConfig::default().concurrency(settings.concurrency));
    let requests = controller.store();

    let ctx = Arc::new(Context::new(
        client.clone(),
        requests.clone(),
        roles.clone(),
        eligibilities.clone(),
        role_bindings,
        cluster_role_bindings,
    ));

    // Revocations before activations: expired or orphaned grants go before any request is acted on.
    match sweeper::startup_sweep(&ctx).await {
        Ok(n) => tracing::info!(deleted = n, "start-up sweep done"),
        Err(error) => {
            tracing::warn!(%error, "start-up sweep failed; the periodic sweep will retry")
        }
    }

    let by_role = |store: reflector::Store<ActivationRequest>| {
        move |role_name: String| {
            store
                .state()
                .into_iter()
                .filter(|r| r.spec.role == role_name && !r.phase().is_some_and(|p| p.is_terminal()))
                .map(|r| ObjectRef::from_obj(r.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    let for_role = by_role(requests.clone());
    let for_eligibility = by_role(requests.clone());
    let request_of = |name: Option<String>| name.map(|n| ObjectRef::<ActivationRequest>::new(&n));

    let request_controller = controller
        .watches_stream(role_stream, move |r: PrivilegedRole| for_role(r.name_any()))
        .watches_stream(eligibility_stream, move |e: Eligibility| {
            for_eligibility(e.spec.role.clone())
        })
        .watches_stream(rb_stream, move |b: RoleBinding| {
            request_of(bindings::request_name_of(&b))
        })
        .watches_stream(crb_stream, move |b: ClusterRoleBinding| {
            request_of(bindings::request_name_of(&b))
        })
        .graceful_shutdown_on(stopped())
        .run(request::reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "request reconcile error");
            }
        });

    let role_controller = Controller::new(Api::<PrivilegedRole>::all(client.clone()), fast.clone())
        .with_config(ControllerConfig::default().concurrency(2))
        .graceful_shutdown_on(stopped())
        .run(role::reconcile, error_policy, ctx.clone())
        .for_each(|_| future::ready(()));
    let eligibility_controller = Controller::new(Api::<Eligibility>::all(client.clone()), fast)
        .with_config(ControllerConfig::default().concurrency(2))
        .graceful_shutdown_on(stopped())
        .run(eligibility::reconcile, error_policy, ctx.clone())
        .for_each(|_| future::ready(()));

    let sweep_ctx = ctx.clone();
    let interval = settings.sweep_interval;
    let stop_sweeping = stopped();
    let sweeper_loop = async move {
        tokio::pin!(stop_sweeping);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = &mut stop_sweeping => return,
            }
            if let Err(error) = sweeper::sweep(&sweep_ctx).await {
                tracing::warn!(%error, "sweep failed");
            }
        }
    };

    // Standing privilege (I2): its own periodic, uncached scan of all bindings.
    let standing_loop = standing::run(ctx.clone(), settings.standing.clone(), stopped());

    tokio::join!(
        request_controller,
        role_controller,
        eligibility_controller,
        sweeper_loop,
        standing_loop,
        webhook
    );
    Ok(())
}

async fn client_for(args: &RunArgs) -> Result<Client, Error> {
    let mut config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| Error::Config(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|e| Error::Config(e.to_string()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
    };
    // The library retries 429/5xx for up to minutes; our reconcilers retry within seconds instead.
    config.default_retry = false;
    Client::try_from(config).map_err(|e| Error::Config(e.to_string()))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// `kubepim run`.
pub fn run_blocking(args: RunArgs) -> ExitCode {
    crate::telemetry::init(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let client = client_for(&args).await?;
        let settings = OperatorSettings {
            sweep_interval: args.sweep_interval,
            concurrency: args.concurrency,
            webhook: args.webhook.settings()?,
            standing: standing::ScanSettings {
                interval: args.standing_privilege_scan_interval,
                break_glass: crate::policy::standing::BreakGlass {
                    users: args.break_glass_users.iter().cloned().collect(),
                    groups: args.break_glass_groups.iter().cloned().collect(),
                },
            },
        };
        run_operator(client, settings, shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "kubepim stopped");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
