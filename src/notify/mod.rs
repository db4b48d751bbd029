//! Notifications: tells people in chat (or any HTTP endpoint) when a request changes phase.
//!
//! Sinks, routes and audiences come from a YAML file ([`NotifyConfig::load`], flag
//! `--notifications-config`); see [`config`] for the format. The controller calls
//! [`Notifier::notify`] from the place where it records a transition: the call only puts the
//! [`Notification`] on one bounded queue per routed sink and returns. A background task per sink
//! POSTs it ([`payload`] documents both body formats), retrying connect errors, time-outs, 5xx
//! and 429 with exponential backoff and jitter ([`retry`]). Nothing is lost silently: every
//! notification ends counted as delivered, failed or dropped, failures and drops are logged and
//! reported to the optional failure callback (which the controller turns into a Warning Event).
//!
//! Sink URLs are secrets (a Slack incoming-webhook URL is a credential): they are read from a
//! file or an environment variable, and only their scheme and host ever appear in a log line, an
//! error or a `Debug` output ([`secret`]).
mod client;
pub mod config;
mod error;
mod event;
mod load;
mod notifier;
pub mod payload;
mod raw;
pub mod retry;
pub mod secret;
mod sources;
mod worker;

pub use config::{Audience, NotifyConfig, SinkKind};
pub use error::NotifyError;
pub use event::{EventKind, Notification};
pub use notifier::{Notifier, NotifierBuilder, SinkStats};
pub use retry::RetryPolicy;
pub use worker::FailureCallback;

#[cfg(test)]
mod tests;
