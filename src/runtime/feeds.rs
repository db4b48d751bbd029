//! The operator's caches, kept by every replica, and the trigger streams the leader's controllers
//! read from them.
//!
//! A [`Feed`] is one reflector (a watch that fills a [`Store`]) driven on every replica: the webhook
//! reads roles and eligibilities, `/metrics` the requests and roles, and `/readyz` waits for all of
//! them. A replica that becomes leader starts its controllers on warm caches and
//! [`Feed::subscribe`]s to the objects the watch touches from then on. Each object reaches a
//! subscriber only after the store holds it, so a reconcile triggered by a change always reads
//! that change. Deletions are passed on too (a deleted PrivilegedRole must reach its requests).
//!
//! A subscription can replay the whole cache first: a new leader reconciles every request once,
//! as a fresh start would. Subscribers of an earlier term go away with its tasks and are
//! forgotten at the next event.
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, Lookup, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_stream_shim::UnboundedReceiverStream;

use super::backoff::WatchBackoff;

/// One cache and its subscribers.
pub struct Feed<K>
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store: Store<K>,
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<K>>>>,
}

impl<K> Clone for Feed<K>
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            subscribers: self.subscribers.clone(),
        }
    }
}

impl<K> Feed<K>
where
    K: Resource<DynamicType = ()>
        + Lookup<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    /// The feed and the future that drives its watch (run it until shutdown).
    pub fn new(api: Api<K>, config: watcher::Config) -> (Self, impl Future<Output = ()> + Send) {
        Self::trimmed(api, config, |_| {})
    }

    /// [`Feed::new`], dropping also what `extra` removes from each object before it is cached.
    pub fn trimmed(
        api: Api<K>,
        config: watcher::Config,
        extra: fn(&mut K),
    ) -> (Self, impl Future<Output = ()> + Send) {
        // What the controllers never read is dropped before it is cached: managedFields and
        // kubectl's last-applied copy are most of an object's size (issue: memory at 10k grants).
        Self::from_events(watcher(api, config).modify(move |object| {
            trim(object);
            extra(object);
        }))
    }

    /// The feed of any stream of watch events (a watch in production, a script in tests): the
    /// store is updated first, then every subscriber gets the touched object.
    fn from_events(
        events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
    ) -> (Self, impl Future<Output = ()> + Send) {
        let (store, writer) = reflector::store();
        let subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<K>>>> = Arc::default();
        let feed = Self {
            store,
            subscribers: subscribers.clone(),
        };
        let kind = <K as Resource>::kind(&()).to_string();
        let drive = reflector::reflector(writer, events)
            .backoff(WatchBackoff::default())
            .touched_objects()
            .for_each(move |touched| {
                match touched {
                    Ok(object) => {
                        let mut subscribers = subscribers.lock().unwrap_or_else(|e| e.into_inner());
                        subscribers.retain(|tx| tx.send(object.clone()).is_ok());
                    }
                    Err(error) => tracing::debug!(%error, %kind, "watch failed; retrying"),
                }
                std::future::ready(())
            });
        (feed, drive)
    }
}

impl<K> Feed<K>
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    /// The cache.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Every object the watch touches from now on (deleted ones included), in the form the
    /// controller's trigger streams take. With `replay`, the cache's current objects come first.
    pub fn subscribe(
        &self,
        replay: bool,
    ) -> impl Stream<Item = Result<K, watcher::Error>> + Send + use<K>
    where
        K: Send,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        if replay {
            for object in self.store.state() {
                let _ = tx.send(object.as_ref().clone());
            }
        }
        subscribers.push(tx);
        UnboundedReceiverStream::new(rx).map(Ok)
    }

    /// Subscribers right now (for tests).
    pub fn subscribers(&self) -> usize {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subscribers.retain(|tx| !tx.is_closed());
        subscribers.len()
    }
}

/// Removes from a watched object what no decision reads.
fn trim<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `tokio-stream`'s wrapper, without the dependency.
mod tokio_stream_shim {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::sync::mpsc;

    pub struct UnboundedReceiverStream<T>(mpsc::UnboundedReceiver<T>);

    impl<T> UnboundedReceiverStream<T> {
        pub fn new(rx: mpsc::UnboundedReceiver<T>) -> Self {
            Self(rx)
        }
    }

    impl<T> futures::Stream for UnboundedReceiverStream<T> {
        type Item = T;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use kube::runtime::watcher::Event;

    fn cm(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// A feed driven by a scripted event stream instead of a watch (the production fan-out).
    fn scripted(
        events: Vec<Event<ConfigMap>>,
    ) -> (
        Feed<ConfigMap>,
        impl Future<Output = ()>,
        mpsc::UnboundedSender<Event<ConfigMap>>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        for e in events {
            tx.send(e).unwrap();
        }
        let (feed, drive) = Feed::from_events(UnboundedReceiverStream::new(rx).map(Ok));
        (feed, drive, tx)
    }

    fn names(objects: &[ConfigMap]) -> Vec<String> {
        objects
            .iter()
            .map(|o| o.metadata.name.clone().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn subscribers_get_replays_then_live_events_after_the_store() {
        let (feed, drive, events) = scripted(vec![
            Event::Init,
            Event::InitApply(cm("a")),
            Event::InitApply(cm("b")),
            Event::InitDone,
        ]);
        let drive = tokio::spawn(drive);
        feed.store().wait_until_ready().await.unwrap();

        let mut replayed = Box::pin(feed.subscribe(true));
        let mut live = Box::pin(feed.subscribe(false));
        let mut first = vec![];
        for _ in 0..2 {
            first.push(replayed.next().await.unwrap().unwrap());
        }
        let mut first = names(&first);
        first.sort();
        assert_eq!(first, ["a", "b"]);

        events.send(Event::Apply(cm("c"))).unwrap();
        events.send(Event::Delete(cm("a"))).unwrap();
        for stream in [&mut replayed, &mut live] {
            let c = stream.next().await.unwrap().unwrap();
            assert_eq!(names(&[c]), ["c"]);
            let a = stream.next().await.unwrap().unwrap();
            assert_eq!(names(&[a]), ["a"], "deletions reach subscribers");
        }
        // The store was updated before the subscribers heard of it.
        assert!(
            feed.store()
                .get(&reflector::ObjectRef::new("c").within("ns"))
                .is_some()
        );
        assert!(
            feed.store()
                .get(&reflector::ObjectRef::new("a").within("ns"))
                .is_none()
        );

        // A subscriber that went away (an ended leadership term) is forgotten.
        drop(live);
        assert_eq!(feed.subscribers(), 1);
        drop(events);
        drive.await.unwrap();
    }
}
