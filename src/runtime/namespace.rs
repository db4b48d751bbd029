//! kubepim's own namespace, resolved once for everything that needs it (the Lease, the webhook's
//! Secret, the risk of roles that reach the operator's ServiceAccount tokens).

/// Where the pod's namespace is mounted in a cluster.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The namespace given explicitly, else `POD_NAMESPACE` (the chart sets it from the downward
/// API), else the pod's ServiceAccount namespace; `None` outside a cluster.
pub fn resolve(explicit: Option<&str>) -> Option<String> {
    let non_empty = |s: String| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    explicit
        .map(str::to_string)
        .and_then(non_empty)
        .or_else(|| std::env::var("POD_NAMESPACE").ok().and_then(non_empty))
        .or_else(|| {
            std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
                .ok()
                .and_then(non_empty)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_namespace_wins_and_blank_counts_as_unset() {
        assert_eq!(resolve(Some("kubepim")), Some("kubepim".into()));
        assert_ne!(resolve(Some("  ")), Some("  ".into()));
    }
}
