//! The reconcilers: one per kind, the binding guard and sweeper, and the standing-privilege scan.
//! They observe cached state, let [`crate::policy`] decide and carry out its step through
//! bounded API calls ([`calls`]); starting them is [`crate::runtime`]'s job.

pub mod bindings;
pub mod calls;
pub mod context;
pub mod eligibility;
mod error;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod foothold_review;
pub(crate) mod footholds;
pub mod index;
pub mod memory;
mod record;
pub mod request;
pub mod retention;
pub mod review;
pub mod role;
pub mod role_checks;
pub mod role_rules;
pub mod separation;
pub mod standing_scan;
pub mod sweeper;
#[cfg(test)]
mod tests;

pub use error::Error;
