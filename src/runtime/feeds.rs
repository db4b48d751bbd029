//! The operator's caches, kept by every replica, and the trigger streams the leader's controllers
//! read from them.
//!
//! A [`Feed`] is one reflector (a watch that fills a [`Store`]) driven on every replica: the webhook
//! reads roles and eligibilities, `/metrics` the requests and roles, and `/readyz` waits for all of
//! them. A replica that becomes leader starts its controllers on warm caches and
//! [`Feed::subscribe`]s to the objects the watch touches from then on. Each object reaches a
//! subscriber only after the store holds it, so a reconcile triggered by a change always reads
//! that change: a re-list's objects are passed on once it is complete and the store holds them
//! all. Deletions are passed on too (a deleted PrivilegedRole must reach its requests).
//!
//! Subscribers share the store's copy of each object (`Arc<K>`): at 10,000 requests a re-list or
//! a replay cloned every object once per subscriber into unbounded queues (issue 11).
//!
//! A subscription can replay the whole cache first: a new leader reconciles every request once,
//! as a fresh start would. Subscribers of an earlier term go away with its tasks and are
//! forgotten at the next event.
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, Lookup, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_stream_shim::UnboundedReceiverStream;

use crate::controller::index::{Index, KeysOf};

use super::backoff::WatchBackoff;

/// One cache and its subscribers.
pub struct Feed<K>
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store: Store<K>,
    /// Names by lookup key, updated with the store.
    index: Arc<Index<K>>,
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<Arc<K>>>>>,
}

impl<K> Clone for Feed<K>
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            index: self.index.clone(),
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
        Self::shaped(api, config, |_| {}, |_| Vec::new())
    }

    /// A feed whose objects are also indexed by `keys_of` (see [`Feed::index`]).
    pub fn indexed(
        api: Api<K>,
        config: watcher::Config,
        keys_of: KeysOf<K>,
    ) -> (Self, impl Future<Output = ()> + Send) {
        Self::shaped(api, config, |_| {}, keys_of)
    }

    /// A feed that drops also what `extra` removes from each object before it is cached, and
    /// indexes by `keys_of`.
    pub fn shaped(
        api: Api<K>,
        config: watcher::Config,
        extra: fn(&mut K),
        keys_of: KeysOf<K>,
    ) -> (Self, impl Future<Output = ()> + Send) {
        // What the controllers never read is dropped before it is cached: managedFields and
        // kubectl's last-applied copy are most of an object's size (issue: memory at 10k grants).
        Self::from_events(
            watcher(api, config).modify(move |object| {
                trim(object);
                extra(object);
            }),
            Index::new(keys_of),
        )
    }

    /// The feed of any stream of watch events (a watch in production, a script in tests): the
    /// store is updated first, then every subscriber gets the touched object, the store's own
    /// copy (a re-list's objects all at once when it is done, as the store swaps them in).
    fn from_events(
        events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
        index: Index<K>,
    ) -> (Self, impl Future<Output = ()> + Send) {
        let (store, writer) = reflector::store();
        let subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<Arc<K>>>>> = Arc::default();
        let index = Arc::new(index);
        let feed = Self {
            store: store.clone(),
            index: index.clone(),
            subscribers: subscribers.clone(),
        };
        let kind = <K as Resource>::kind(&()).to_string();
        let fan_out = move |objects: &mut dyn Iterator<Item = Arc<K>>| {
            let mut subscribers = subscribers.lock().unwrap_or_else(|e| e.into_inner());
            for object in objects {
                subscribers.retain(|tx| tx.send(object.clone()).is_ok());
            }
        };
        // The store is updated before each event comes out of the reflector; the index follows
        // it, then the subscribers hear of the object.
        let drive = reflector::reflector(writer, events)
            .backoff(WatchBackoff::default())
            .for_each(move |event| {
                match event {
                    Ok(watcher::Event::Apply(object)) => {
                        index.apply(&object);
                        // The store's copy; this one is dropped here.
                        let cached = store
                            .get(&ObjectRef::from_obj(&object))
                            .unwrap_or_else(|| Arc::new(object));
                        fan_out(&mut std::iter::once(cached));
                    }
                    Ok(watcher::Event::Delete(object)) => {
                        index.remove(&object);
                        fan_out(&mut std::iter::once(Arc::new(object)));
                    }
                    // A re-list's objects are in the store only once it is complete.
                    Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                    Ok(watcher::Event::InitDone) => {
                        let objects = store.state();
                        index.rebuild(objects.iter().map(AsRef::as_ref));
                        fan_out(&mut objects.into_iter());
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

    /// The cache's names by lookup key.
    pub fn index(&self) -> Arc<Index<K>> {
        self.index.clone()
    }

    /// Every object the watch touches from now on (deleted ones included), shared with the store
    /// (the form `Controller::for_shared_stream` and `watches_shared_stream` take). With `replay`,
    /// the cache's current objects come first.
    pub fn subscribe(&self, replay: bool) -> impl Stream<Item = Arc<K>> + Send + use<K>
    where
        K: Send + Sync,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        if replay {
            for object in self.store.state() {
                let _ = tx.send(object);
            }
        }
        subscribers.push(tx);
        UnboundedReceiverStream::new(rx)
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
        // Indexed by their `team` label, as requests are by role.
        let index = Index::new(|cm: &ConfigMap| {
            cm.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("team"))
                .map(|team| vec![team.clone()])
                .unwrap_or_default()
        });
        let (feed, drive) = Feed::from_events(UnboundedReceiverStream::new(rx).map(Ok), index);
        (feed, drive, tx)
    }

    fn of_team(name: &str, team: &str) -> ConfigMap {
        let mut object = cm(name);
        object.metadata.labels = Some([("team".to_string(), team.to_string())].into());
        object
    }

    #[tokio::test]
    async fn the_index_follows_the_store_through_changes_deletions_and_a_relist() {
        let (feed, drive, events) = scripted(vec![
            Event::Init,
            Event::InitApply(of_team("a", "red")),
            Event::InitApply(of_team("b", "red")),
            Event::InitDone,
        ]);
        let drive = tokio::spawn(drive);
        feed.store().wait_until_ready().await.unwrap();
        let mut live = Box::pin(feed.subscribe(false));
        let index = feed.index();
        assert_eq!(index.names("red"), ["a", "b"]);

        events.send(Event::Apply(of_team("b", "blue"))).unwrap();
        events.send(Event::Delete(of_team("a", "red"))).unwrap();
        live.next().await.unwrap();
        live.next().await.unwrap();
        assert!(index.names("red").is_empty());
        assert_eq!(index.names("blue"), ["b"]);

        // A re-list in which `b` is gone (deleted while the watch was away) and `c` is new.
        for event in [
            Event::Init,
            Event::InitApply(of_team("c", "blue")),
            Event::InitDone,
            Event::Apply(of_team("d", "green")),
        ] {
            events.send(event).unwrap();
        }
        let mut seen = vec![];
        while seen.last().map(String::as_str) != Some("d") {
            seen.push(names(&[live.next().await.unwrap()]).remove(0));
        }
        assert_eq!(index.names("blue"), ["c"]);
        assert_eq!(index.names("green"), ["d"]);
        drop(events);
        drive.await.unwrap();
    }

    fn names(objects: &[Arc<ConfigMap>]) -> Vec<String> {
        objects
            .iter()
            .map(|o| o.metadata.name.clone().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn subscribers_share_the_stores_copy_and_hear_of_a_relist_once_it_is_in_the_store() {
        let (feed, drive, events) = scripted(vec![
            Event::Init,
            Event::InitApply(cm("a")),
            Event::InitDone,
        ]);
        let drive = tokio::spawn(drive);
        feed.store().wait_until_ready().await.unwrap();
        let store = feed.store();
        let cached = |name: &str| store.get(&reflector::ObjectRef::new(name).within("ns"));

        // A replay hands out the store's objects, not copies.
        let mut replayed = Box::pin(feed.subscribe(true));
        let mut live = Box::pin(feed.subscribe(false));
        let a = replayed.next().await.unwrap();
        assert!(Arc::ptr_eq(&a, &cached("a").unwrap()));

        // So does a change.
        events.send(Event::Apply(of_team("a", "red"))).unwrap();
        let changed = live.next().await.unwrap();
        assert!(Arc::ptr_eq(&changed, &cached("a").unwrap()));
        assert_eq!(
            replayed.next().await.unwrap().metadata.labels,
            changed.metadata.labels
        );

        // A re-list: nothing is passed on until it is complete; then every object it brought, as
        // the store now holds it (the reconcile it triggers reads the re-listed version).
        events.send(Event::Init).unwrap();
        events.send(Event::InitApply(of_team("a", "blue"))).unwrap();
        events.send(Event::InitApply(cm("b"))).unwrap();
        tokio::task::yield_now().await;
        assert!(
            futures::FutureExt::now_or_never(live.next()).is_none(),
            "nothing before InitDone"
        );
        events.send(Event::InitDone).unwrap();
        let mut relisted = vec![live.next().await.unwrap(), live.next().await.unwrap()];
        relisted.sort_by_key(|o| o.metadata.name.clone());
        assert_eq!(names(&relisted), ["a", "b"]);
        assert_eq!(feed.index().names("blue"), ["a"]);
        for object in &relisted {
            let name = object.metadata.name.as_deref().unwrap();
            assert!(Arc::ptr_eq(object, &cached(name).unwrap()));
        }
        assert_eq!(
            relisted[0].metadata.labels.as_ref().unwrap()["team"],
            "blue",
            "the re-listed version, not the one before"
        );
        drop(events);
        drive.await.unwrap();
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
            first.push(replayed.next().await.unwrap());
        }
        let mut first = names(&first);
        first.sort();
        assert_eq!(first, ["a", "b"]);

        events.send(Event::Apply(cm("c"))).unwrap();
        events.send(Event::Delete(cm("a"))).unwrap();
        for stream in [&mut replayed, &mut live] {
            let c = stream.next().await.unwrap();
            assert_eq!(names(&[c]), ["c"]);
            let a = stream.next().await.unwrap();
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
