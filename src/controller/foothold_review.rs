//! The foothold review of ended grants, off the revocation path: the request reconciler writes a
//! grant's end with `FootholdsFound` pending, and this worker, at a bounded concurrency of its
//! own, scans what the grant left behind and writes the verdict. An expiry herd is revoked at the
//! pace of binding deletions; the scans (each lists a namespace, or the cluster) follow.
//!
//! What is pending is read from the requests themselves (the condition), so a restart or a new
//! leader picks up every review that was cut off.
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::api::ActivationRequest;
use crate::policy::footholds::{Reviewed, is_pending, reviewed_status};

use super::calls::Refusal;
use super::context::Context;
use super::footholds;
use super::request::record;

/// Reviews running at once: each is a few list calls, and they share the API server with the
/// reconcilers.
const REVIEWERS: usize = 2;
/// A review whose scan failed is tried again this often before it is reported as failed.
const ATTEMPTS: u32 = 3;
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// What one review attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The verdict is written (or nothing was pending any more).
    Done,
    /// The request changed under the write: look again at the newer version.
    Again,
    /// The scan failed: `error`.
    Failed(String),
}

/// Names waiting for a review, each at most once (a request's status changes several times while
/// it waits; one review covers them all).
#[derive(Default)]
struct Queue {
    order: VecDeque<String>,
    /// Queued, under review, or held back for a retry.
    held: HashSet<String>,
}

impl Queue {
    fn add(&mut self, name: String) {
        if self.held.insert(name.clone()) {
            self.order.push_back(name);
        }
    }

    fn next(&mut self) -> Option<String> {
        self.order.pop_front()
    }

    fn release(&mut self, name: &str) {
        self.held.remove(name);
    }
}

/// Reviews every pending request now in the cache, then each one `events` brings, until the
/// stream ends.
pub async fn run(ctx: Arc<Context>, events: impl Stream<Item = Arc<ActivationRequest>>) {
    let recent = Arc::new(footholds::RecentScans::default());
    let mut queue = Queue::default();
    let mut failures: HashMap<String, u32> = HashMap::new();
    for request in ctx.requests.state() {
        if request.status.as_ref().is_some_and(is_pending) {
            queue.add(request.name_any());
        }
    }
    let events = events.fuse();
    tokio::pin!(events);
    let mut running = FuturesUnordered::new();
    let mut delayed = FuturesUnordered::new();
    loop {
        while running.len() < REVIEWERS
            && let Some(name) = queue.next()
        {
            let ctx = ctx.clone();
            let recent = recent.clone();
            running.push(async move {
                let outcome = review_one_sharing(&ctx, &name, &recent).await;
                (name, outcome)
            });
        }
        tokio::select! {
            event = events.next() => match event {
                Some(request) => if request.status.as_ref().is_some_and(is_pending) {
                    queue.add(request.name_any());
                },
                None => break,
            },
            Some((name, outcome)) = running.next(), if !running.is_empty() => match outcome {
                Attempt::Done => {
                    queue.release(&name);
                    failures.remove(&name);
                }
                Attempt::Again => {
                    queue.release(&name);
                    queue.add(name);
                }
                Attempt::Failed(error) => {
                    let attempts = failures.entry(name.clone()).or_default();
                    *attempts += 1;
                    if *attempts >= ATTEMPTS {
                        failures.remove(&name);
                        queue.release(&name);
                        give_up(&ctx, &name, &error).await;
                    } else {
                        // Still held, so that new events cannot bring it back before the pause.
                        delayed.push(async move {
                            tokio::time::sleep(RETRY_AFTER).await;
                            name
                        });
                    }
                }
            },
            Some(name) = delayed.next(), if !delayed.is_empty() => {
                queue.release(&name);
                queue.add(name);
            }
        }
    }
}

/// Reviews one request as the cache holds it: scan, verdict written conditional on the version
/// scanned for, then recorded (Event, audit line, notification, metric) when something was found.
pub async fn review_one(ctx: &Context, name: &str) -> Attempt {
    review_one_sharing(ctx, name, &footholds::RecentScans::default()).await
}

/// [`review_one`], answered from a scan of the same scope in `recent` where one covers it.
pub async fn review_one_sharing(
    ctx: &Context,
    name: &str,
    recent: &footholds::RecentScans,
) -> Attempt {
    let Some(request) = ctx.requests.get(&ObjectRef::new(name)) else {
        return Attempt::Done;
    };
    let Some(old) = request.status.as_ref().filter(|s| is_pending(s)) else {
        return Attempt::Done;
    };
    let now = ctx.now();
    let review = match footholds::review(ctx, &request, now, recent).await {
        Ok(review) => review,
        Err(error) => {
            tracing::warn!(%error, request = %name, "foothold scan failed; will retry");
            return Attempt::Failed(error.to_string());
        }
    };
    let new = reviewed_status(
        old,
        Ok(Reviewed {
            footholds: &review.footholds,
            unreadable: &review.unreadable,
            audited: review.audited,
        }),
        request.metadata.generation,
        now,
    );
    let found = review.footholds;
    match record::patch_status(ctx, name, request.resource_version(), &new).await {
        Ok(()) => {
            if !found.is_empty() {
                record::footholds(ctx, &request, &found);
            }
            Attempt::Done
        }
        Err(error) if error.refusal() == Refusal::Conflict => Attempt::Again,
        Err(error) if error.refusal() == Refusal::NotFound => Attempt::Done,
        Err(error) => Attempt::Failed(error.to_string()),
    }
}

/// After the last attempt: the condition says the review failed and why (best effort; a later
/// leader does not retry a failed review, the condition is the record).
async fn give_up(ctx: &Context, name: &str, error: &str) {
    let Some(request) = ctx.requests.get(&ObjectRef::new(name)) else {
        return;
    };
    let Some(old) = request.status.as_ref().filter(|s| is_pending(s)) else {
        return;
    };
    let new = reviewed_status(old, Err(error), request.metadata.generation, ctx.now());
    tracing::warn!(request = %name, %error, "foothold review failed; the grant ends unreviewed");
    if let Err(error) = record::patch_status(ctx, name, request.resource_version(), &new).await {
        tracing::debug!(%error, request = %name, "could not record the failed foothold review");
    }
}
