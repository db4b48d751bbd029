//! The foothold scan at a grant's end: the RBAC bindings, Roles, ServiceAccounts, token Secrets
//! (metadata only) and Pods made inside the granted scope while the grant ran, read page by page,
//! judged by [`crate::policy::footholds::judge`]. Only the scope the grant reached is read: its
//! namespaces, or for a cluster-wide grant every namespace plus the cluster-scoped kinds a
//! namespaced grant cannot make (ClusterRoleBindings, CertificateSigningRequests, admission
//! webhook configurations).
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use kube::api::ListParams;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::api::ActivationRequestStatus;
use crate::api::{ActivationRequest, labels};
use crate::policy::activity::notable_writes;
use crate::policy::footholds::{
    Foothold, Found, FoundKind, GrantWindow, from_audit, judge, merged, review_window,
};
use crate::policy::lifecycle::BindingKind;
use crate::policy::lifecycle::Step;
use crate::policy::reasons;
use crate::time::from_k8s;

use super::Error;
use super::calls::{self, Refusal};
use super::context::Context;

/// Where a grant reached: `None` for every namespace (a cluster-wide grant).
pub fn scope_of(request: &ActivationRequest) -> (Option<Vec<String>>, bool) {
    let status = request.status.as_ref();
    let cluster_wide = status.is_some_and(|s| {
        s.bindings
            .iter()
            .any(|b| b.kind == BindingKind::ClusterRoleBinding.as_str())
    });
    if cluster_wide {
        return (None, true);
    }
    let mut namespaces: Vec<String> = status
        .map(|s| {
            s.bindings
                .iter()
                .filter_map(|b| b.namespace.clone())
                .collect()
        })
        .unwrap_or_default();
    if namespaces.is_empty() {
        namespaces = request.spec.namespaces.clone();
    }
    namespaces.sort();
    namespaces.dedup();
    (Some(namespaces), false)
}

/// What the judgement needs of `object`: identity, creation time, the managed label.
pub(crate) fn found<K: Resource>(kind: FoundKind, object: &K) -> Found {
    let meta = object.meta();
    let managed = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::MANAGED_BY))
        .is_some_and(|v| v == labels::MANAGED_BY_VALUE);
    Found {
        uid: meta.uid.clone(),
        managed,
        ..Found::new(
            kind,
            meta.namespace.clone(),
            meta.name.clone().unwrap_or_default(),
            meta.creation_timestamp.as_ref().map(from_k8s),
        )
    }
}

/// Reads one kind in the scope; objects created before `since` are dropped as they are read.
async fn read<K>(
    apis: Vec<Api<K>>,
    what: &'static str,
    since: DateTime<Utc>,
    to_found: impl Fn(&K) -> Found,
) -> Result<Vec<Found>, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    for api in &apis {
        let mut pages = calls::pages(api, ListParams::default(), what);
        while let Some(objects) = pages.next().await? {
            out.extend(
                objects
                    .iter()
                    .map(&to_found)
                    .filter(|f| made_since(f, since)),
            );
        }
    }
    Ok(out)
}

/// Creation timestamps have one-second resolution.
fn made_since(found: &Found, since: DateTime<Utc>) -> bool {
    found
        .created_at
        .is_some_and(|at| at >= since - chrono::Duration::seconds(1))
}

/// ServiceAccount token Secrets in the scope, by metadata only (the type is a field selector):
/// the scan never reads a Secret's data.
async fn read_token_secrets(
    apis: Vec<Api<Secret>>,
    since: DateTime<Utc>,
) -> Result<Vec<Found>, Error> {
    let mut out = Vec::new();
    for api in &apis {
        let mut params = ListParams::default()
            .fields("type=kubernetes.io/service-account-token")
            .limit(calls::PAGE_SIZE);
        loop {
            let page = calls::bounded(
                "list token secrets (foothold scan)",
                api.list_metadata(&params),
            )
            .await?;
            out.extend(
                page.items
                    .iter()
                    .map(|s| found(FoundKind::TokenSecret, s))
                    .filter(|f| made_since(f, since)),
            );
            match page.metadata.continue_.filter(|t| !t.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
    }
    Ok(out)
}

fn namespaced<K>(ctx: &Context, namespaces: &Option<Vec<String>>) -> Vec<Api<K>>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespaces {
        None => vec![Api::all(ctx.client.clone())],
        Some(list) => list
            .iter()
            .map(|ns| Api::namespaced(ctx.client.clone(), ns))
            .collect(),
    }
}

/// Lists a cluster-scoped kind, only for a cluster-wide grant (a namespaced grant cannot make
/// one).
async fn cluster_scoped<K>(
    ctx: &Context,
    cluster_wide: bool,
    what: &'static str,
    since: DateTime<Utc>,
    to_found: impl Fn(&K) -> Found,
) -> Result<Vec<Found>, Error>
where
    K: Resource<Scope = kube::core::ClusterResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    if !cluster_wide {
        return Ok(Vec::new());
    }
    read(
        vec![Api::<K>::all(ctx.client.clone())],
        what,
        since,
        to_found,
    )
    .await
}

/// What a scan found, and the kinds it could not read.
#[derive(Debug, Default, Clone)]
pub struct Scan {
    pub found: Vec<Found>,
    /// Plural resource names the operator may not list (its RBAC leaves them out).
    pub unreadable: Vec<&'static str>,
}

/// Everything made in the grant's scope since `since`.
pub async fn scan(
    ctx: &Context,
    request: &ActivationRequest,
    since: DateTime<Utc>,
) -> Result<Scan, Error> {
    let (namespaces, cluster_wide) = scope_of(request);
    let binding_subjects = |kind, meta: &Found, subjects: &Option<Vec<_>>| Found {
        kind,
        subjects: subjects.clone().unwrap_or_default(),
        ..meta.clone()
    };
    // The kinds are listed at once: each is a round trip or more, and the reviews of a herd of
    // expiries queue behind each other.
    let (rb, crb, roles, accounts, secrets, pods, csrs, validating, mutating) = futures::join!(
        read(
            namespaced::<RoleBinding>(ctx, &namespaces),
            "list rolebindings (foothold scan)",
            since,
            |b: &RoleBinding| binding_subjects(
                FoundKind::RoleBinding,
                &found(FoundKind::RoleBinding, b),
                &b.subjects
            ),
        ),
        cluster_scoped(
            ctx,
            cluster_wide,
            "list clusterrolebindings (foothold scan)",
            since,
            |b: &ClusterRoleBinding| binding_subjects(
                FoundKind::ClusterRoleBinding,
                &found(FoundKind::ClusterRoleBinding, b),
                &b.subjects
            ),
        ),
        read(
            namespaced::<Role>(ctx, &namespaces),
            "list roles (foothold scan)",
            since,
            |r: &Role| found(FoundKind::Role, r),
        ),
        read(
            namespaced::<ServiceAccount>(ctx, &namespaces),
            "list serviceaccounts (foothold scan)",
            since,
            |a: &ServiceAccount| found(FoundKind::ServiceAccount, a),
        ),
        read_token_secrets(namespaced::<Secret>(ctx, &namespaces), since),
        read(
            namespaced::<Pod>(ctx, &namespaces),
            "list pods (foothold scan)",
            since,
            |p: &Pod| Found {
                service_account: p.spec.as_ref().and_then(|s| s.service_account_name.clone()),
                ..found(FoundKind::Pod, p)
            },
        ),
        cluster_scoped(
            ctx,
            cluster_wide,
            "list certificatesigningrequests (foothold scan)",
            since,
            |c: &CertificateSigningRequest| Found {
                requested_by: c.spec.username.clone(),
                ..found(FoundKind::CertificateSigningRequest, c)
            },
        ),
        cluster_scoped(
            ctx,
            cluster_wide,
            "list validatingwebhookconfigurations (foothold scan)",
            since,
            |w: &ValidatingWebhookConfiguration| found(
                FoundKind::ValidatingWebhookConfiguration,
                w
            ),
        ),
        cluster_scoped(
            ctx,
            cluster_wide,
            "list mutatingwebhookconfigurations (foothold scan)",
            since,
            |w: &MutatingWebhookConfiguration| found(FoundKind::MutatingWebhookConfiguration, w),
        ),
    );
    // A kind the operator may not list (its RBAC leaves it out: Secrets and Pods unless the
    // chart's footholds.scanSecretsAndPods is on) is skipped and named in the verdict.
    let mut out = Scan::default();
    for (result, kind) in [
        (rb, "rolebindings"),
        (crb, "clusterrolebindings"),
        (roles, "roles"),
        (accounts, "serviceaccounts"),
        (secrets, "secrets"),
        (pods, "pods"),
        (csrs, "certificatesigningrequests"),
        (validating, "validatingwebhookconfigurations"),
        (mutating, "mutatingwebhookconfigurations"),
    ] {
        match result {
            Ok(found) => out.found.extend(found),
            Err(error) if error.api_code() == Some(403) => {
                tracing::debug!(%error, kind, "foothold scan: may not list; skipped");
                out.unreadable.push(kind);
            }
            Err(error) if error.refusal() == Refusal::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    Ok(out)
}

/// Does this step end a running grant (not a hand-over to its extension, whose own end is
/// reviewed over the whole uninterrupted window)?
pub fn ends_grant(old: &ActivationRequestStatus, step: &Step) -> bool {
    old.phase == Some(crate::api::Phase::Active)
        && matches!(step, Step::End { reason, .. } if *reason != reasons::EXTENDED)
}

/// The footholds of `request`'s ended grant, judged over its window (see
/// [`crate::policy::footholds::review_window`]).
pub async fn review(
    ctx: &Context,
    request: &ActivationRequest,
    now: DateTime<Utc>,
    recent: &RecentScans,
) -> Result<Review, Error> {
    let Some(status) = request.status.as_ref() else {
        return Ok(Review::default());
    };
    let Some((from, until)) = review_window(status, now) else {
        return Ok(Review::default());
    };
    let Some(requester) = request.spec.requester.as_ref() else {
        return Ok(Review::default());
    };
    let scope = scope_of(request);
    let scan = match recent.covering(&scope, from, until, now) {
        Some(scan) => scan,
        None => {
            let started = ctx.now();
            let scan = Arc::new(scan(ctx, request, from).await?);
            recent.remember(scope, from, started, scan.clone());
            scan
        }
    };
    let window = GrantWindow {
        requester: &requester.username,
        groups: &requester.groups,
        from,
        until,
    };
    let scanned = judge(&scan.found, &window);
    // Where the audit record is configured, the requester's own writes are known by name.
    let audited = status
        .activity
        .as_ref()
        .is_some_and(|a| a.source == crate::api::ActivitySource::AuditWebhook);
    let footholds = if audited {
        merged(
            scanned,
            from_audit(notable_writes(status.activity.as_ref())),
        )
    } else {
        scanned
    };
    Ok(Review {
        footholds,
        unreadable: scan.unreadable.clone(),
        audited,
    })
}

/// How long a scan answers for other grants of the same scope: the reviews of an expiry herd
/// share one list of each kind instead of making one each (400 grants ending in a namespace
/// would otherwise list its bindings 400 times while the revocations still run).
const SCAN_REUSE: chrono::Duration = chrono::Duration::seconds(5);

/// Scans of the last few seconds, by scope.
#[derive(Default)]
pub struct RecentScans {
    scans: Mutex<Vec<Recent>>,
}

struct Recent {
    scope: (Option<Vec<String>>, bool),
    /// The scan kept what was created from then on.
    since: DateTime<Utc>,
    /// When its first list call started: everything created before then is in it.
    started: DateTime<Utc>,
    scan: Arc<Scan>,
}

impl RecentScans {
    /// A scan of `scope` that saw everything a grant of window `from`..`until` could have made:
    /// it started after the grant ended and kept objects from before the grant began.
    fn covering(
        &self,
        scope: &(Option<Vec<String>>, bool),
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<Arc<Scan>> {
        let mut scans = self.scans.lock().unwrap_or_else(|e| e.into_inner());
        scans.retain(|r| now - r.started <= SCAN_REUSE);
        scans
            .iter()
            .find(|r| &r.scope == scope && r.since <= from && r.started >= until)
            .map(|r| r.scan.clone())
    }

    fn remember(
        &self,
        scope: (Option<Vec<String>>, bool),
        since: DateTime<Utc>,
        started: DateTime<Utc>,
        scan: Arc<Scan>,
    ) {
        let mut scans = self.scans.lock().unwrap_or_else(|e| e.into_inner());
        scans.push(Recent {
            scope,
            since,
            started,
            scan,
        });
    }
}

/// What a review found.
#[derive(Debug, Default)]
pub struct Review {
    pub footholds: Vec<Foothold>,
    pub unreadable: Vec<&'static str>,
    pub audited: bool,
}
