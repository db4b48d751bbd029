//! What every reconciler shares: the client, the caches and the event recorder.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::api::{ActivationRequest, Eligibility, PrivilegedRole};
use crate::policy::lifecycle::{ObservedBinding, binding_name};

use super::bindings;

/// A managed binding found for a request, with the UID used as a delete precondition.
#[derive(Debug, Clone)]
pub struct FoundBinding {
    pub observed: ObservedBinding,
    pub uid: Option<String>,
    /// Same name and managed, but made for an earlier request of the same name.
    pub foreign: bool,
}

pub struct Context {
    pub client: Client,
    pub requests: Store<ActivationRequest>,
    pub roles: Store<PrivilegedRole>,
    pub eligibilities: Store<Eligibility>,
    /// Only managed bindings are cached (label-selected watch), never all bindings.
    pub role_bindings: Store<RoleBinding>,
    pub cluster_role_bindings: Store<ClusterRoleBinding>,
    pub recorder: Recorder,
    /// Standing-privilege findings of the latest scan, per PrivilegedRole: what the metric
    /// `kubepim_unmanaged_privileged_bindings{role}` exports (see `super::standing::Findings`).
    pub standing: super::standing::Findings,
    /// Recent answers to "may the operator bind this role?" (see `super::role_checks`).
    pub(crate) bind_checks: super::role_checks::BindChecks,
    /// Per request, the newest resourceVersion our own writes produced (see `is_superseded`).
    written: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// The process's metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Told about every phase change (a disabled notifier unless configured).
    pub notifier: crate::notify::Notifier,
}

impl Context {
    pub fn new(
        client: Client,
        requests: Store<ActivationRequest>,
        roles: Store<PrivilegedRole>,
        eligibilities: Store<Eligibility>,
        role_bindings: Store<RoleBinding>,
        cluster_role_bindings: Store<ClusterRoleBinding>,
    ) -> Self {
        let reporter = Reporter {
            controller: "kubepim".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        Self {
            client,
            requests,
            roles,
            eligibilities,
            role_bindings,
            cluster_role_bindings,
            recorder,
            standing: Default::default(),
            bind_checks: Default::default(),
            written: Default::default(),
            metrics: Default::default(),
            notifier: crate::notify::Notifier::disabled(),
        }
    }

    /// Uses the process-wide recorder (one shared recorder de-duplicates Events), metrics and
    /// notifier instead of this context's own.
    pub fn with_shared(
        mut self,
        recorder: Recorder,
        metrics: Arc<crate::metrics::Metrics>,
        notifier: crate::notify::Notifier,
    ) -> Self {
        self.recorder = recorder;
        self.metrics = metrics;
        self.notifier = notifier;
        self
    }

    /// The event recorder every replica's context uses: reports as `kubepim` with the pod's name.
    pub fn recorder_for(client: Client) -> Recorder {
        let reporter = Reporter {
            controller: "kubepim".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Recorder::new(client, reporter)
    }

    /// Remembers the version a write of ours produced.
    pub fn note_written(&self, request: &str, resource_version: Option<&str>) {
        let Some(rv) = resource_version.and_then(|rv| rv.parse::<u64>().ok()) else {
            return;
        };
        if let Ok(mut written) = self.written.lock() {
            let entry = written.entry(request.to_string()).or_insert(rv);
            *entry = (*entry).max(rv);
        }
    }

    /// Is this version older than one our own writes produced? resourceVersions are opaque by
    /// contract but are etcd revisions in practice; anything unparsable is never called stale.
    pub fn is_superseded(&self, request: &str, resource_version: Option<&str>) -> bool {
        let Some(rv) = resource_version.and_then(|rv| rv.parse::<u64>().ok()) else {
            return false;
        };
        let Ok(mut written) = self.written.lock() else {
            return false;
        };
        match written.get(request) {
            Some(&newest) if rv < newest => true,
            Some(_) => {
                // The cache has caught up: forget, so the map only holds requests in flight.
                written.remove(request);
                false
            }
            None => false,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    pub fn role(&self, name: &str) -> Option<Arc<PrivilegedRole>> {
        self.roles.get(&ObjectRef::new(name))
    }

    /// Eligibilities that name this role (filtering by subject is the policy's job).
    pub fn eligibilities_for(&self, role: &str) -> Vec<Arc<Eligibility>> {
        self.eligibilities
            .state()
            .into_iter()
            .filter(|e| e.spec.role == role)
            .collect()
    }

    /// Managed bindings that may belong to `request`, looked up by their deterministic name in
    /// every namespace the request could have been granted in.
    pub fn bindings_of(
        &self,
        request: &ActivationRequest,
        role: Option<&PrivilegedRole>,
    ) -> Vec<FoundBinding> {
        let name = binding_name(&request.name_any());
        let uid = request.uid();
        let mut namespaces: Vec<String> = request.spec.namespaces.clone();
        if let Some(status) = &request.status {
            namespaces.extend(status.bindings.iter().filter_map(|b| b.namespace.clone()));
        }
        if let Some(role) = role {
            namespaces.extend(role.spec.scope.namespaces.iter().cloned());
        }
        namespaces.sort();
        namespaces.dedup();

        let mut found = Vec::new();
        for ns in &namespaces {
            if let Some(b) = self.role_bindings.get(&ObjectRef::new(&name).within(ns)) {
                found.extend(found_binding(
                    b.as_ref(),
                    bindings::observe_role_binding(&b),
                    &uid,
                ));
            }
        }
        if let Some(b) = self.cluster_role_bindings.get(&ObjectRef::new(&name)) {
            found.extend(found_binding(
                b.as_ref(),
                bindings::observe_cluster_role_binding(&b),
                &uid,
            ));
        }
        found
    }

    /// Publishes an Event without holding up the reconcile; failures are logged.
    pub fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let recorder = self.recorder.clone();
        let reference = obj.object_ref(&());
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        tokio::spawn(async move {
            if let Err(error) = recorder.publish(&event, &reference).await {
                tracing::warn!(%error, reason = %event.reason, "could not publish event");
            }
        });
    }
}

fn found_binding<K: Resource>(
    obj: &K,
    observed: ObservedBinding,
    request_uid: &Option<String>,
) -> Option<FoundBinding> {
    if !bindings::is_managed(obj) {
        return None;
    }
    let made_for = bindings::request_uid_of(obj);
    let foreign = made_for.is_none() || made_for != *request_uid;
    Some(FoundBinding {
        observed,
        uid: obj.meta().uid.clone(),
        foreign,
    })
}
