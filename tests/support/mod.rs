//! Shared harness for the end-to-end tests (layer 4): a real control plane, per-user clients, the
//! in-process operator, fixtures and the invariant checks.
//!
//! Every e2e test file does `mod support;` and starts with
//! `let Some(env) = Env::isolated("name").await else { return };` (or `Env::shared`): without
//! `KUBEBUILDER_ASSETS` or `KUBEPIM_E2E_KUBECONFIG` it prints one `SKIPPED:` line and passes.
//!
//! Not every test binary uses every helper.
#![allow(dead_code)]

pub mod envtest;
pub mod faults;
pub mod fixtures;
pub mod invariants;
pub mod wait;

pub use envtest::Env;
