//! Pure decision logic: no I/O, `now` is always a parameter.
//!
//! The controller observes the cluster, hands what it saw to [`lifecycle::decide`] and carries
//! out the [`lifecycle::Step`] it gets back. Everything that decides who gets privilege lives
//! here so that it can be tested exhaustively.

pub mod activity;
pub mod approvals;
pub mod binding;
pub mod budget;
pub mod cache_lag;
pub mod eligibility;
pub mod extension;
pub mod foothold_removal;
pub mod footholds;
pub mod identity;
pub mod idle;
pub mod legitimacy;
pub mod lifecycle;
pub mod reasons;
pub mod retention;
pub mod review;
pub mod review_decisions;
pub mod review_transition;
pub mod risk;
pub mod role_integrity;
pub mod role_readiness;
pub mod separation;
pub mod standing;
pub mod status;
pub mod transition;
pub mod validation;

pub use approvals::{ApprovalTally, tally};
pub use eligibility::{EligibilityWindow, window_state};
pub use identity::{is_service_account, requester_subject};
pub use lifecycle::{Activation, DesiredBinding, Input, ObservedBinding, Step, decide};
pub use validation::{Grant, Refusal, validate};

#[cfg(test)]
pub(crate) mod tests;
