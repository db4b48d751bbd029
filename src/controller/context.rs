//! What every reconciler shares: the client, the caches and the event recorder.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::Client;
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::api::{AccessReview, ActivationRequest, Eligibility, PrivilegedRole};
use crate::events::Recorder;
use crate::policy::lifecycle::{ObservedBinding, binding_name};
use crate::policy::review_decisions::{Removal, honoured, removals};

use crate::time::Clock;

use super::bindings;
use super::index::{self, EligibilityIndex, Index, RequestIndex};
use super::memory::{BindChecks, StandingFindings, WrittenVersions};
use super::role_rules::RoleRules;

/// A managed binding found for a request, with the UID used as a delete precondition.
#[derive(Debug, Clone)]
pub struct FoundBinding {
    pub observed: ObservedBinding,
    pub uid: Option<String>,
    /// Same name and managed, but made for an earlier request of the same name.
    pub foreign: bool,
}

/// The caches a reconciler reads; every decision is taken on them, never on a fresh list.
#[derive(Clone)]
pub struct Caches {
    pub requests: Store<ActivationRequest>,
    pub roles: Store<PrivilegedRole>,
    pub eligibilities: Store<Eligibility>,
    /// Only managed bindings are cached (label-selected watch), never all bindings.
    pub role_bindings: Store<RoleBinding>,
    pub cluster_role_bindings: Store<ClusterRoleBinding>,
    /// Requests by role, by requester and role, by the request they extend.
    pub request_index: RequestIndex,
    /// Eligibilities by role.
    pub eligibility_index: EligibilityIndex,
}

impl Caches {
    /// Caches over stores filled by other means (tests, one-off tools): the indexes are built
    /// from what the stores hold now.
    pub fn indexing(
        requests: Store<ActivationRequest>,
        roles: Store<PrivilegedRole>,
        eligibilities: Store<Eligibility>,
        role_bindings: Store<RoleBinding>,
        cluster_role_bindings: Store<ClusterRoleBinding>,
    ) -> Self {
        let request_index = Arc::new(Index::of(
            index::request_keys,
            requests.state().iter().map(AsRef::as_ref),
        ));
        let eligibility_index = Arc::new(Index::of(
            index::eligibility_keys,
            eligibilities.state().iter().map(AsRef::as_ref),
        ));
        Self {
            requests,
            roles,
            eligibilities,
            role_bindings,
            cluster_role_bindings,
            request_index,
            eligibility_index,
        }
    }
}

pub struct Context {
    pub client: Client,
    pub requests: Store<ActivationRequest>,
    pub roles: Store<PrivilegedRole>,
    pub eligibilities: Store<Eligibility>,
    /// Only managed bindings are cached (label-selected watch), never all bindings.
    pub role_bindings: Store<RoleBinding>,
    pub cluster_role_bindings: Store<ClusterRoleBinding>,
    request_index: RequestIndex,
    eligibility_index: EligibilityIndex,
    /// Access reviews: closed ones remove (eligibility, subject) pairs (see
    /// [`crate::policy::review_decisions`]). Empty unless set with [`ContextBuilder::reviews`].
    pub reviews: Store<AccessReview>,
    pub recorder: Recorder,
    /// Standing-privilege findings of the latest scan, per PrivilegedRole: what the metric
    /// `kubepim_unmanaged_privileged_bindings{role}` exports.
    pub standing: StandingFindings,
    /// Recent answers to "may the operator bind this role?" (see `super::role_checks`).
    pub(crate) bind_checks: BindChecks,
    /// Per request, the newest resourceVersion our own writes produced (see `is_superseded`).
    pub written: WrittenVersions,
    /// The referenced roles' rules as last read (role integrity, see `super::role_rules`).
    pub role_rules: RoleRules,
    /// The process's metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Told about every phase change (a disabled notifier unless configured).
    pub notifier: crate::notify::Notifier,
    /// kubepim's own namespace, when known: roles reaching its ServiceAccount tokens are flagged.
    pub operator_namespace: Option<String>,
    /// The audit ingest's aggregator when the audit endpoint is served (`None`: the activity
    /// record is unavailable and idle timeouts are not enforced).
    pub activity: Option<Arc<crate::ingest::Aggregator>>,
    clock: Clock,
}

/// Builds a [`Context`]: the client and caches are required; everything else has a default (a
/// recorder of its own, fresh metrics, no notifications, the system clock).
pub struct ContextBuilder {
    client: Client,
    caches: Caches,
    reviews: Option<Store<AccessReview>>,
    recorder: Option<Recorder>,
    metrics: Arc<crate::metrics::Metrics>,
    notifier: crate::notify::Notifier,
    operator_namespace: Option<String>,
    role_changes: Option<futures::channel::mpsc::UnboundedSender<ObjectRef<ActivationRequest>>>,
    activity: Option<Arc<crate::ingest::Aggregator>>,
    clock: Clock,
}

impl ContextBuilder {
    /// Where the requests whose role's rules changed are sent (the request controller's
    /// trigger); without it they are only re-checked on their next reconcile.
    pub fn role_changes(
        mut self,
        changes: futures::channel::mpsc::UnboundedSender<ObjectRef<ActivationRequest>>,
    ) -> Self {
        self.role_changes = Some(changes);
        self
    }

    /// The audit ingest's aggregator (the activity record is configured).
    pub fn activity(mut self, aggregator: Option<Arc<crate::ingest::Aggregator>>) -> Self {
        self.activity = aggregator;
        self
    }

    /// The access review cache (kept out of [`Caches`]: contexts without one see no removals).
    pub fn reviews(mut self, reviews: Store<AccessReview>) -> Self {
        self.reviews = Some(reviews);
        self
    }

    /// The process-wide recorder (one shared recorder de-duplicates Events).
    pub fn recorder(mut self, recorder: Recorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    pub fn metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn notifier(mut self, notifier: crate::notify::Notifier) -> Self {
        self.notifier = notifier;
        self
    }

    pub fn operator_namespace(mut self, namespace: Option<String>) -> Self {
        self.operator_namespace = namespace;
        self
    }

    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn build(self) -> Context {
        let recorder = self
            .recorder
            .unwrap_or_else(|| Context::recorder_for(self.client.clone()));
        let Caches {
            requests,
            roles,
            eligibilities,
            role_bindings,
            cluster_role_bindings,
            request_index,
            eligibility_index,
        } = self.caches;
        Context {
            client: self.client,
            requests,
            roles,
            eligibilities,
            role_bindings,
            cluster_role_bindings,
            request_index,
            eligibility_index,
            reviews: self
                .reviews
                .unwrap_or_else(|| kube::runtime::reflector::store().0),
            recorder,
            standing: Default::default(),
            bind_checks: Default::default(),
            written: Default::default(),
            role_rules: self
                .role_changes
                .map(RoleRules::with_changes)
                .unwrap_or_default(),
            metrics: self.metrics,
            notifier: self.notifier,
            operator_namespace: self.operator_namespace,
            activity: self.activity,
            clock: self.clock,
        }
    }
}

impl Context {
    pub fn builder(client: Client, caches: Caches) -> ContextBuilder {
        ContextBuilder {
            client,
            caches,
            reviews: None,
            recorder: None,
            metrics: Arc::default(),
            notifier: crate::notify::Notifier::disabled(),
            operator_namespace: None,
            role_changes: None,
            activity: None,
            clock: Clock::system(),
        }
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
        self.written.note_written(request, resource_version);
    }

    /// Is this version older than one our own writes produced?
    pub fn is_superseded(&self, request: &str, resource_version: Option<&str>) -> bool {
        self.written.is_superseded(request, resource_version)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn role(&self, name: &str) -> Option<Arc<PrivilegedRole>> {
        self.roles.get(&ObjectRef::new(name))
    }

    /// An Active request that extends `request` (the newest, should there be several): once it
    /// is Active its bindings exist and `request` hands over.
    pub fn active_extension_of(&self, request: &str) -> Option<Arc<ActivationRequest>> {
        self.extensions_of(request)
            .into_iter()
            .filter(|r| r.phase() == Some(crate::api::Phase::Active))
            .max_by_key(|r| r.metadata.creation_timestamp.as_ref().map(|t| t.0))
    }

    /// Every request that extends `request`, whatever its phase.
    pub fn extensions_of(&self, request: &str) -> Vec<Arc<ActivationRequest>> {
        self.request_index
            .objects(&self.requests, &index::extending(request))
            .into_iter()
            .filter(|r| r.spec.extends.as_deref() == Some(request))
            .collect()
    }

    /// Every kept request by `requester` for `role`: the history privilege budgets count (terminal
    /// ones included, as long as they are kept).
    pub fn requests_of(&self, requester: &str, role: &str) -> Vec<Arc<ActivationRequest>> {
        if requester.is_empty() {
            return Vec::new();
        }
        self.request_index
            .objects(&self.requests, &index::by_requester(requester, role))
            .into_iter()
            .filter(|r| r.spec.role == role && r.requester_name() == requester)
            .collect()
    }

    /// Every kept request for `role`.
    pub fn requests_for(&self, role: &str) -> Vec<Arc<ActivationRequest>> {
        self.request_index
            .objects(&self.requests, &index::by_role(role))
            .into_iter()
            .filter(|r| r.spec.role == role)
            .collect()
    }

    /// Eligibilities that name this role (filtering by subject is the policy's job), each
    /// without the subjects a closed access review removed from it: every decision on a request
    /// sees only the subjects still honoured, so a grant resting on a removed one is revoked.
    pub fn eligibilities_for(&self, role: &str) -> Vec<Arc<Eligibility>> {
        let reviews = self.reviews.state();
        let reviews: Vec<&AccessReview> = reviews.iter().map(Arc::as_ref).collect();
        self.eligibility_index
            .objects(&self.eligibilities, &index::by_role(role))
            .into_iter()
            .filter(|e| e.spec.role == role)
            .map(|e| honoured_only(e, &reviews))
            .collect()
    }

    /// The removals by closed reviews in force for `eligibility`.
    pub fn removals_for(&self, eligibility: &Eligibility) -> Vec<Removal> {
        let reviews = self.reviews.state();
        let reviews: Vec<&AccessReview> = reviews.iter().map(Arc::as_ref).collect();
        removals(eligibility, &reviews)
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

/// `eligibility` as the request policy must see it: without the subjects reviews removed.
fn honoured_only(eligibility: Arc<Eligibility>, reviews: &[&AccessReview]) -> Arc<Eligibility> {
    let removed = removals(&eligibility, reviews);
    if removed.is_empty() {
        return eligibility;
    }
    let mut narrowed = eligibility.as_ref().clone();
    narrowed.spec.subjects = honoured(&eligibility, &removed)
        .into_iter()
        .cloned()
        .collect();
    Arc::new(narrowed)
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
