//! kubepim: Privileged Identity Management for Kubernetes.
//!
//! People are made *eligible* for privileged roles (`Eligibility`), *activate* them with a
//! justification (`ActivationRequest`), approvers approve, and the operator creates a
//! time-limited RoleBinding or ClusterRoleBinding that it deletes the moment the time is up.
//!
//! Layout: [`api`] holds the types; [`policy`] the pure decisions; [`controller`] the thin
//! reconcilers that observe, decide and act; [`check`] the offline validator for GitOps.
#![forbid(unsafe_code)]

pub mod admission;
pub mod api;
pub mod audit;
pub mod check;
pub mod controller;
pub mod crdgen;
pub mod health;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod policy;
pub mod runtime;
pub mod telemetry;
pub mod time;
