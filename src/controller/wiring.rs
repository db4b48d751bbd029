//! Starting the operator.
//!
//! Every replica keeps the caches ([`super::feeds`]), serves the admission webhook and the
//! metrics/health listener, and campaigns for the lease when leader election is on
//! ([`super::leader`]). The replica that leads runs one *term*: the start-up sweep (revocations
//! before activations), the three controllers, the sweeper loop and the standing-privilege scan.
//! A term ends gracefully on shutdown (reconciles in flight may finish, then the lease is
//! released for the next replica) or at once when leadership is lost (its tasks are aborted).
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::ListParams;
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{ActivationRequest, Eligibility, PrivilegedRole, labels};
use crate::health::{Health, HealthServer, Readiness};
use crate::metrics::{Metrics, kind};
use crate::notify::{FailureCallback, Notification, Notifier, NotifyConfig};

use super::context::Context;
use super::feeds::Feed;
use super::{
    Error, OperatorSettings, RunArgs, bindings, eligibility, leader, request, role, standing,
    sweeper,
};

/// Dead watch connections are noticed after this (+5 s); the default of 290 s is too slow for
/// approvals and revocations.
const WATCH_TIMEOUT_SECS: u32 = 60;
/// Retry of a failed reconcile: capped well below the library's minutes.
const ERROR_REQUEUE: Duration = Duration::from_secs(2);
/// At a graceful stop, reconciles in flight get this long before they are cut off (each API call
/// is bounded by [`bindings::CALL_TIMEOUT`]).
const DRAIN: Duration = Duration::from_secs(5);
/// Notifications still queued at shutdown get this long to be delivered.
const NOTIFY_GRACE: Duration = Duration::from_secs(5);

fn error_policy<K>(_obj: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, category = error.category(), "reconcile failed; retrying");
    Action::requeue(ERROR_REQUEUE)
}

/// Runs one reconcile and records it under `kind`.
async fn measured(
    kind: &'static str,
    ctx: Arc<Context>,
    reconcile: impl Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile.await;
    ctx.metrics.observe_reconcile(
        kind,
        started.elapsed(),
        result.as_ref().err().map(Error::category),
    );
    result
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

/// A task that is aborted when its handle goes: nothing outlives the future that spawned it, so
/// dropping `run_operator` (a killed process, in tests) stops everything at once.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The caches every replica keeps.
#[derive(Clone)]
struct Feeds {
    requests: Feed<ActivationRequest>,
    roles: Feed<PrivilegedRole>,
    eligibilities: Feed<Eligibility>,
    role_bindings: Feed<RoleBinding>,
    cluster_role_bindings: Feed<ClusterRoleBinding>,
}

impl Feeds {
    /// Waits until every cache has synced; false if one never will (its watch was dropped).
    ///
    /// Call it from one place only: a store's readiness future wakes only the task that polled
    /// it last (kube-runtime keeps a single waker), so two waiters can hang one of them. Everyone
    /// else reads the flag this one sets.
    async fn synced(&self) -> bool {
        let (a, b, c, d, e) = tokio::join!(
            async { self.requests.store().wait_until_ready().await },
            async { self.roles.store().wait_until_ready().await },
            async { self.eligibilities.store().wait_until_ready().await },
            async { self.role_bindings.store().wait_until_ready().await },
            async { self.cluster_role_bindings.store().wait_until_ready().await },
        );
        a.is_ok() && b.is_ok() && c.is_ok() && d.is_ok() && e.is_ok()
    }
}

/// What a leadership term needs.
struct Shared {
    client: Client,
    settings: OperatorSettings,
    feeds: Feeds,
    /// True once every cache has synced.
    synced: watch::Receiver<bool>,
    recorder: Recorder,
    notifier: Notifier,
}

/// A stop signal (set once), to wait for in as many places as need it.
#[derive(Clone)]
struct Stop(watch::Receiver<bool>);

impl Stop {
    fn wait(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

/// Runs the operator until `shutdown` resolves: caches, webhook and metrics on this replica, and
/// the controllers while it leads (always, without leader election).
pub async fn run_operator(
    client: Client,
    settings: OperatorSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    check_crds(&client).await?;
    let metrics = settings.metrics.clone();
    metrics.set_leader(false);
    let stop_tx = Arc::new(watch::channel(false).0);
    let stop_rx = stop_tx.subscribe();
    let _trigger = {
        let stop_tx = stop_tx.clone();
        AbortOnDrop(tokio::spawn(async move {
            shutdown.await;
            stop_tx.send_replace(true);
        }))
    };
    let stopped = Stop(stop_rx.clone());

    // The caches, on every replica.
    let fast = watcher::Config::default().timeout(WATCH_TIMEOUT_SECS);
    let managed = fast.clone().labels(labels::MANAGED_SELECTOR);
    let (requests, requests_watch) = Feed::new(Api::all(client.clone()), fast.clone());
    let (roles, roles_watch) = Feed::new(Api::all(client.clone()), fast.clone());
    let (eligibilities, eligibilities_watch) = Feed::new(Api::all(client.clone()), fast.clone());
    let (role_bindings, rb_watch) = Feed::new(Api::all(client.clone()), managed.clone());
    let (cluster_role_bindings, crb_watch) = Feed::new(Api::all(client.clone()), managed);
    let feeds = Feeds {
        requests,
        roles,
        eligibilities,
        role_bindings,
        cluster_role_bindings,
    };
    let (synced_tx, synced) = watch::channel(false);
    metrics.attach_caches(feeds.requests.store(), feeds.roles.store(), synced.clone());
    let watches = {
        let stop = stopped.wait();
        async move {
            tokio::select! {
                _ = async { tokio::join!(requests_watch, roles_watch, eligibilities_watch, rb_watch, crb_watch) } => {}
                _ = stop => {}
            }
        }
    };
    let readiness = Arc::new(Readiness::default());
    let caches_ready = readiness.flag("caches", "caches not synced yet");
    let sync = {
        let feeds = feeds.clone();
        let stop = stopped.wait();
        async move {
            tokio::select! {
                synced = feeds.synced() => if synced {
                    synced_tx.send_replace(true);
                    caches_ready.set(true);
                    tracing::info!("caches synced");
                },
                _ = stop => {}
            }
        }
    };

    // Bound before anything else starts, so that a taken port stops the operator at once.
    let health = match settings.health {
        Some(addr) => Some(
            HealthServer::bind(
                addr,
                Health {
                    metrics: metrics.clone(),
                    readiness: readiness.clone(),
                },
            )
            .await?,
        ),
        None => None,
    };
    let webhook = match settings.webhook.clone() {
        Some(webhook_settings) => {
            let snapshots = crate::admission::Snapshots {
                roles: feeds.roles.store(),
                eligibilities: feeds.eligibilities.store(),
            };
            let webhook = crate::admission::Webhook::bind(
                Some(client.clone()),
                webhook_settings,
                Some(snapshots),
            )
            .await?;
            readiness.watch(
                "webhook-certificate",
                "no webhook serving certificate yet",
                webhook.ready(),
            );
            settings.metrics.attach_webhook(webhook.telemetry());
            Some(webhook)
        }
        None => None,
    };
    let health = {
        let stop = stopped.wait();
        async move {
            if let Some(health) = health {
                health.run(stop).await;
            }
        }
    };
    let webhook = {
        let stop = stopped.wait();
        async move {
            if let Some(webhook) = webhook
                && let Err(error) = webhook.run(stop).await
            {
                tracing::error!(%error, "admission webhook failed");
            }
        }
    };

    // One recorder for every Event of this process (its cache de-duplicates them).
    let recorder = Context::recorder_for(client.clone());
    let notifier = match settings.notifications.clone() {
        Some(config) => Notifier::builder(config)
            .on_failure(notification_failed(
                recorder.clone(),
                feeds.requests.store(),
            ))
            .start()?,
        None => Notifier::disabled(),
    };
    metrics.attach_notifier(notifier.clone());

    let (leading_tx, leading_rx) = watch::channel(false);
    let (release_tx, release_rx) = watch::channel(false);
    let election = {
        let client = client.clone();
        let leader_election = settings.leader_election.clone();
        async move {
            match leader_election {
                Some(le) => leader::campaign(client, le, leading_tx, release_rx).await,
                None => {
                    leading_tx.send_replace(true);
                    let mut release = release_rx;
                    let _ = release.wait_for(|r| *r).await;
                    leading_tx.send_replace(false);
                }
            }
        }
    };
    let shared = Arc::new(Shared {
        client,
        settings,
        feeds,
        synced,
        recorder,
        notifier: notifier.clone(),
    });
    let terms = lead(shared, leading_rx, stop_rx, release_tx, stop_tx.clone());

    let (result, ..) = tokio::join!(terms, election, watches, sync, health, webhook);
    notifier.shutdown(NOTIFY_GRACE).await;
    result
}

/// Waits until the channel holds `want`; false if its sender went away first. (The borrow of
/// the value ends here, so the future stays `Send` wherever it is awaited.)
pub(super) async fn wait_until(rx: &mut watch::Receiver<bool>, want: bool) -> bool {
    rx.wait_for(|value| *value == want).await.is_ok()
}

/// Runs a term whenever this replica leads, until the stop signal; then releases the lease.
async fn lead(
    shared: Arc<Shared>,
    mut leading: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    release: watch::Sender<bool>,
    stop_all: Arc<watch::Sender<bool>>,
) -> Result<(), Error> {
    let metrics = shared.settings.metrics.clone();
    let result = loop {
        tokio::select! {
            biased;
            _ = wait_until(&mut stop, true) => break Ok(()),
            became = wait_until(&mut leading, true) => if !became {
                break Ok(());
            },
        }
        let (term_stop_tx, term_stop_rx) = watch::channel(false);
        let mut running = AbortOnDrop(tokio::spawn(term(shared.clone(), term_stop_rx)));
        metrics.set_leader(true);
        tracing::info!("leading: starting the controllers");
        tokio::select! {
            biased;
            _ = wait_until(&mut stop, true) => {
                // Graceful: stop taking work, let reconciles in flight finish, then hand over.
                term_stop_tx.send_replace(true);
                if tokio::time::timeout(DRAIN, &mut running.0).await.is_err() {
                    tracing::warn!("reconciles still running {DRAIN:?} after the stop; cut off");
                    running.0.abort();
                }
                metrics.set_leader(false);
                tracing::info!("controllers stopped");
                break Ok(());
            }
            _ = wait_until(&mut leading, false) => {
                // Another replica may lead within moments: stop reconciling now, not after the
                // reconciles in flight.
                running.0.abort();
                let _ = tokio::time::timeout(Duration::from_secs(1), &mut running.0).await;
                metrics.set_leader(false);
                tracing::error!("leadership lost: controllers stopped");
            }
            ended = &mut running.0 => {
                metrics.set_leader(false);
                tracing::error!(?ended, "the controllers stopped on their own");
                break Err(Error::Invariant("the controllers stopped on their own"));
            }
        }
    };
    release.send_replace(true);
    if result.is_err() {
        stop_all.send_replace(true);
    }
    result
}

/// One leadership term: the start-up sweep, the controllers, the sweeper loop and the
/// standing-privilege scan, until `stop` is set (or the task is aborted).
async fn term(shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let stopped = Stop(stop);
    let feeds = &shared.feeds;
    let settings = &shared.settings;
    // Decisions are only taken on synced caches (a no-op when they are warm).
    let mut synced = shared.synced.clone();
    tokio::select! {
        synced = wait_until(&mut synced, true) => if !synced {
            return;
        },
        _ = stopped.wait() => return,
    }
    let ctx = Arc::new(
        Context::new(
            shared.client.clone(),
            feeds.requests.store(),
            feeds.roles.store(),
            feeds.eligibilities.store(),
            feeds.role_bindings.store(),
            feeds.cluster_role_bindings.store(),
        )
        .with_shared(
            shared.recorder.clone(),
            settings.metrics.clone(),
            shared.notifier.clone(),
        ),
    );

    // Revocations before activations: expired or orphaned grants go before any request is acted on.
    match sweeper::startup_sweep(&ctx).await {
        Ok(n) => tracing::info!(deleted = n, "start-up sweep done"),
        Err(error) => {
            tracing::warn!(%error, "start-up sweep failed; the periodic sweep will retry")
        }
    }

    let by_role = |store: Store<ActivationRequest>| {
        move |role_name: String| {
            store
                .state()
                .into_iter()
                .filter(|r| r.spec.role == role_name && !r.phase().is_some_and(|p| p.is_terminal()))
                .map(|r| ObjectRef::from_obj(r.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    let for_role = by_role(feeds.requests.store());
    let for_eligibility = by_role(feeds.requests.store());
    let request_of = |name: Option<String>| name.map(|n| ObjectRef::<ActivationRequest>::new(&n));

    // A new leader reconciles every request once, as a fresh start would.
    let request_controller =
        Controller::for_stream(feeds.requests.subscribe(true), feeds.requests.store())
            .with_config(ControllerConfig::default().concurrency(settings.concurrency))
            .watches_stream(feeds.roles.subscribe(false), move |r: PrivilegedRole| {
                for_role(r.name_any())
            })
            .watches_stream(
                feeds.eligibilities.subscribe(false),
                move |e: Eligibility| for_eligibility(e.spec.role.clone()),
            )
            .watches_stream(
                feeds.role_bindings.subscribe(false),
                move |b: RoleBinding| request_of(bindings::request_name_of(&b)),
            )
            .watches_stream(
                feeds.cluster_role_bindings.subscribe(false),
                move |b: ClusterRoleBinding| request_of(bindings::request_name_of(&b)),
            )
            .graceful_shutdown_on(stopped.wait())
            .run(
                |r, ctx| measured(kind::REQUEST, ctx.clone(), request::reconcile(r, ctx)),
                error_policy,
                ctx.clone(),
            )
            .for_each(|result| async move {
                if let Err(error) = result {
                    tracing::debug!(%error, "request reconcile error");
                }
            });

    let role_controller = Controller::for_stream(feeds.roles.subscribe(true), feeds.roles.store())
        .with_config(ControllerConfig::default().concurrency(2))
        .graceful_shutdown_on(stopped.wait())
        .run(
            |r, ctx| measured(kind::ROLE, ctx.clone(), role::reconcile(r, ctx)),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));
    let eligibility_controller = Controller::for_stream(
        feeds.eligibilities.subscribe(true),
        feeds.eligibilities.store(),
    )
    .with_config(ControllerConfig::default().concurrency(2))
    .graceful_shutdown_on(stopped.wait())
    .run(
        |e, ctx| {
            measured(
                kind::ELIGIBILITY,
                ctx.clone(),
                eligibility::reconcile(e, ctx),
            )
        },
        error_policy,
        ctx.clone(),
    )
    .for_each(|_| future::ready(()));

    let sweep_ctx = ctx.clone();
    let interval = settings.sweep_interval;
    let stop_sweeping = stopped.wait();
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

    // Every managed-labelled binding judged as it appears or changes: a forged one goes at once.
    let binding_guard = sweeper::guard(
        ctx.clone(),
        feeds
            .role_bindings
            .subscribe(false)
            .take_until(stopped.wait()),
        feeds
            .cluster_role_bindings
            .subscribe(false)
            .take_until(stopped.wait()),
    );

    // Standing privilege (I2): its own periodic, uncached scan of all bindings.
    let standing_loop = standing::run(ctx.clone(), settings.standing.clone(), stopped.wait());

    tokio::join!(
        request_controller,
        role_controller,
        eligibility_controller,
        sweeper_loop,
        binding_guard,
        standing_loop,
    );
}

/// The notifier's failure callback: a Warning Event `NotificationFailed` on the request, through
/// the shared recorder. Returns at once (the Event is published on a task of its own).
fn notification_failed(recorder: Recorder, requests: Store<ActivationRequest>) -> FailureCallback {
    Arc::new(move |n: &Notification, why: &str| {
        let reference = requests
            .get(&ObjectRef::new(&n.request))
            .map(|r| r.object_ref(&()))
            .unwrap_or_else(|| ObjectReference {
                api_version: Some(ActivationRequest::api_version(&()).into_owned()),
                kind: Some(ActivationRequest::kind(&()).into_owned()),
                name: Some(n.request.clone()),
                ..Default::default()
            });
        let mut note = format!("{} notification not delivered: {why}", n.kind);
        if note.len() > 1000 {
            let mut end = 1000;
            while !note.is_char_boundary(end) {
                end -= 1;
            }
            note.truncate(end);
        }
        let event = Event {
            type_: EventType::Warning,
            reason: "NotificationFailed".into(),
            note: Some(note),
            action: "Notify".into(),
            secondary: None,
        };
        let recorder = recorder.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = recorder.publish(&event, &reference).await {
                    tracing::warn!(%error, "could not publish a NotificationFailed event");
                }
            });
        }
    })
}

/// The operator's client, behind the counting layer that feeds `kubepim_api_requests_total`.
async fn client_for(
    args: &RunArgs,
    counter: &crate::metrics::api_requests::ApiCallCounter,
) -> Result<Client, Error> {
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
    Ok(kube::client::ClientBuilder::try_from(config)
        .map_err(|e| Error::Config(e.to_string()))?
        .with_layer(counter)
        .build())
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
        // Bad settings stop the operator before it talks to the cluster.
        let notifications = match &args.notifications_config {
            Some(path) => Some(NotifyConfig::load(path)?),
            None => None,
        };
        let leader_election = args.leader.settings().map_err(Error::LeaderElection)?;
        let metrics = Arc::new(Metrics::new());
        let client = client_for(&args, metrics.api_calls()).await?;
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
            health: (args.metrics_port != 0)
                .then(|| std::net::SocketAddr::new(args.metrics_bind_address, args.metrics_port)),
            leader_election,
            notifications,
            metrics,
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
