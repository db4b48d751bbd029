use super::*;
use chrono::TimeZone;
use kubepim::api::{ActivationRequestSpec, ActivationRequestStatus, Approval, Requester};
use kubepim::time::to_k8s;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn request(name: &str, phase: Option<Phase>, approvals: &[(&str, Decision)]) -> ActivationRequest {
    let mut ar = ActivationRequest::new(
        name,
        ActivationRequestSpec {
            role: "db".into(),
            namespaces: vec!["payments".into(), "ledger".into()],
            duration: Some("30m".parse().unwrap()),
            justification: Some("INC-1".into()),
            ticket: Some("INC-1".into()),
            start_at: None,
            cancel: false,
            extends: None,
            requester: Some(Requester {
                username: "alice".into(),
                ..Default::default()
            }),
        },
    );
    ar.metadata.creation_timestamp = Some(to_k8s(t0()));
    ar.status = Some(ActivationRequestStatus {
        phase,
        approvals: approvals
            .iter()
            .map(|(who, d)| Approval {
                approver: who.to_string(),
                groups: vec![],
                decision: *d,
                reason: Some("ok".into()),
                time: None,
            })
            .collect(),
        ..Default::default()
    });
    ar
}

#[test]
fn tables_align_like_kubectl() {
    let t = table(
        &["NAME", "PHASE"],
        &[
            vec!["a".into(), "Pending".into()],
            vec!["longer-name".into(), "Active".into()],
        ],
    );
    assert_eq!(
        t,
        "NAME          PHASE\na             Pending\nlonger-name   Active\n"
    );
}

#[test]
fn ages_are_short() {
    assert_eq!(age(Duration::seconds(45)), "45s");
    assert_eq!(age(Duration::minutes(12)), "12m");
    assert_eq!(age(Duration::hours(5)), "5h");
    assert_eq!(age(Duration::days(3)), "3d");
    assert_eq!(age(Duration::seconds(-5)), "0s");
}

#[test]
fn ls_shows_phase_approvals_expiry_and_age() {
    let mut active = request(
        "alice-db-1",
        Some(Phase::Active),
        &[("bob", Decision::Approved)],
    );
    active.status.as_mut().unwrap().expires_at = Some(to_k8s(t0() + Duration::minutes(30)));
    let pending = request("alice-db-2", None, &[]);
    let required = BTreeMap::from([("db".to_string(), 1)]);
    let now = t0() + Duration::minutes(5);
    let text = requests_table(&[active.clone(), pending], &required, now, false);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("NAME"));
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "alice-db-1",
            "alice",
            "db",
            "payments,ledger",
            "Active",
            "1/1",
            "in",
            "25m",
            "5m"
        ]
    );
    let cells: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "alice-db-2",
            "alice",
            "db",
            "payments,ledger",
            "Pending",
            "0/1",
            "-",
            "5m"
        ]
    );
    // Unknown role: the count alone; wide adds ticket, reason, message.
    let wide = requests_table(&[active], &BTreeMap::new(), now, true);
    assert!(
        wide.lines()
            .next()
            .unwrap()
            .ends_with("TICKET   REASON   MESSAGE"),
        "{wide}"
    );
    assert!(wide.lines().nth(1).unwrap().contains(" 1 "), "{wide}");
    assert_eq!(
        requests_table(&[], &required, now, false),
        "No activation requests found.\n"
    );
}

fn activatable(role: &str) -> Activatable {
    Activatable {
        role: role.into(),
        eligibility: format!("{role}-elig"),
        namespaces: vec!["payments".into()],
        cluster_wide: false,
        max_duration: Duration::hours(2),
        default_duration: Duration::hours(1),
        required_approvals: 1,
        break_glass: false,
        eligible_from: None,
        eligible_until: None,
        eligible_now: true,
        ticket_pattern: None,
    }
}

#[test]
fn roles_table_says_scope_limits_approvals_and_window() {
    let mut glass = activatable("break-glass");
    glass.cluster_wide = true;
    glass.namespaces.clear();
    glass.break_glass = true;
    glass.required_approvals = 0;
    glass.eligible_until = Some(t0());
    let mut later = activatable("later");
    later.eligible_from = Some(t0());
    let text = roles_table(&[glass, activatable("db"), later], false);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        rows[0],
        ["ROLE", "SCOPE", "MAX", "DEFAULT", "APPROVALS", "ELIGIBLE"]
    );
    assert_eq!(
        rows[1],
        [
            "break-glass",
            "<cluster>",
            "2h0m0s",
            "1h0m0s",
            "none (break-glass)",
            "until 2026-03-01T12:00:00Z"
        ]
    );
    assert_eq!(
        rows[2],
        ["db", "payments", "2h0m0s", "1h0m0s", "1", "now, no end"]
    );
    assert_eq!(rows[3][5], "from 2026-03-01T12:00:00Z");
    assert_eq!(
        roles_table(&[], false),
        "You are not eligible for any PrivilegedRole.\n"
    );
    assert!(roles_table(&[activatable("db")], true).contains("db-elig"));
}

#[test]
fn wait_progress_reports_each_change_once() {
    let mut seen = Seen::default();
    let now = t0();
    let pending = request("r", Some(Phase::Pending), &[]);
    assert_eq!(
        progress(&mut seen, &pending, Some(2), now),
        ["r: Pending, waiting for approval (0/2)"]
    );
    assert!(progress(&mut seen, &pending, Some(2), now).is_empty());
    let one = request("r", Some(Phase::Pending), &[("bob", Decision::Approved)]);
    assert_eq!(
        progress(&mut seen, &one, Some(2), now),
        ["r: approved by bob: \"ok\" (1/2)"]
    );
    let mut active = request(
        "r",
        Some(Phase::Active),
        &[("bob", Decision::Approved), ("carol", Decision::Approved)],
    );
    active.status.as_mut().unwrap().expires_at = Some(to_k8s(now + Duration::minutes(30)));
    assert_eq!(
        progress(&mut seen, &active, Some(2), now),
        [
            "r: approved by carol: \"ok\" (2/2)",
            "r: Active until 2026-03-01T12:30:00Z (in 30m)"
        ]
    );
}

#[test]
fn wait_progress_ends_with_the_controllers_reason() {
    let mut seen = Seen::default();
    let mut denied = request("r", Some(Phase::Denied), &[("carol", Decision::Denied)]);
    let status = denied.status.as_mut().unwrap();
    status.reason = Some("DeniedByApprover".into());
    status.message = Some("denied by carol: ok".into());
    let lines = progress(&mut seen, &denied, Some(1), t0());
    assert_eq!(
        lines,
        [
            "r: denied by carol: \"ok\" (0/1)",
            "r: Denied: DeniedByApprover: denied by carol: ok"
        ]
    );
}

#[test]
fn show_text_has_fields_timeline_and_events() {
    let ar = request("r", Some(Phase::Pending), &[("bob", Decision::Approved)]);
    let timeline = kubepim::ops::timeline(&ar, t0());
    let text = show_text(&ar, &timeline, &Err("not allowed to read Events".into()));
    assert!(
        text.starts_with("Name:       r\nRole:       db\nRequester:  alice\n"),
        "{text}"
    );
    assert!(
        text.contains("\nTimeline:\n  2026-03-01T12:00:00Z  requested db in payments, ledger"),
        "{text}"
    );
    assert!(
        text.contains("\n  -                     approved by bob: \"ok\"\n"),
        "{text}"
    );
    assert!(
        text.ends_with("Events:\n  <not allowed to read Events>\n"),
        "{text}"
    );
    let none = show_text(&ar, &timeline, &Ok(vec![]));
    assert!(none.ends_with("Events:\n  <none>\n"));
}

#[test]
fn documents_are_json_or_yaml_without_managed_fields() {
    let mut ar = request("r", None, &[]);
    ar.metadata.managed_fields = Some(vec![Default::default()]);
    let json = document(&list_document(std::slice::from_ref(&ar)), Output::Json).unwrap();
    let back: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(back["kind"], "List");
    assert_eq!(back["items"][0]["metadata"]["name"], "r");
    assert!(
        back["items"][0]["metadata"].get("managedFields").is_none(),
        "{json}"
    );
    let yaml = document(&ar, Output::Yaml).unwrap();
    assert!(yaml.contains("role: db"), "{yaml}");
}
