//! The process: `kubepim run`'s flags resolved once into [`OperatorSettings`], then the caches,
//! the admission webhook, the metrics/health listener, the notifier and leader election started
//! side by side, and — while this replica leads — the controllers of [`crate::controller`].
//!
//! Every replica keeps the caches ([`feeds`]), serves the admission webhook and the
//! metrics/health listener, and campaigns for the lease when leader election is on ([`leader`]).
//! The replica that leads runs one *term* ([`term`]): the start-up sweep (revocations before
//! activations), the three controllers, the binding guard, the sweeper loop and the
//! standing-privilege scan.

mod args;
mod backoff;
mod error;
pub mod feeds;
pub mod leader;
mod namespace;
mod process;
mod settings;
mod term;
mod throttle;

pub use args::RunArgs;
pub use error::Error;
pub use leader::{LeaderArgs, LeaderSettings};
pub use process::{run_blocking, run_operator, shutdown_signal};
pub use settings::OperatorSettings;
