//! Why the operator process could not start or stopped.

/// Errors of the process: start-up checks, the listeners, leader election; a reconcile's own
/// errors are retried by the controllers and only end up here when the controllers stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the CustomResourceDefinitions are not installed ({0}); apply crds/ first: kubectl apply -f crds/"
    )]
    CrdsMissing(String),
    #[error("could not load a Kubernetes client configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Webhook(#[from] crate::admission::Error),
    #[error(transparent)]
    Ingest(#[from] crate::ingest::Error),
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    #[error(transparent)]
    Health(#[from] crate::health::BindError),
    #[error("leader election: {0}")]
    LeaderElection(String),
    #[error("the controllers stopped on their own")]
    ControllersStopped,
}
