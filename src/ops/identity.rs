//! Who the caller is, as the API server authenticated them: never a flag, never a kubeconfig
//! field, so that what the plugin writes matches what admission checks.
use k8s_openapi::api::authentication::v1::{SelfSubjectReview, UserInfo};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::api::Requester;

use super::OpsError;

/// The caller's identity from a `SelfSubjectReview` (`authentication.k8s.io/v1`), which every
/// authenticated user may create.
pub async fn who_am_i(client: &Client) -> Result<Requester, OpsError> {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(|e| OpsError::kube("asking the API server who you are (SelfSubjectReview)", e))?;
    review
        .status
        .and_then(|s| s.user_info)
        .and_then(requester_from)
        .ok_or(OpsError::NoIdentity)
}

/// The requester record of an authenticated user; `None` without a username.
pub fn requester_from(info: UserInfo) -> Option<Requester> {
    let username = info.username.filter(|u| !u.is_empty())?;
    Some(Requester {
        username,
        uid: info.uid.filter(|u| !u.is_empty()),
        // Kept in the server's order: the admission policies compare the lists exactly.
        groups: info.groups.unwrap_or_default(),
        extra: info.extra.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn user_info_becomes_requester_in_server_order() {
        let info = UserInfo {
            username: Some("alice".into()),
            uid: Some("uid-alice".into()),
            groups: Some(vec!["sre".into(), "system:authenticated".into()]),
            extra: Some(BTreeMap::from([("amr".into(), vec!["mfa".into()])])),
        };
        let r = requester_from(info).unwrap();
        assert_eq!(r.username, "alice");
        assert_eq!(r.uid.as_deref(), Some("uid-alice"));
        assert_eq!(r.groups, vec!["sre", "system:authenticated"]);
        assert_eq!(r.extra["amr"], vec!["mfa"]);
    }

    #[test]
    fn no_username_is_no_identity() {
        assert!(requester_from(UserInfo::default()).is_none());
        let empty = UserInfo {
            username: Some(String::new()),
            ..Default::default()
        };
        assert!(requester_from(empty).is_none());
    }

    #[test]
    fn empty_uid_is_left_out() {
        let info = UserInfo {
            username: Some("bob".into()),
            uid: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(requester_from(info).unwrap().uid, None);
    }
}
