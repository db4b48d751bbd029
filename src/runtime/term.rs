//! One leadership term, and the loop that starts a term whenever this replica leads.
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, future};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Client;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{AccessReview, ActivationRequest, Eligibility, PrivilegedRole, RoleKind};
use crate::controller::context::{Caches, Context};
use crate::controller::retention::{self, RetentionSettings};
use crate::controller::{
    self, bindings, eligibility, foothold_review, request, review, role, separation, standing_scan,
    sweeper,
};
use crate::events::Recorder;
use crate::metrics::kind;
use crate::notify::Notifier;

use super::Error;
use super::OperatorSettings;
use super::backoff::WatchBackoff;
use super::feeds::Feed;
use super::throttle::throttle;

/// Retry of a failed reconcile: capped well below the library's minutes.
const ERROR_REQUEUE: Duration = Duration::from_secs(2);
/// How often request changes may refresh one PrivilegedRole's or Eligibility's status: a burst
/// of activations costs about one status write per period, and the status settles within one
/// period of the last change (see [`super::throttle`]).
const STATUS_REFRESH: Duration = Duration::from_millis(500);
/// At a graceful stop, reconciles in flight get this long before they are cut off (each API call
/// is bounded by [`crate::controller::calls::CALL_TIMEOUT`]).
const DRAIN: Duration = Duration::from_secs(5);
/// The watch on Roles and ClusterRoles notices a dead connection after this (+5 s).
const ROLE_WATCH_TIMEOUT_SECS: u32 = 60;

fn error_policy<K>(_obj: Arc<K>, error: &controller::Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, category = error.category(), "reconcile failed; retrying");
    Action::requeue(ERROR_REQUEUE)
}

/// Runs one reconcile and records it under `kind`.
async fn measured(
    kind: &'static str,
    ctx: Arc<Context>,
    reconcile: impl Future<Output = Result<Action, controller::Error>>,
) -> Result<Action, controller::Error> {
    let started = Instant::now();
    let result = reconcile.await;
    ctx.metrics.observe_reconcile(
        kind,
        started.elapsed(),
        result.as_ref().err().map(controller::Error::category),
    );
    result
}

/// A task that is aborted when its handle goes: nothing outlives the future that spawned it, so
/// dropping `run_operator` (a killed process, in tests) stops everything at once.
pub(super) struct AbortOnDrop<T>(pub(super) JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The caches every replica keeps.
#[derive(Clone)]
pub(super) struct Feeds {
    pub(super) requests: Feed<ActivationRequest>,
    pub(super) roles: Feed<PrivilegedRole>,
    pub(super) eligibilities: Feed<Eligibility>,
    pub(super) role_bindings: Feed<RoleBinding>,
    pub(super) cluster_role_bindings: Feed<ClusterRoleBinding>,
    pub(super) reviews: Feed<AccessReview>,
}

impl Feeds {
    /// Waits until every cache has synced; false if one never will (its watch was dropped).
    ///
    /// Call it from one place only: a store's readiness future wakes only the task that polled
    /// it last (kube-runtime keeps a single waker), so two waiters can hang one of them. Everyone
    /// else reads the flag this one sets.
    pub(super) async fn synced(&self) -> bool {
        let (a, b, c, d, e, f) = tokio::join!(
            async { self.requests.store().wait_until_ready().await },
            async { self.roles.store().wait_until_ready().await },
            async { self.eligibilities.store().wait_until_ready().await },
            async { self.role_bindings.store().wait_until_ready().await },
            async { self.cluster_role_bindings.store().wait_until_ready().await },
            async { self.reviews.store().wait_until_ready().await },
        );
        a.is_ok() && b.is_ok() && c.is_ok() && d.is_ok() && e.is_ok() && f.is_ok()
    }
}

/// What a leadership term needs.
pub(super) struct Shared {
    pub(super) client: Client,
    pub(super) settings: OperatorSettings,
    pub(super) feeds: Feeds,
    /// True once every cache has synced.
    pub(super) synced: watch::Receiver<bool>,
    pub(super) recorder: Recorder,
    pub(super) notifier: Notifier,
    /// The audit ingest's aggregator, when the audit endpoint is served.
    pub(super) activity: Option<Arc<crate::ingest::Aggregator>>,
}

/// A stop signal (set once), to wait for in as many places as need it.
#[derive(Clone)]
pub(super) struct Stop(pub(super) watch::Receiver<bool>);

impl Stop {
    pub(super) fn wait(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

/// Waits until the channel holds `want`; false if its sender went away first. (The borrow of
/// the value ends here, so the future stays `Send` wherever it is awaited.)
pub(super) async fn wait_until(rx: &mut watch::Receiver<bool>, want: bool) -> bool {
    rx.wait_for(|value| *value == want).await.is_ok()
}

/// Runs a term whenever this replica leads, until the stop signal; then releases the lease.
pub(super) async fn lead(
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
                break Err(Error::ControllersStopped);
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
    let caches = Caches {
        requests: feeds.requests.store(),
        roles: feeds.roles.store(),
        eligibilities: feeds.eligibilities.store(),
        role_bindings: feeds.role_bindings.store(),
        cluster_role_bindings: feeds.cluster_role_bindings.store(),
        request_index: feeds.requests.index(),
        eligibility_index: feeds.eligibilities.index(),
    };
    // Requests whose role's rules changed, found by the role reconciler (role integrity).
    let (role_changes, changed_grants) = futures::channel::mpsc::unbounded();
    let ctx = Arc::new(
        Context::builder(shared.client.clone(), caches)
            .role_changes(role_changes)
            .reviews(feeds.reviews.store())
            .recorder(shared.recorder.clone())
            .metrics(settings.metrics.clone())
            .notifier(shared.notifier.clone())
            .operator_namespace(settings.operator_namespace.clone())
            .activity(shared.activity.clone())
            .build(),
    );

    // Revocations before activations: expired or orphaned grants go before any request is acted on.
    match sweeper::startup_sweep(&ctx).await {
        Ok(n) => tracing::info!(deleted = n, "start-up sweep done"),
        Err(error) => {
            tracing::warn!(%error, "start-up sweep failed; the periodic sweep will retry")
        }
    }

    // Trigger mappings read the caches' indexes: a full scan per event cost O(requests) each,
    // which at 10,000 requests was most of a restart's first pass.
    let by_role = |ctx: Arc<Context>| {
        move |role_name: String| {
            ctx.requests_for(&role_name)
                .into_iter()
                .filter(|r| !r.phase().is_some_and(|p| p.is_terminal()))
                .map(|r| ObjectRef::from_obj(r.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    let for_role = by_role(ctx.clone());
    let for_eligibility = by_role(ctx.clone());
    // A closed review that removed subjects: the requests of those roles are judged again at
    // once (a grant resting only on a removed subject is revoked).
    let for_review = by_role(ctx.clone());
    let extensions = ctx.clone();
    let request_of = |name: Option<String>| name.map(|n| ObjectRef::<ActivationRequest>::new(&n));

    // A new leader reconciles every request once, as a fresh start would.
    let request_controller =
        Controller::for_shared_stream(feeds.requests.subscribe(true), feeds.requests.store())
            .with_config(ControllerConfig::default().concurrency(settings.concurrency))
            .watches_shared_stream(
                feeds.roles.subscribe(false),
                move |r: Arc<PrivilegedRole>| for_role(r.name_any()),
            )
            .watches_shared_stream(
                feeds.eligibilities.subscribe(false),
                move |e: Arc<Eligibility>| for_eligibility(e.spec.role.clone()),
            )
            .watches_shared_stream(
                feeds.reviews.subscribe(false),
                move |r: Arc<AccessReview>| {
                    review::roles_of(&r)
                        .into_iter()
                        .flat_map(&for_review)
                        .collect::<Vec<_>>()
                },
            )
            // Extensions: a change of one side of a hand-over is news to the other (the original
            // ends once its extension is Active; a pending extension is refused once its original
            // has ended).
            .watches_shared_stream(
                feeds.requests.subscribe(false),
                move |r: Arc<ActivationRequest>| related_requests(&extensions, &r),
            )
            .watches_shared_stream(
                feeds.role_bindings.subscribe(false),
                move |b: Arc<RoleBinding>| request_of(bindings::request_name_of(b.as_ref())),
            )
            .watches_shared_stream(
                feeds.cluster_role_bindings.subscribe(false),
                move |b: Arc<ClusterRoleBinding>| request_of(bindings::request_name_of(b.as_ref())),
            )
            .reconcile_on(changed_grants)
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

    // The counts in a role's and an eligibility's status follow the requests as they change,
    // rather than waiting for the next re-check: once the last grant has ended, nothing is left
    // to write.
    let role_refresh = throttle(
        feeds
            .requests
            .subscribe(false)
            .filter_map(|r| future::ready(role::affected_by(&r))),
        STATUS_REFRESH,
    );
    let by_request = {
        let ctx = ctx.clone();
        feeds.requests.subscribe(false).flat_map(move |r| {
            futures::stream::iter(eligibility::affected_by(
                &ctx.eligibilities_for(&r.spec.role),
                &r,
            ))
        })
    };
    // A PrivilegedRole created or deleted changes its eligibilities' Active condition.
    let by_role = {
        let ctx = ctx.clone();
        feeds.roles.subscribe(false).flat_map(move |r| {
            futures::stream::iter(eligibility::of_role(
                &ctx.eligibilities_for(&r.name_any()),
                &r.name_any(),
            ))
        })
    };
    // A closed review's removals show in the status of the Eligibilities it names.
    let by_review = feeds
        .reviews
        .subscribe(false)
        .flat_map(|r| futures::stream::iter(review::eligibilities_of(&r)));
    let eligibility_refresh = throttle(
        futures::stream::select(futures::stream::select(by_request, by_role), by_review),
        STATUS_REFRESH,
    );

    // A change of a referenced Role or ClusterRole re-reads it at once (role integrity, and
    // readiness and risk without waiting for the re-check). Metadata only, and nothing is kept:
    // each event is matched against the PrivilegedRoles by name and dropped.
    let role_watch = watcher::Config::default().timeout(ROLE_WATCH_TIMEOUT_SECS);
    let cluster_role_events = watcher(
        kube::Api::<PartialObjectMeta<ClusterRole>>::all(shared.client.clone()),
        role_watch.clone(),
    )
    .backoff(WatchBackoff::default())
    .touched_objects();
    let role_events = watcher(
        kube::Api::<PartialObjectMeta<Role>>::all(shared.client.clone()),
        role_watch,
    )
    .backoff(WatchBackoff::default())
    .touched_objects();
    let referencing_cluster_role = referencing(feeds.roles.store());
    let referencing_role = referencing(feeds.roles.store());

    let role_controller =
        Controller::for_shared_stream(feeds.roles.subscribe(true), feeds.roles.store())
            .with_config(ControllerConfig::default().concurrency(2))
            .reconcile_on(role_refresh)
            .watches_stream(
                cluster_role_events,
                move |r: PartialObjectMeta<ClusterRole>| {
                    referencing_cluster_role(RoleKind::ClusterRole, None, &r.name_any())
                },
            )
            .watches_stream(role_events, move |r: PartialObjectMeta<Role>| {
                referencing_role(RoleKind::Role, r.namespace(), &r.name_any())
            })
            .graceful_shutdown_on(stopped.wait())
            .run(
                |r, ctx| measured(kind::ROLE, ctx.clone(), role::reconcile(r, ctx)),
                error_policy,
                ctx.clone(),
            )
            .for_each(|_| future::ready(()));
    let eligibility_controller = Controller::for_shared_stream(
        feeds.eligibilities.subscribe(true),
        feeds.eligibilities.store(),
    )
    .with_config(ControllerConfig::default().concurrency(2))
    .reconcile_on(eligibility_refresh)
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

    let review_controller =
        Controller::for_shared_stream(feeds.reviews.subscribe(true), feeds.reviews.store())
            .with_config(ControllerConfig::default().concurrency(2))
            .graceful_shutdown_on(stopped.wait())
            .run(
                |r, ctx| measured(kind::ACCESS_REVIEW, ctx.clone(), review::reconcile(r, ctx)),
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

    // What ended grants left behind, reviewed after their revocation (subscribed before the
    // worker reads the cache, so nothing pending falls between the two).
    let foothold_reviews = foothold_review::run(
        ctx.clone(),
        feeds.requests.subscribe(false).take_until(stopped.wait()),
    );

    // Separation of duties: the kept history analysed every interval.
    let separation_ctx = ctx.clone();
    let separation_loop = {
        let settings = settings.separation.clone();
        let stop = stopped.wait();
        async move { separation::run(&separation_ctx, settings, stop).await }
    };

    // History retention: ended requests exported, then deleted.
    let retention_loop = retention_loop(ctx.clone(), settings.retention, stopped.wait());

    // Standing privilege (I2): its own periodic, uncached scan of all bindings.
    let standing_loop = standing_scan::run(ctx.clone(), settings.standing.clone(), stopped.wait());

    tokio::join!(
        request_controller,
        role_controller,
        eligibility_controller,
        review_controller,
        sweeper_loop,
        binding_guard,
        standing_loop,
        retention_loop,
        foothold_reviews,
        separation_loop,
    );
}

/// Prunes history every `settings.interval` (the first pass after one interval: a new leader's
/// first minutes belong to revocations and activations).
async fn retention_loop(
    ctx: Arc<Context>,
    settings: RetentionSettings,
    stop: impl Future<Output = ()>,
) {
    let Some(keep_for) = settings.keep_for else {
        return;
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            // Never a busy loop, whatever the flag says.
            _ = tokio::time::sleep(settings.interval.max(Duration::from_secs(1))) => {}
            _ = &mut stop => return,
        }
        match retention::prune(&ctx, keep_for).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(
                deleted,
                "history retention: ended requests exported and deleted"
            ),
            Err(error) => tracing::warn!(%error, "history retention pass failed"),
        }
    }
}

/// The PrivilegedRoles that reference this Role or ClusterRole.
fn referencing(
    roles: Store<PrivilegedRole>,
) -> impl Fn(RoleKind, Option<String>, &str) -> Vec<ObjectRef<PrivilegedRole>> {
    move |kind, namespace, name| {
        roles
            .state()
            .into_iter()
            .filter(|r| {
                let role_ref = &r.spec.role_ref;
                role_ref.kind == kind
                    && role_ref.name == name
                    && (kind == RoleKind::ClusterRole || role_ref.namespace == namespace)
            })
            .map(|r| ObjectRef::from_obj(r.as_ref()))
            .collect()
    }
}

/// The requests on the other side of a hand-over from `request`: the one it extends, and those
/// that extend it.
fn related_requests(
    ctx: &Context,
    request: &ActivationRequest,
) -> Vec<ObjectRef<ActivationRequest>> {
    let name = request.name_any();
    let mut related: Vec<_> = request
        .spec
        .extends
        .iter()
        .map(|original| ObjectRef::new(original))
        .collect();
    related.extend(
        ctx.extensions_of(&name)
            .iter()
            .map(|r| ObjectRef::from_obj(r.as_ref())),
    );
    related
}
