//! Publishing Kubernetes Events (`events.k8s.io/v1`), with a bounded memory of recent ones.
//!
//! kube's own `Recorder` keeps a whole copy of every Event it published for six minutes, to turn
//! repeats into a series. At 10,000 grants that was about 30 MiB of the operator's steady memory
//! (issue 11), for Events that almost never repeat. This recorder folds repeats the same way
//! (same type, reason, action, object and related object: one Event whose `series.count` grows)
//! but remembers only the Event's name per key, and at most [`REMEMBERED`] of them.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::{Api, Client};
use tokio::time::Instant;

/// How long a published Event can still be continued as a series (kube's recorder and
/// client-go's both use six minutes).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// Keys remembered at most. A repeat of an Event forgotten earlier becomes a new Event: a little
/// more noise in `kubectl describe`, never a lost record.
pub const REMEMBERED: usize = 1024;

/// What makes two Events the same occurrence (the note is not part of it, as in client-go).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    type_: EventType,
    reason: String,
    action: String,
    regarding: ObjectKey,
    related: Option<ObjectKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ObjectKey {
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
}

impl From<&ObjectReference> for ObjectKey {
    fn from(r: &ObjectReference) -> Self {
        Self {
            kind: r.kind.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            uid: r.uid.clone(),
        }
    }
}

/// A published Event, as far as continuing its series needs.
#[derive(Debug, Clone)]
struct Published {
    namespace: String,
    name: String,
    count: i32,
    last: Instant,
}

/// The Events published within the series window, bounded.
#[derive(Debug, Default)]
struct Recent {
    by_key: HashMap<SeriesKey, Published>,
}

impl Recent {
    fn live(&self, key: &SeriesKey, now: Instant) -> Option<Published> {
        self.by_key
            .get(key)
            .filter(|p| now.duration_since(p.last) < SERIES_WINDOW)
            .cloned()
    }

    fn remember(&mut self, key: SeriesKey, published: Published) {
        if self.by_key.len() >= REMEMBERED && !self.by_key.contains_key(&key) {
            let now = published.last;
            self.by_key
                .retain(|_, p| now.duration_since(p.last) < SERIES_WINDOW);
            if self.by_key.len() >= REMEMBERED {
                let oldest = self
                    .by_key
                    .iter()
                    .min_by_key(|(_, p)| p.last)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    self.by_key.remove(&oldest);
                }
            }
        }
        self.by_key.insert(key, published);
    }

    fn len(&self) -> usize {
        self.by_key.len()
    }
}

/// Publishes Events as one reporting controller; clones share the memory of recent Events.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    reporter: Reporter,
    recent: Arc<Mutex<Recent>>,
}

impl Recorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            recent: Arc::default(),
        }
    }

    /// Publishes `event` about `regarding` (a cluster-scoped object's Events go to `default`):
    /// a new Event, or the next of a series when the same one was published within the window.
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let key = SeriesKey {
            type_: event.type_,
            reason: event.reason.clone(),
            action: event.action.clone(),
            regarding: regarding.into(),
            related: event.secondary.as_ref().map(Into::into),
        };
        let earlier = self.lock().live(&key, Instant::now());
        let published = match earlier {
            Some(earlier) => match self.continue_series(&earlier).await {
                Ok(()) => Published {
                    count: earlier.count + 1,
                    last: Instant::now(),
                    ..earlier
                },
                // The API server dropped it already (Events live an hour by default).
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    self.create(event, regarding).await?
                }
                Err(error) => return Err(error),
            },
            None => self.create(event, regarding).await?,
        };
        self.lock().remember(key, published);
        Ok(())
    }

    async fn create(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<Published, kube::Error> {
        let now = Timestamp::now();
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = format!(
            "{}.{:x}",
            regarding
                .name
                .as_deref()
                .unwrap_or(&self.reporter.controller),
            now.as_nanosecond()
        );
        let body = K8sEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            ..Default::default()
        };
        Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &body)
            .await?;
        Ok(Published {
            namespace,
            name,
            count: 1,
            last: Instant::now(),
        })
    }

    async fn continue_series(&self, earlier: &Published) -> Result<(), kube::Error> {
        let series = serde_json::json!({
            "series": EventSeries {
                count: earlier.count + 1,
                last_observed_time: MicroTime(Timestamp::now()),
            }
        });
        Api::<K8sEvent>::namespaced(self.client.clone(), &earlier.namespace)
            .patch(
                &earlier.name,
                &PatchParams::default(),
                &Patch::Merge(&series),
            )
            .await?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Events remembered for their series right now (bounded by [`REMEMBERED`]).
    pub fn remembered(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
