//! kubepim: Privileged Identity Management for Kubernetes.
//!
//! People are made *eligible* for privileged roles (`Eligibility`), *activate* them with a
//! justification (`ActivationRequest`), approvers approve, and the operator creates a
//! time-limited RoleBinding or ClusterRoleBinding that it deletes the moment the time is up.
//!
//! What the crate offers everyone (the plugin, the offline check, tests):
//! - [`api`]: the three kinds, one module per kind;
//! - [`policy`]: every rule, as pure functions of what was observed (no I/O);
//! - [`check`]: `kubepim check`, the offline validator for GitOps pipelines;
//! - [`ops`]: the client-side operations of `kubectl pim` (request, approve, deny, cancel, list,
//!   show);
//! - [`time`], [`crdgen`], [`audit`]: Kubernetes timestamps and durations, the CRDs as YAML, the
//!   audit stream's vocabulary.
//!
//! The operator (feature `operator`, on by default): [`runtime`] starts the process and wires,
//! side by side, the caches, [`admission`] (the webhook), [`health`] and [`metrics`], [`notify`]
//! and leader election; while it leads, [`controller`] reconciles (observe → decide with
//! [`policy`] → apply → record). [`remover`] is the foothold remover, a process of its own with
//! an identity of its own. `docs/architecture.md` draws it.
#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod check;
pub mod crdgen;
pub mod ops;
pub mod policy;
pub mod time;

#[cfg(feature = "operator")]
pub mod admission;
#[cfg(feature = "operator")]
pub mod controller;
#[cfg(feature = "operator")]
pub mod events;
#[cfg(feature = "operator")]
pub mod health;
#[cfg(feature = "operator")]
pub mod ingest;
#[cfg(feature = "operator")]
pub mod listen;
#[cfg(feature = "operator")]
pub mod metrics;
#[cfg(feature = "operator")]
pub mod notify;
#[cfg(feature = "operator")]
pub mod remover;
#[cfg(feature = "operator")]
pub mod runtime;
#[cfg(feature = "operator")]
pub mod telemetry;
