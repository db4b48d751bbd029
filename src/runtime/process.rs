//! Starting the operator: the caches, the webhook, the metrics/health listener, the notifier and
//! leader election side by side; the controllers run in terms ([`super::term`]) while this
//! replica leads. A term ends gracefully on shutdown (reconciles in flight may finish, then the
//! lease is released for the next replica) or at once when leadership is lost.
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::ListParams;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use tokio::sync::watch;

use crate::api::{ActivationRequest, Eligibility, PrivilegedRole, labels};
use crate::controller::context::Context;
use crate::controller::index;
use crate::events::Recorder;
use crate::health::{Health, HealthServer, Readiness};
use crate::metrics::Metrics;
use crate::notify::{FailureCallback, Notification, Notifier};

use super::feeds::Feed;
use super::term::{AbortOnDrop, Feeds, Shared, Stop, lead};
use super::{Error, OperatorSettings, RunArgs, leader};

/// Dead watch connections are noticed after this (+5 s); the default of 290 s is too slow for
/// approvals and revocations.
const WATCH_TIMEOUT_SECS: u32 = 60;
/// Notifications still queued at shutdown get this long to be delivered.
const NOTIFY_GRACE: Duration = Duration::from_secs(5);

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
    // Requests are cached without the rules their grants recorded (role integrity reads them
    // back when a role changes), and indexed by role, requester and extension.
    let (requests, requests_watch) = Feed::shaped(
        Api::all(client.clone()),
        fast.clone(),
        crate::controller::role_rules::trim_cached,
        index::request_keys,
    );
    let (roles, roles_watch) = Feed::new(Api::all(client.clone()), fast.clone());
    let (eligibilities, eligibilities_watch) = Feed::indexed(
        Api::all(client.clone()),
        fast.clone(),
        index::eligibility_keys,
    );
    let (role_bindings, rb_watch) = Feed::new(Api::all(client.clone()), managed.clone());
    let (cluster_role_bindings, crb_watch) = Feed::new(Api::all(client.clone()), managed);
    let (reviews, reviews_watch) = Feed::new(Api::all(client.clone()), fast.clone());
    let feeds = Feeds {
        requests,
        roles,
        eligibilities,
        role_bindings,
        cluster_role_bindings,
        reviews,
    };
    let (synced_tx, synced) = watch::channel(false);
    metrics.attach_caches(feeds.requests.store(), feeds.roles.store(), synced.clone());
    let watches = {
        let stop = stopped.wait();
        async move {
            tokio::select! {
                _ = async { tokio::join!(requests_watch, roles_watch, eligibilities_watch, rb_watch, crb_watch, reviews_watch) } => {}
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
                requests: feeds.requests.store(),
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
    // The audit endpoint, on every replica (the API server posts to whichever it reaches); over
    // TLS with the webhook's certificate when this process serves the webhook.
    let (aggregator, audit) = match settings.ingest.clone() {
        Some(ingest) => {
            let aggregator = crate::ingest::Aggregator::new(
                feeds.requests.store(),
                metrics.clone(),
                ingest.flush_interval,
                ingest.queue,
                crate::time::Clock::system(),
            );
            let tls = match &webhook {
                Some(webhook) => Some(webhook.tls_config()?),
                None => None,
            };
            let listener = crate::ingest::AuditListener::bind(
                &ingest,
                aggregator.clone(),
                metrics.clone(),
                tls,
            )
            .await?;
            (Some(aggregator), Some(listener))
        }
        None => (None, None),
    };
    let audit = {
        let stop = stopped.wait();
        let stop_aggregator = stopped.wait();
        let aggregator = aggregator.clone();
        let client = client.clone();
        async move {
            if let (Some(audit), Some(aggregator)) = (audit, aggregator) {
                tokio::join!(audit.run(stop), aggregator.run(client, stop_aggregator));
            }
        }
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
        activity: aggregator,
    });
    let terms = lead(shared, leading_rx, stop_rx, release_tx, stop_tx.clone());

    let (result, ..) = tokio::join!(terms, election, watches, sync, health, webhook, audit);
    notifier.shutdown(NOTIFY_GRACE).await;
    result
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

/// SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
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
        let metrics = Arc::new(Metrics::new());
        let settings = args.settings(metrics.clone())?;
        let client = client_for(&args, metrics.api_calls()).await?;
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
