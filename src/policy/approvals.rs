//! Quorum: which approvals count, and whether they are enough.
use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::api::{
    ActivationRequest, ActivationRequestSpec, Approval, ApprovalPolicy, Decision,
    PrivilegedRoleSpec,
};
use crate::time::from_k8s;

use super::identity::{is_service_account, is_service_account_group};

/// Why an approval entry does not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// The requester approving or denying their own request.
    SelfApproval,
    ServiceAccount,
    /// Neither a listed approver user nor in a listed approver group.
    NotAnApprover,
    /// A second entry from the same approver.
    Duplicate,
}

/// The outcome of counting approvals against a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalTally {
    /// Distinct authorised approvers who approved, in entry order.
    pub approved_by: Vec<String>,
    /// The first authorised denial: (approver, reason).
    pub denied_by: Option<(String, Option<String>)>,
    /// Entries that do not count, with why.
    pub ignored: Vec<(String, Ignored)>,
    pub required: u32,
}

impl ApprovalTally {
    pub fn quorum_met(&self) -> bool {
        self.denied_by.is_none() && self.approved_by.len() as u64 >= u64::from(self.required)
    }
}

fn is_authorised(approval: &Approval, policy: &ApprovalPolicy) -> bool {
    policy.approvers.users.contains(&approval.approver)
        || approval
            .groups
            .iter()
            .any(|g| policy.approvers.groups.contains(g))
}

/// What a request asks for: a fresh activation, or to extend an active grant (`spec.extends`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Activation,
    Extension,
}

impl Purpose {
    pub fn of(request: &ActivationRequestSpec) -> Self {
        if request.extends.is_some() {
            Purpose::Extension
        } else {
            Purpose::Activation
        }
    }
}

/// How many approvals a role's activations need: none for a break-glass role, whatever its
/// `requiredApprovals` says.
pub fn required(role: &PrivilegedRoleSpec) -> u32 {
    required_for(role, Purpose::Activation)
}

/// How many approvals a request for `purpose` needs: an extension counts
/// `extensionRequiredApprovals` where the role sets it; break-glass needs none.
pub fn required_for(role: &PrivilegedRoleSpec, purpose: Purpose) -> u32 {
    match (role.break_glass, purpose) {
        (true, _) => 0,
        (false, Purpose::Activation) => role.approval.required_approvals,
        (false, Purpose::Extension) => role
            .approval
            .extension_required_approvals
            .unwrap_or(role.approval.required_approvals),
    }
}

/// Why a role's requests can never be approved: more approvals required than distinct human
/// users could give, and no approver group that could hold more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreachableQuorum {
    pub required: u32,
    /// Distinct listed approver users who are not ServiceAccounts.
    pub humans: usize,
}

/// Can the approvals the role requires ever be collected? Only distinct human users count
/// (ServiceAccounts and duplicates never do); a group may have any number of members, unless it
/// holds only ServiceAccounts. (The CRD's CEL rule compares the raw list length; this looks
/// further.)
pub fn unreachable_quorum(role: &PrivilegedRoleSpec) -> Option<UnreachableQuorum> {
    let required = required(role);
    let approvers = &role.approval.approvers;
    if required == 0
        || approvers
            .groups
            .iter()
            .any(|g| !is_service_account_group(g))
    {
        return None;
    }
    let humans = approvers
        .users
        .iter()
        .filter(|u| !is_service_account(u))
        .collect::<BTreeSet<_>>()
        .len();
    (humans < required as usize).then_some(UnreachableQuorum { required, humans })
}

/// Counts a request's approvals against its role: [`required`] of them from authorised, distinct,
/// human approvers other than the requester. An authorised denial denies, even where no approval
/// is required.
pub fn tally(approvals: &[Approval], role: &PrivilegedRoleSpec, requester: &str) -> ApprovalTally {
    tally_for(approvals, role, Purpose::Activation, requester)
}

/// [`tally`] for a request of the given [`Purpose`].
pub fn tally_for(
    approvals: &[Approval],
    role: &PrivilegedRoleSpec,
    purpose: Purpose,
    requester: &str,
) -> ApprovalTally {
    let policy = &role.approval;
    let required = required_for(role, purpose);
    let mut seen = BTreeSet::new();
    let mut out = ApprovalTally {
        required,
        ..Default::default()
    };
    for approval in approvals {
        let who = approval.approver.clone();
        let ignored = if !seen.insert(who.clone()) {
            Some(Ignored::Duplicate)
        } else if approval.approver == requester {
            Some(Ignored::SelfApproval)
        } else if is_service_account(&approval.approver) {
            Some(Ignored::ServiceAccount)
        } else if !is_authorised(approval, policy) {
            Some(Ignored::NotAnApprover)
        } else {
            None
        };
        match (ignored, approval.decision) {
            (Some(why), _) => out.ignored.push((who, why)),
            (None, Decision::Approved) => out.approved_by.push(who),
            (None, Decision::Denied) => {
                if out.denied_by.is_none() {
                    out.denied_by = Some((who, approval.reason.clone()));
                }
            }
        }
    }
    out
}

/// When the approving write happened, by the API server's clock: the newest approval's `time`
/// (stamped at admission), else the newest write to the request's status by anyone but
/// `controller_manager` (from managedFields, where the object still carries them: the operator's
/// caches drop them, so without the webhook's stamp nothing is observed). `None` when nobody
/// approved.
pub fn approving_write_at(
    request: &ActivationRequest,
    controller_manager: &str,
) -> Option<DateTime<Utc>> {
    let approvals: Vec<_> = request
        .status
        .iter()
        .flat_map(|s| s.approvals.iter())
        .filter(|a| a.decision == Decision::Approved)
        .collect();
    if approvals.is_empty() {
        return None;
    }
    if let Some(at) = approvals
        .iter()
        .filter_map(|a| a.time.as_ref().map(from_k8s))
        .max()
    {
        return Some(at);
    }
    request
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|f| f.subresource.as_deref() == Some("status"))
        .filter(|f| f.manager.as_deref() != Some(controller_manager))
        .filter_map(|f| f.time.as_ref().map(from_k8s))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(users: &[&str], groups: &[&str], required: u32) -> PrivilegedRoleSpec {
        let spec = serde_json::json!({
            "roleRef": {"kind": "ClusterRole", "name": "admin"},
            "scope": {"namespaces": ["payments"]},
            "approval": {
                "requiredApprovals": required,
                "approvers": {"users": users, "groups": groups},
            },
        });
        serde_json::from_value(spec).expect("a valid spec")
    }

    fn entry(approver: &str, groups: &[&str], decision: Decision) -> Approval {
        Approval {
            approver: approver.into(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            decision,
            reason: Some("r".into()),
            time: None,
        }
    }

    #[test]
    fn listed_user_approves() {
        let p = policy(&["bob"], &[], 1);
        let t = tally(&[entry("bob", &[], Decision::Approved)], &p, "alice");
        assert!(t.quorum_met());
        assert_eq!(t.approved_by, vec!["bob"]);
    }

    #[test]
    fn approver_group_counts() {
        let p = policy(&[], &["sre-leads"], 1);
        let t = tally(
            &[entry("carol", &["sre-leads"], Decision::Approved)],
            &p,
            "alice",
        );
        assert!(t.quorum_met());
    }

    #[test]
    fn self_approval_never_counts_even_when_listed() {
        let p = policy(&["alice"], &["sre-leads"], 1);
        let t = tally(
            &[entry("alice", &["sre-leads"], Decision::Approved)],
            &p,
            "alice",
        );
        assert!(!t.quorum_met());
        assert_eq!(
            t.ignored,
            vec![("alice".to_string(), Ignored::SelfApproval)]
        );
    }

    #[test]
    fn service_accounts_never_count() {
        let sa = "system:serviceaccount:kube-system:robot";
        let p = policy(&[sa], &["system:serviceaccounts"], 1);
        let t = tally(
            &[entry(sa, &["system:serviceaccounts"], Decision::Approved)],
            &p,
            "alice",
        );
        assert!(!t.quorum_met());
        assert_eq!(t.ignored[0].1, Ignored::ServiceAccount);
    }

    #[test]
    fn unlisted_approver_ignored() {
        let p = policy(&["bob"], &["sre-leads"], 1);
        let t = tally(
            &[entry("mallory", &["devs"], Decision::Approved)],
            &p,
            "alice",
        );
        assert!(!t.quorum_met());
        assert_eq!(t.ignored[0].1, Ignored::NotAnApprover);
    }

    #[test]
    fn unlisted_denial_does_not_deny() {
        let p = policy(&["bob"], &[], 1);
        let t = tally(
            &[
                entry("mallory", &[], Decision::Denied),
                entry("bob", &[], Decision::Approved),
            ],
            &p,
            "alice",
        );
        assert!(t.denied_by.is_none());
        assert!(t.quorum_met());
    }

    #[test]
    fn distinct_approvers_needed_for_quorum() {
        let p = policy(&["bob", "carol"], &[], 2);
        let dup = [
            entry("bob", &[], Decision::Approved),
            entry("bob", &[], Decision::Approved),
        ];
        let t = tally(&dup, &p, "alice");
        assert!(!t.quorum_met());
        assert_eq!(t.ignored[0].1, Ignored::Duplicate);
        let two = [
            entry("bob", &[], Decision::Approved),
            entry("carol", &[], Decision::Approved),
        ];
        assert!(tally(&two, &p, "alice").quorum_met());
    }

    #[test]
    fn authorised_denial_wins_over_quorum() {
        let p = policy(&["bob", "carol"], &[], 1);
        let t = tally(
            &[
                entry("bob", &[], Decision::Approved),
                entry("carol", &[], Decision::Denied),
            ],
            &p,
            "alice",
        );
        assert!(!t.quorum_met());
        assert_eq!(t.denied_by, Some(("carol".into(), Some("r".into()))));
    }

    #[test]
    fn zero_required_is_met_without_entries() {
        let p = policy(&[], &[], 0);
        assert!(tally(&[], &p, "alice").quorum_met());
    }
    #[test]
    fn break_glass_requires_nothing_whatever_the_policy_says() {
        let mut p = policy(&["bob"], &[], 3);
        assert_eq!(required(&p), 3);
        p.break_glass = true;
        assert_eq!(required(&p), 0);
        assert!(tally(&[], &p, "alice").quorum_met());
        // An authorised denial still denies.
        assert!(!tally(&[entry("bob", &[], Decision::Denied)], &p, "alice").quorum_met());
    }

    #[test]
    fn quorum_reachability() {
        /// (approver users, approver groups, required, break-glass, expected)
        type Case<'a> = (
            &'a [&'a str],
            &'a [&'a str],
            u32,
            bool,
            Option<UnreachableQuorum>,
        );
        let cases: [Case; 7] = [
            (&["bob"], &[], 1, false, None),
            (
                &["bob"],
                &[],
                2,
                false,
                Some(UnreachableQuorum {
                    required: 2,
                    humans: 1,
                }),
            ),
            // Repeated names and ServiceAccounts do not count.
            (
                &["bob", "bob", "system:serviceaccount:ci:robot"],
                &[],
                2,
                false,
                Some(UnreachableQuorum {
                    required: 2,
                    humans: 1,
                }),
            ),
            // A human group may hold any number of approvers.
            (&["bob"], &["sre-leads"], 5, false, None),
            // A ServiceAccount group holds nobody whose approval counts.
            (
                &[],
                &["system:serviceaccounts:ci"],
                1,
                false,
                Some(UnreachableQuorum {
                    required: 1,
                    humans: 0,
                }),
            ),
            (&[], &[], 0, false, None),
            // Break-glass needs no approval at all.
            (&[], &[], 2, true, None),
        ];
        for (users, groups, n, break_glass, expected) in cases {
            let mut p = policy(users, groups, n);
            p.break_glass = break_glass;
            assert_eq!(unreachable_quorum(&p), expected, "{users:?} {groups:?} {n}");
        }
    }

    fn active_request() -> ActivationRequest {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kubepim.io/v1alpha1",
            "kind": "ActivationRequest",
            "metadata": {"name": "r"},
            "spec": {"role": "db-admin", "namespaces": ["payments"]},
            "status": {"phase": "Active"},
        }))
        .expect("a request")
    }

    #[test]
    fn approving_write_prefers_the_newest_approval_time() {
        let mut r = active_request();
        assert_eq!(approving_write_at(&r, "kubepim"), None, "nobody approved");
        let status = r.status.get_or_insert_with(Default::default);
        status.approvals = serde_json::from_value(serde_json::json!([
            {"approver": "bob", "decision": "Approved", "time": "2026-01-01T10:00:00Z"},
            {"approver": "carol", "decision": "Approved", "time": "2026-01-01T10:00:05Z"},
            {"approver": "dave", "decision": "Denied", "time": "2026-01-01T10:00:09Z"},
        ]))
        .unwrap();
        assert_eq!(
            approving_write_at(&r, "kubepim").map(|t| t.to_rfc3339()),
            Some("2026-01-01T10:00:05+00:00".into())
        );
    }

    #[test]
    fn approving_write_falls_back_to_the_last_status_write_by_someone_else() {
        let mut r = active_request();
        r.status.as_mut().unwrap().approvals = serde_json::from_value(
            serde_json::json!([{"approver": "bob", "decision": "Approved"}]),
        )
        .unwrap();
        r.metadata.managed_fields = Some(
            serde_json::from_value(serde_json::json!([
                {"manager": "kubectl", "operation": "Update", "subresource": "status",
                 "time": "2026-01-01T10:00:02Z"},
                {"manager": "kubepim", "operation": "Update", "subresource": "status",
                 "time": "2026-01-01T10:00:03Z"},
                {"manager": "kubectl", "operation": "Update", "time": "2026-01-01T10:00:09Z"},
            ]))
            .unwrap(),
        );
        assert_eq!(
            approving_write_at(&r, "kubepim").map(|t| t.to_rfc3339()),
            Some("2026-01-01T10:00:02+00:00".into())
        );
    }
}
