//! Errors of a reconcile: what the API server answered, or did not within the limit.

/// Errors of the controller layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Kube {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("{what}: no answer within the per-call limit")]
    Timeout { what: &'static str },
    #[error("serialising a patch: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error("internal invariant broken: {0}")]
    Invariant(&'static str),
    #[error(
        "{kind} {namespace:?}/{name} already exists and was not made by kubepim for this request; delete or rename it"
    )]
    NameTaken {
        kind: &'static str,
        namespace: Option<String>,
        name: String,
    },
}

impl Error {
    /// Why a reconcile that failed this way will keep failing until someone acts (a binding name
    /// taken, a refusal by the API server): the request must show it. `None` for what a retry
    /// cures (timeouts, 5xx, 429, conflicts).
    pub fn persistent_reason(&self) -> Option<&'static str> {
        match self {
            Error::NameTaken { .. } => Some("BindingNameTaken"),
            Error::Invariant(_) => Some("Invariant"),
            _ => match self.api_code()? {
                403 => Some("Forbidden"),
                422 => Some("Invalid"),
                400 => Some("BadRequest"),
                _ => None,
            },
        }
    }

    /// A short, bounded label for the reconcile metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "ApiError",
            Error::Timeout { .. } => "Timeout",
            Error::Serialize(_) => "Serialize",
            Error::Invariant(_) => "Invariant",
            Error::NameTaken { .. } => "BindingNameTaken",
        }
    }
}
