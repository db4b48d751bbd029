//! Quorum: which approvals count, and whether they are enough.
use std::collections::BTreeSet;

use crate::api::{Approval, ApprovalPolicy, Decision};

use super::identity::is_service_account;

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

/// Counts approvals. `required` is 0 for roles that activate without approval (incl. break-glass),
/// but an authorised denial still denies.
pub fn tally(
    approvals: &[Approval],
    policy: &ApprovalPolicy,
    requester: &str,
    required: u32,
) -> ApprovalTally {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Approvers;

    fn policy(users: &[&str], groups: &[&str], required: u32) -> ApprovalPolicy {
        ApprovalPolicy {
            required_approvals: required,
            approvers: Approvers {
                users: users.iter().map(|s| s.to_string()).collect(),
                groups: groups.iter().map(|s| s.to_string()).collect(),
            },
            ..Default::default()
        }
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
        let t = tally(&[entry("bob", &[], Decision::Approved)], &p, "alice", 1);
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
            1,
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
            1,
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
            1,
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
            1,
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
            1,
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
        let t = tally(&dup, &p, "alice", 2);
        assert!(!t.quorum_met());
        assert_eq!(t.ignored[0].1, Ignored::Duplicate);
        let two = [
            entry("bob", &[], Decision::Approved),
            entry("carol", &[], Decision::Approved),
        ];
        assert!(tally(&two, &p, "alice", 2).quorum_met());
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
            1,
        );
        assert!(!t.quorum_met());
        assert_eq!(t.denied_by, Some(("carol".into(), Some("r".into()))));
    }

    #[test]
    fn zero_required_is_met_without_entries() {
        let p = policy(&[], &[], 0);
        assert!(tally(&[], &p, "alice", 0).quorum_met());
    }
}
