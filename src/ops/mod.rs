//! Client-side operations of people on kubepim: who am I, request, approve, deny, cancel, list,
//! show, wait. Used by the `kubectl pim` plugin and by the end-to-end tests, so that both write
//! exactly what a person's kubectl would.
//!
//! Nothing here decides who gets privilege: the API server's admission layer and the controller
//! do. These functions only write what the caller is allowed to write, read back what happened and
//! explain refusals in plain words (keeping the server's own message).
pub mod footholds;
pub mod identity;
pub mod refusal;
pub mod requests;
pub mod reviews;
pub mod roles;
pub mod separation;
pub mod timeline;

pub use identity::who_am_i;
pub use refusal::{Refusal, RefusalKind};
pub use requests::{NewRequest, cancel, create, decide, extension_of, get, list, wait_until};
pub use roles::{Activatable, activatable, can_decide};
pub use timeline::{Entry, events_of, timeline};

/// Everything an operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// Refused by the admission layer, RBAC, or a check made before writing; `kind` says which.
    #[error("{0}")]
    Refused(Refusal),
    #[error("activation request {0} not found")]
    NotFound(String),
    #[error("timed out after {after} waiting for {name}: it is still {phase}{last}")]
    TimedOut {
        name: String,
        after: String,
        phase: String,
        /// The last error seen while polling, if any (`; last error: …`).
        last: String,
    },
    #[error("activation request {0} was deleted while waiting for it")]
    Deleted(String),
    #[error("the API server did not say who you are (its SelfSubjectReview has no username)")]
    NoIdentity,
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },
}

impl OpsError {
    pub(crate) fn kube(what: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            what: what.into(),
            source,
        }
    }
}
