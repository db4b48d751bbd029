use super::*;

#[test]
fn requester_copies_every_attribute() {
    let user = UserInfo {
        username: Some("alice".into()),
        uid: Some("u-1".into()),
        groups: Some(vec!["sre".into(), "system:authenticated".into()]),
        extra: Some(
            [("amr".to_string(), vec!["mfa".to_string()])]
                .into_iter()
                .collect(),
        ),
    };
    let r = requester_from(&user).unwrap();
    assert_eq!(r.username, "alice");
    assert_eq!(r.uid.as_deref(), Some("u-1"));
    assert_eq!(r.groups, ["sre", "system:authenticated"]);
    assert_eq!(r.extra["amr"], ["mfa"]);
    assert_eq!(requester_from(&UserInfo::default()), None);
    let empty = UserInfo {
        username: Some(String::new()),
        ..Default::default()
    };
    assert_eq!(requester_from(&empty), None);
}
