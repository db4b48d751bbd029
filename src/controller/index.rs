//! Names of cached objects by what reconcilers look them up by (a request's role, its requester,
//! the request it extends; an eligibility's role), kept beside a reflector store by the feed that
//! fills it. Without it every reconcile scanned the whole cache: at 10,000 requests a full pass
//! cost 10,000 × 10,000 comparisons and most of the idle CPU.
//!
//! Only names are indexed; objects are read from the store, so an index a moment behind the
//! store yields at most a name whose object is gone (skipped) — never a stale object.
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use kube::ResourceExt;
use kube::runtime::reflector::{Lookup, ObjectRef, Store};

use crate::api::{ActivationRequest, Eligibility};

/// The keys an object is found by.
pub type KeysOf<K> = fn(&K) -> Vec<String>;

pub struct Index<K> {
    keys_of: KeysOf<K>,
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    names: HashMap<String, BTreeSet<String>>,
    keys: HashMap<String, Vec<String>>,
}

impl Inner {
    fn remove(&mut self, name: &str) {
        for key in self.keys.remove(name).unwrap_or_default() {
            if let Some(names) = self.names.get_mut(&key) {
                names.remove(name);
                if names.is_empty() {
                    self.names.remove(&key);
                }
            }
        }
    }

    fn insert(&mut self, name: String, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        for key in &keys {
            self.names
                .entry(key.clone())
                .or_default()
                .insert(name.clone());
        }
        self.keys.insert(name, keys);
    }
}

impl<K: ResourceExt> Index<K> {
    pub fn new(keys_of: KeysOf<K>) -> Self {
        Self {
            keys_of,
            inner: RwLock::default(),
        }
    }

    /// An index that indexes nothing (for caches nobody looks up by key).
    pub fn none() -> Self {
        Self::new(|_| Vec::new())
    }

    /// An index of `objects` (tests, and a context built on stores filled by hand).
    pub fn of<'a>(keys_of: KeysOf<K>, objects: impl IntoIterator<Item = &'a K>) -> Self
    where
        K: 'a,
    {
        let index = Self::new(keys_of);
        index.rebuild(objects);
        index
    }

    /// The object was created or changed.
    pub fn apply(&self, object: &K) {
        let name = object.name_any();
        let keys = (self.keys_of)(object);
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if inner.keys.get(&name) == Some(&keys) {
            return;
        }
        inner.remove(&name);
        inner.insert(name, keys);
    }

    /// The object was deleted.
    pub fn remove(&self, object: &K) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.remove(&object.name_any());
    }

    /// Everything again, from what the store holds after a re-list (objects deleted while the
    /// watch was away are never reported one by one).
    pub fn rebuild<'a>(&self, objects: impl IntoIterator<Item = &'a K>)
    where
        K: 'a,
    {
        let mut fresh = Inner::default();
        for object in objects {
            fresh.insert(object.name_any(), (self.keys_of)(object));
        }
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = fresh;
    }

    /// The names under `key`, in name order.
    pub fn names(&self, key: &str) -> Vec<String> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .names
            .get(key)
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The objects under `key` that `store` still holds.
    pub fn objects(&self, store: &Store<K>, key: &str) -> Vec<Arc<K>>
    where
        K: Lookup<DynamicType = ()> + Clone + 'static,
    {
        self.names(key)
            .iter()
            .filter_map(|name| store.get(&ObjectRef::new(name)))
            .collect()
    }
}

/// Request keys: by role, by (requester, role), by the request it extends.
pub fn request_keys(request: &ActivationRequest) -> Vec<String> {
    let mut keys = vec![
        by_role(&request.spec.role),
        by_requester(request.requester_name(), &request.spec.role),
    ];
    if let Some(original) = &request.spec.extends {
        keys.push(extending(original));
    }
    keys
}

/// Eligibility keys: by role.
pub fn eligibility_keys(eligibility: &Eligibility) -> Vec<String> {
    vec![by_role(&eligibility.spec.role)]
}

pub fn by_role(role: &str) -> String {
    format!("role\u{0}{role}")
}

pub fn by_requester(requester: &str, role: &str) -> String {
    format!("requester\u{0}{requester}\u{0}{role}")
}

pub fn extending(original: &str) -> String {
    format!("extends\u{0}{original}")
}

pub type RequestIndex = Arc<Index<ActivationRequest>>;
pub type EligibilityIndex = Arc<Index<Eligibility>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests::builders::{self, RequestExt};

    fn request(name: &str, role: &str, by: &str) -> ActivationRequest {
        ActivationRequest::new(name, builders::request(role).by(&builders::user(by)))
    }

    #[test]
    fn names_follow_creation_change_deletion_and_a_relist() {
        let index = Index::new(request_keys);
        let a = request("a", "admin", "alice");
        let b = request("b", "admin", "bob");
        index.apply(&a);
        index.apply(&b);
        assert_eq!(index.names(&by_role("admin")), ["a", "b"]);
        assert_eq!(index.names(&by_requester("alice", "admin")), ["a"]);

        // An extension of `a` is found from `a`.
        let mut c = request("c", "admin", "alice");
        c.spec.extends = Some("a".into());
        index.apply(&c);
        assert_eq!(index.names(&extending("a")), ["c"]);

        // A changed key moves the name (and an emptied key goes).
        let mut moved = b.clone();
        moved.spec.role = "viewer".into();
        index.apply(&moved);
        assert_eq!(index.names(&by_role("admin")), ["a", "c"]);
        assert_eq!(index.names(&by_role("viewer")), ["b"]);

        index.remove(&c);
        assert!(index.names(&extending("a")).is_empty());

        // After a re-list only what the store holds is left.
        index.rebuild([&a]);
        assert_eq!(index.names(&by_role("admin")), ["a"]);
        assert!(index.names(&by_role("viewer")).is_empty());
        assert!(index.names(&by_requester("bob", "viewer")).is_empty());
    }
}
