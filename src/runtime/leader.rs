//! Leader election on a `coordination.k8s.io` Lease (`--leader-election`), with
//! [`kube_lease_manager`] taking, renewing and releasing the lease.
//!
//! Only the leader runs the controllers, the sweeper and the standing-privilege scan; every
//! replica serves the webhook and `/metrics`. Correctness never depends on this: no Rust lease
//! library fences writes, so two replicas that both believe they lead (a paused process, a clock
//! jump) are made harmless by resourceVersion-checked transitions, idempotent binding creation and
//! the sweeper. Leadership only keeps the work in one place and the API writes few.
//!
//! How leadership is decided here, beyond what the library does:
//!
//! - **Confirmed renewals.** A replica reconciles only while the lease, as the API server last
//!   reported it (a watch of the one Lease object), names it as holder with a renewal younger than
//!   `duration − grace/2`. The library renews every `duration − grace`; a renewal that fails or
//!   hangs is thus noticed `grace/2` before any other replica may take the lease over, and the
//!   controllers are stopped at once (the caller aborts them). They start again as soon as a
//!   renewal is confirmed.
//! - **Fast hand-over.** The library lets a follower sleep until the holder's lease would expire.
//!   When the watch shows the lease released (a leader shutting down gracefully), the follower's
//!   contender is restarted, so it takes the lease within one API round trip instead of up to a
//!   lease duration later.
//! - **Release.** [`campaign`] releases the lease when asked to (after the caller stopped the
//!   controllers), so a rollout loses no expiry. A killed leader's lease runs out on its own:
//!   another replica takes over within the lease duration plus up to a second.
use std::pin::pin;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_stream};
use kube::{Api, Client};
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseManagerBuilder, LeaseParams};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::backoff::WatchBackoff;

/// The smallest lease duration accepted (the grace must be at least a second and shorter).
pub const MIN_DURATION: Duration = Duration::from_secs(2);
/// How long a graceful release may take before it is given up (the lease then runs out).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);
/// Wait after a failed attempt to build the lease manager or to take/renew the lease.
const RETRY: Duration = Duration::from_secs(1);
const LEASE_WATCH_TIMEOUT_SECS: u32 = 60;

/// Flags of `kubepim run` for leader election.
#[derive(clap::Args, Debug, Clone)]
pub struct LeaderArgs {
    /// Run the controllers, the sweeper and the standing-privilege scan only while holding a
    /// Lease, so that several replicas can run; every replica serves the webhook and metrics.
    #[arg(long)]
    pub leader_election: bool,
    /// Name of the Lease.
    #[arg(long, default_value = "kubepim")]
    pub lease_name: String,
    /// Namespace of the Lease. Default: POD_NAMESPACE, then the namespace of the pod's
    /// ServiceAccount.
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long the lease holds without renewal: a killed leader is replaced after at most this
    /// (plus a second). Whole seconds, at least 2s; renewed every two thirds of it.
    #[arg(long, default_value = "15s", value_parser = crate::time::parse_duration)]
    pub lease_duration: Duration,
}

impl LeaderArgs {
    /// The settings these flags describe; `None` when leader election is off. The Lease lives in
    /// `--lease-namespace`, else the operator's own namespace.
    pub fn settings(
        &self,
        operator_namespace: Option<&str>,
    ) -> Result<Option<LeaderSettings>, String> {
        if !self.leader_election {
            return Ok(None);
        }
        let namespace = self
            .lease_namespace
            .as_deref()
            .filter(|ns| !ns.is_empty())
            .or(operator_namespace)
            .ok_or_else(|| {
                "--leader-election needs the Lease's namespace: set --lease-namespace or \
                 POD_NAMESPACE"
                    .to_string()
            })?;
        let settings = LeaderSettings::new(&self.lease_name, namespace, self.lease_duration);
        settings.check()?;
        Ok(Some(settings))
    }
}

/// Settings of leader election.
#[derive(Debug, Clone)]
pub struct LeaderSettings {
    /// Name of the Lease object.
    pub lease_name: String,
    /// Its namespace (the operator's).
    pub namespace: String,
    /// This replica's identity in `spec.holderIdentity`; unique per process.
    pub identity: String,
    /// How long a lease is valid after its last renewal (whole seconds, at least
    /// [`MIN_DURATION`]).
    pub duration: Duration,
}

impl LeaderSettings {
    pub fn new(lease_name: &str, namespace: &str, duration: Duration) -> Self {
        Self {
            lease_name: lease_name.into(),
            namespace: namespace.into(),
            identity: default_identity(),
            duration,
        }
    }

    fn duration_secs(&self) -> u64 {
        self.duration.as_secs().max(MIN_DURATION.as_secs())
    }

    /// Seconds before expiry at which the holder renews: a third of the duration (at least 1).
    pub fn grace_secs(&self) -> u64 {
        let d = self.duration_secs();
        (d / 3).clamp(1, d - 1)
    }

    /// How long after a confirmed renewal this replica keeps reconciling:
    /// `duration − grace/2`, i.e. `grace/2` before another replica could take the lease.
    pub fn hold_for(&self) -> Duration {
        Duration::from_secs(self.duration_secs()) - Duration::from_millis(self.grace_secs() * 500)
    }

    /// Refuses settings that cannot work.
    pub fn check(&self) -> Result<(), String> {
        if self.duration < MIN_DURATION || self.duration.subsec_nanos() != 0 {
            return Err(format!(
                "--lease-duration must be whole seconds, at least {}s (got {:?})",
                MIN_DURATION.as_secs(),
                self.duration
            ));
        }
        if self.lease_name.is_empty() || self.namespace.is_empty() || self.identity.is_empty() {
            return Err("leader election needs a lease name, a namespace and an identity".into());
        }
        Ok(())
    }
}

/// `POD_NAME` (or `HOSTNAME`) and a random suffix, so that two processes never share an
/// identity, not even a restarted container in the same pod.
pub fn default_identity() -> String {
    use std::hash::{BuildHasher, Hasher};
    let base = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "kubepim".into());
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.write_u32(std::process::id());
    format!("{base}-{:08x}", hasher.finish() as u32)
}

/// The lease's holder as the API server last reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub identity: String,
    /// `spec.renewTime` (written with the holder's clock).
    pub renewed: Option<SystemTime>,
}

fn holder_of(lease: &Lease) -> Option<Holder> {
    let spec = lease.spec.as_ref()?;
    let identity = spec.holder_identity.clone().filter(|s| !s.is_empty())?;
    Some(Holder {
        identity,
        renewed: spec.renew_time.as_ref().map(|t| SystemTime::from(t.0)),
    })
}

/// Until when `me` may reconcile on this observation of the lease: its last renewal plus
/// `hold_for`, if `me` holds it.
pub fn valid_until(observed: Option<&Holder>, me: &str, hold_for: Duration) -> Option<SystemTime> {
    let holder = observed.filter(|h| h.identity == me)?;
    holder.renewed.map(|at| at + hold_for)
}

/// Did another replica just let the lease go (a graceful release)?
pub fn released_by_other(before: Option<&Holder>, now: Option<&Holder>, me: &str) -> bool {
    before.is_some_and(|h| h.identity != me) && now.is_none()
}

/// Mirrors the Lease object into `tx` (None: no holder, or no lease).
async fn observe(api: Api<Lease>, name: String, tx: &watch::Sender<Option<Holder>>) {
    let config = watcher::Config::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(LEASE_WATCH_TIMEOUT_SECS);
    let mut stream = pin!(watch_stream(api, config).backoff(WatchBackoff::default()));
    let set = |new: Option<Holder>| {
        tx.send_if_modified(|current| {
            let changed = *current != new;
            *current = new;
            changed
        });
    };
    let mut seen = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(lease)) | Ok(Event::InitApply(lease)) => {
                seen = true;
                set(holder_of(&lease));
            }
            Ok(Event::Delete(_)) => set(None),
            Ok(Event::Init) => seen = false,
            Ok(Event::InitDone) => {
                if !seen {
                    set(None);
                }
            }
            Err(error) => tracing::debug!(%error, "lease watch failed; retrying"),
        }
    }
}

/// A [`LeaseManager`] driven on a task of its own: it takes the lease when it can and renews it,
/// and reports every change of "I hold it" (and every error).
struct Contender {
    task: Option<JoinHandle<()>>,
    events: mpsc::UnboundedReceiver<Result<bool, String>>,
    release: Option<oneshot::Sender<()>>,
}

impl Contender {
    fn start(client: Client, settings: LeaderSettings) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let (release, mut release_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let manager = loop {
                let params = LeaseParams::new(
                    settings.identity.clone(),
                    settings.duration_secs(),
                    settings.grace_secs(),
                );
                let built = LeaseManagerBuilder::new(client.clone(), &settings.lease_name)
                    .with_namespace(&settings.namespace)
                    .with_create_mode(LeaseCreateMode::AutoCreate)
                    .with_parameters(params)
                    .build()
                    .await;
                match built {
                    Ok(manager) => break manager,
                    Err(error) => {
                        let _ = tx.send(Err(format!("cannot set up the lease: {error}")));
                        tokio::select! {
                            _ = tokio::time::sleep(RETRY) => continue,
                            _ = &mut release_rx => return,
                        }
                    }
                }
            };
            loop {
                tokio::select! {
                    biased;
                    _ = &mut release_rx => {
                        release_lease(manager).await;
                        return;
                    }
                    changed = manager.changed() => match changed {
                        Ok(holds) => {
                            let _ = tx.send(Ok(holds));
                        }
                        Err(error) => {
                            let _ = tx.send(Err(error.to_string()));
                            tokio::select! {
                                _ = tokio::time::sleep(RETRY) => {}
                                _ = &mut release_rx => {
                                    release_lease(manager).await;
                                    return;
                                }
                            }
                        }
                    },
                }
            }
        });
        Self {
            task: Some(task),
            events,
            release: Some(release),
        }
    }

    async fn next(&mut self) -> Option<Result<bool, String>> {
        self.events.recv().await
    }

    /// Releases the lease if this contender holds it, and ends its task.
    async fn release(mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
        if let Some(task) = self.task.as_mut()
            && tokio::time::timeout(RELEASE_TIMEOUT, task).await.is_err()
        {
            tracing::warn!(
                "could not release the lease within {RELEASE_TIMEOUT:?}; it runs out on its own"
            );
        }
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn release_lease(manager: LeaseManager) {
    // The library panics on an unexpected conflict here; keep that from taking anything down.
    let released = tokio::spawn(async move { manager.release().await }).await;
    match released {
        Ok(Ok(())) => tracing::info!("released the lease"),
        Ok(Err(error)) => {
            tracing::warn!(%error, "could not release the lease; it runs out on its own")
        }
        Err(error) => tracing::warn!(%error, "releasing the lease failed; it runs out on its own"),
    }
}

/// Campaigns for the lease until `release` is set, publishing on `leading` whether this replica
/// may reconcile now. When `release` is set: `leading` goes false, the lease is released if held,
/// and the function returns. Nothing here is spawned without being tied to this future: dropping
/// it (a killed process) stops renewing at once, without a release.
pub async fn campaign(
    client: Client,
    settings: LeaderSettings,
    leading: watch::Sender<bool>,
    mut release: watch::Receiver<bool>,
) {
    let me = settings.identity.clone();
    let hold_for = settings.hold_for();
    let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    let (seen_tx, mut seen) = watch::channel(None);
    let lease_name = settings.lease_name.clone();
    // Never ends (and keeps the sender alive): the watch retries on its own.
    let mut observer = pin!(async move {
        observe(api, lease_name, &seen_tx).await;
        std::future::pending::<()>().await
    });
    let mut contender = Contender::start(client.clone(), settings.clone());
    let mut holds = false;
    let mut last_seen: Option<Holder> = None;
    tracing::info!(
        lease = %settings.lease_name, namespace = %settings.namespace, identity = %me,
        duration = ?settings.duration, "leader election: waiting for the lease"
    );
    loop {
        let now = SystemTime::now();
        let until = if holds {
            valid_until(seen.borrow().as_ref(), &me, hold_for)
        } else {
            None
        };
        let lead = until.is_some_and(|until| until > now);
        leading.send_if_modified(|current| {
            if *current == lead {
                return false;
            }
            *current = lead;
            if lead {
                tracing::info!(identity = %me, "leader election: this replica leads");
            } else {
                tracing::warn!(identity = %me, "leader election: this replica no longer leads");
            }
            true
        });
        let deadline = until
            .filter(|_| lead)
            .and_then(|until| until.duration_since(now).ok())
            .map(|left| tokio::time::Instant::now() + left);
        tokio::select! {
            biased;
            _ = super::term::wait_until(&mut release, true) => {
                leading.send_replace(false);
                contender.release().await;
                return;
            }
            event = contender.next() => match event {
                Some(Ok(now_holds)) => holds = now_holds,
                Some(Err(error)) => tracing::warn!(%error, "leader election: lease call failed; retrying"),
                None => {
                    holds = false;
                    contender = Contender::start(client.clone(), settings.clone());
                }
            },
            changed = seen.changed() => {
                if changed.is_err() {
                    // The observer ended (it does not): keep going without it.
                    continue;
                }
                let now_seen = seen.borrow_and_update().clone();
                if holds && now_seen.as_ref().is_some_and(|h| h.identity != me) {
                    tracing::warn!(holder = ?now_seen.as_ref().map(|h| &h.identity), "leader election: another replica holds the lease");
                    holds = false;
                    contender = Contender::start(client.clone(), settings.clone());
                } else if !holds && released_by_other(last_seen.as_ref(), now_seen.as_ref(), &me) {
                    // A graceful hand-over: take the lease now, not when it would have expired.
                    contender = Contender::start(client.clone(), settings.clone());
                }
                last_seen = now_seen;
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() => {
                tracing::warn!("leader election: no renewal of the lease confirmed in time; stopping until one is");
            }
            _ = &mut observer => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(secs: u64) -> LeaderSettings {
        LeaderSettings {
            lease_name: "kubepim".into(),
            namespace: "kubepim-system".into(),
            identity: "me".into(),
            duration: Duration::from_secs(secs),
        }
    }

    #[test]
    fn grace_and_hold_follow_the_duration() {
        let s = settings(15);
        assert_eq!(s.grace_secs(), 5);
        // Renewed every 10 s; reconciling stops 12.5 s after the last confirmed renewal,
        // 2.5 s before another replica may take over.
        assert_eq!(s.hold_for(), Duration::from_millis(12_500));
        assert_eq!(settings(2).grace_secs(), 1);
        assert_eq!(settings(2).hold_for(), Duration::from_millis(1_500));
        assert_eq!(settings(6).grace_secs(), 2);
        assert!(settings(15).check().is_ok());
        assert!(settings(1).check().is_err());
        let mut fractional = settings(5);
        fractional.duration = Duration::from_millis(5_500);
        assert!(fractional.check().is_err());
    }

    #[test]
    fn leads_only_on_a_confirmed_fresh_renewal_of_its_own() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let hold = Duration::from_secs(12);
        let mine = Holder {
            identity: "me".into(),
            renewed: Some(t0),
        };
        assert_eq!(valid_until(Some(&mine), "me", hold), Some(t0 + hold));
        let theirs = Holder {
            identity: "other".into(),
            renewed: Some(t0),
        };
        assert_eq!(valid_until(Some(&theirs), "me", hold), None);
        assert_eq!(valid_until(None, "me", hold), None);
        let unrenewed = Holder {
            identity: "me".into(),
            renewed: None,
        };
        assert_eq!(valid_until(Some(&unrenewed), "me", hold), None);
    }

    #[test]
    fn a_release_by_another_replica_is_noticed() {
        let other = Holder {
            identity: "other".into(),
            renewed: None,
        };
        let mine = Holder {
            identity: "me".into(),
            renewed: None,
        };
        assert!(released_by_other(Some(&other), None, "me"));
        assert!(
            !released_by_other(Some(&mine), None, "me"),
            "our own release"
        );
        assert!(!released_by_other(None, None, "me"));
        assert!(!released_by_other(Some(&other), Some(&mine), "me"));
    }

    #[test]
    fn identities_are_unique_per_process_start() {
        assert_ne!(default_identity(), default_identity());
    }
}
