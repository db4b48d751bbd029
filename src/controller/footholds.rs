//! The foothold scan at a grant's end: the RBAC bindings, Roles and ServiceAccounts made inside
//! the granted scope while the grant ran, read page by page, judged by
//! [`crate::policy::footholds::judge`]. Only the scope the grant reached is read: its
//! namespaces, or every namespace and the ClusterRoleBindings for a cluster-wide grant.
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use kube::api::ListParams;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::api::ActivationRequestStatus;
use crate::api::{ActivationRequest, labels};
use crate::policy::footholds::{Foothold, Found, FoundKind, GrantWindow, judge, review_window};
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

fn found<K: Resource>(kind: FoundKind, object: &K) -> Found {
    let meta = object.meta();
    let managed = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::MANAGED_BY))
        .is_some_and(|v| v == labels::MANAGED_BY_VALUE);
    Found {
        kind,
        namespace: meta.namespace.clone(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone(),
        created_at: meta.creation_timestamp.as_ref().map(from_k8s),
        subjects: vec![],
        managed,
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
    let slack = chrono::Duration::seconds(1);
    let mut out = Vec::new();
    for api in &apis {
        let mut pages = calls::pages(api, ListParams::default(), what);
        while let Some(objects) = pages.next().await? {
            out.extend(
                objects
                    .iter()
                    .map(&to_found)
                    .filter(|f| f.created_at.is_some_and(|at| at >= since - slack)),
            );
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

/// Everything made in the grant's scope since `since`.
pub async fn scan(
    ctx: &Context,
    request: &ActivationRequest,
    since: DateTime<Utc>,
) -> Result<Vec<Found>, Error> {
    let (namespaces, cluster_wide) = scope_of(request);
    // The four kinds are listed at once: the scan sits between a revocation and its status write,
    // and when many grants expire together its round trips add up in the reconcile queue.
    let (rb, crb, roles, accounts) = futures::join!(
        read(
            namespaced::<RoleBinding>(ctx, &namespaces),
            "list rolebindings (foothold scan)",
            since,
            |b: &RoleBinding| Found {
                subjects: b.subjects.clone().unwrap_or_default(),
                ..found(FoundKind::RoleBinding, b)
            },
        ),
        async {
            if !cluster_wide {
                return Ok(Vec::new());
            }
            read(
                vec![Api::<ClusterRoleBinding>::all(ctx.client.clone())],
                "list clusterrolebindings (foothold scan)",
                since,
                |b: &ClusterRoleBinding| Found {
                    subjects: b.subjects.clone().unwrap_or_default(),
                    ..found(FoundKind::ClusterRoleBinding, b)
                },
            )
            .await
        },
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
    );
    // A kind the operator may not list (its RBAC narrowed) is skipped with a log line: the scan
    // reports what it could see.
    let mut out = Vec::new();
    for (result, kind) in [
        (rb, "rolebindings"),
        (crb, "clusterrolebindings"),
        (roles, "roles"),
        (accounts, "serviceaccounts"),
    ] {
        match result {
            Ok(found) => out.extend(found),
            Err(error) if error.api_code() == Some(403) => {
                tracing::warn!(%error, kind, "foothold scan: may not list; skipped");
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
) -> Result<Vec<Foothold>, Error> {
    let Some(status) = request.status.as_ref() else {
        return Ok(vec![]);
    };
    let Some((from, until)) = review_window(status, now) else {
        return Ok(vec![]);
    };
    let Some(requester) = request.spec.requester.as_ref() else {
        return Ok(vec![]);
    };
    let found = scan(ctx, request, from).await?;
    let window = GrantWindow {
        requester: &requester.username,
        groups: &requester.groups,
        from,
        until,
    };
    Ok(judge(&found, &window))
}
