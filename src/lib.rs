//! kubepim: Privileged Identity Management for Kubernetes.
#![forbid(unsafe_code)]

pub mod api;
pub mod policy;
pub mod time;
