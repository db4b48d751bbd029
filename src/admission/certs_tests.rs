//! Certificate generation and the (pure) rotation decision.
use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap()
}

fn names() -> Vec<String> {
    serving_names("kubepim-webhook", "kubepim-system", None)
}

fn fresh(now: DateTime<Utc>) -> Material {
    renew(None, &names(), now).unwrap().expect("new material")
}

#[test]
fn serving_names_cover_the_service_and_loopback() {
    assert_eq!(
        names(),
        [
            "kubepim-webhook.kubepim-system.svc",
            "kubepim-webhook.kubepim-system.svc.cluster.local",
            "kubepim-webhook.kubepim-system",
            "kubepim-webhook",
            "localhost",
            "127.0.0.1",
        ]
    );
    let with_url = serving_names("kubepim-webhook", "ns", Some("webhook.dev.example"));
    assert_eq!(
        with_url.last().map(String::as_str),
        Some("webhook.dev.example")
    );
    // No duplicates when the URL host is one of them.
    assert_eq!(serving_names("s", "ns", Some("127.0.0.1")).len(), 6);
}

#[test]
fn ca_signs_a_serving_certificate_with_the_right_sans() {
    let m = fresh(t0());
    let ca = inspect(&m.ca.cert_pem).unwrap();
    assert!(ca.is_ca);
    assert_eq!(ca.not_before, t0() - BACKDATE);
    assert_eq!(ca.not_after, t0() + CA_VALIDITY);

    let serving = inspect(&m.serving.cert_pem).unwrap();
    assert!(!serving.is_ca);
    assert_eq!(serving.names, names());
    assert_eq!(serving.not_before, t0() - BACKDATE);
    assert_eq!(serving.not_after, t0() + SERVING_VALIDITY);
    assert!(is_signed_by(&m.serving.cert_pem, &m.ca.cert_pem));
    assert!(key_matches(&m.ca));
    assert!(key_matches(&m.serving));
    // The bundle is the CA.
    assert_eq!(m.bundle.trim(), m.ca.cert_pem.trim());

    // Another CA did not sign it.
    let other = fresh(t0());
    assert!(!is_signed_by(&m.serving.cert_pem, &other.ca.cert_pem));
    assert!(!key_matches(&CertAndKey {
        cert_pem: m.serving.cert_pem.clone(),
        key_pem: other.serving.key_pem.clone()
    }));
}

#[test]
fn serving_certificate_never_outlives_its_ca() {
    let ca = new_authority(t0()).unwrap();
    let late = t0() + CA_VALIDITY - Duration::days(10);
    let serving = issue_serving(&ca, &names(), late).unwrap();
    assert_eq!(
        inspect(&serving.cert_pem).unwrap().not_after,
        t0() + CA_VALIDITY
    );
}

#[test]
fn debug_output_hides_private_keys() {
    let m = fresh(t0());
    let shown = format!("{m:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    assert!(shown.contains("<redacted>"));
}

#[test]
fn rotation_is_due_at_two_thirds_of_each_lifetime() {
    let m = fresh(t0());
    let serving_renewal = t0() - BACKDATE + (SERVING_VALIDITY + BACKDATE) * 2 / 3;
    assert_eq!(
        rotation(Some(&m), &names(), t0()),
        Rotation::Keep {
            until: serving_renewal
        }
    );
    assert!(matches!(
        rotation(Some(&m), &names(), serving_renewal - Duration::seconds(1)),
        Rotation::Keep { .. }
    ));
    let Rotation::Serving(reason) = rotation(Some(&m), &names(), serving_renewal) else {
        panic!("serving due")
    };
    assert!(reason.contains("expires at"), "{reason}");
    let ca_renewal = t0() - BACKDATE + (CA_VALIDITY + BACKDATE) * 2 / 3;
    let Rotation::Authority(reason) = rotation(Some(&m), &names(), ca_renewal) else {
        panic!("CA due")
    };
    assert!(reason.contains("the CA expires"), "{reason}");
}

#[test]
fn rotation_replaces_what_is_missing_broken_or_foreign() {
    assert!(matches!(
        rotation(None, &names(), t0()),
        Rotation::Authority(_)
    ));
    let m = fresh(t0());
    let other = fresh(t0());

    let garbage_ca = Material {
        ca: CertAndKey {
            cert_pem: "junk".into(),
            key_pem: m.ca.key_pem.clone(),
        },
        ..m.clone()
    };
    assert!(
        matches!(rotation(Some(&garbage_ca), &names(), t0()), Rotation::Authority(r) if r.contains("unreadable"))
    );
    let wrong_ca_key = Material {
        ca: CertAndKey {
            key_pem: other.ca.key_pem.clone(),
            ..m.ca.clone()
        },
        ..m.clone()
    };
    assert!(
        matches!(rotation(Some(&wrong_ca_key), &names(), t0()), Rotation::Authority(r) if r.contains("key"))
    );
    let not_a_ca = Material {
        ca: m.serving.clone(),
        ..m.clone()
    };
    assert!(
        matches!(rotation(Some(&not_a_ca), &names(), t0()), Rotation::Authority(r) if r.contains("not a CA"))
    );

    let foreign_serving = Material {
        serving: other.serving.clone(),
        ..m.clone()
    };
    assert!(
        matches!(rotation(Some(&foreign_serving), &names(), t0()), Rotation::Serving(r) if r.contains("not signed"))
    );
    let wrong_key = Material {
        serving: CertAndKey {
            key_pem: other.serving.key_pem.clone(),
            ..m.serving.clone()
        },
        ..m.clone()
    };
    assert!(
        matches!(rotation(Some(&wrong_key), &names(), t0()), Rotation::Serving(r) if r.contains("key"))
    );
    let garbage = Material {
        serving: CertAndKey {
            cert_pem: "junk".into(),
            ..m.serving.clone()
        },
        ..m.clone()
    };
    assert!(
        matches!(rotation(Some(&garbage), &names(), t0()), Rotation::Serving(r) if r.contains("unreadable"))
    );
    let no_bundle = Material {
        bundle: String::new(),
        ..m.clone()
    };
    assert!(
        matches!(rotation(Some(&no_bundle), &names(), t0()), Rotation::Serving(r) if r.contains("bundle"))
    );

    // The Service was renamed, or a --webhook-url host added: reissue for the new names.
    let renamed = serving_names("kubepim-admission", "kubepim-system", None);
    assert!(
        matches!(rotation(Some(&m), &renamed, t0()), Rotation::Serving(r) if r.contains("kubepim-admission"))
    );
}

#[test]
fn renewing_the_serving_certificate_keeps_the_ca() {
    let m = fresh(t0());
    let later = t0() + Duration::days(61);
    let renewed = renew(Some(&m), &names(), later).unwrap().expect("due");
    assert_eq!(renewed.ca, m.ca);
    assert_ne!(renewed.serving, m.serving);
    assert!(is_signed_by(&renewed.serving.cert_pem, &m.ca.cert_pem));
    assert_eq!(
        inspect(&renewed.serving.cert_pem).unwrap().not_after,
        later + SERVING_VALIDITY
    );
    assert_eq!(renewed.bundle, m.bundle);
    assert_eq!(
        renew(Some(&renewed), &names(), later).unwrap(),
        None,
        "nothing due right after"
    );
}

#[test]
fn renewing_the_ca_keeps_the_previous_one_trusted_until_it_expires() {
    let m = fresh(t0());
    let later = t0() + Duration::days(800);
    let renewed = renew(Some(&m), &names(), later).unwrap().expect("due");
    assert_ne!(renewed.ca, m.ca);
    assert!(is_signed_by(
        &renewed.serving.cert_pem,
        &renewed.ca.cert_pem
    ));
    // New CA first, then the old one: replicas still serving the old certificate stay trusted.
    assert_eq!(
        renewed.bundle,
        format!("{}{}", renewed.ca.cert_pem, m.ca.cert_pem)
    );
    // Once the old CA has expired it leaves the bundle at the next write.
    let much_later = t0() + CA_VALIDITY + Duration::days(1);
    assert_eq!(
        bundle(
            [renewed.ca.cert_pem.as_str(), renewed.bundle.as_str()],
            much_later
        ),
        renewed.ca.cert_pem
    );
}

#[test]
fn bundle_drops_duplicates_and_junk() {
    let a = fresh(t0());
    let b = fresh(t0());
    let joined = format!(
        "{}\n{}junk\n{}",
        a.ca.cert_pem, b.ca.cert_pem, a.ca.cert_pem
    );
    assert_eq!(
        bundle([joined.as_str()], t0()),
        format!("{}{}", a.ca.cert_pem, b.ca.cert_pem)
    );
    assert_eq!(bundle(["not a certificate"], t0()), "");
}
