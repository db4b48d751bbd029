use super::*;

#[test]
fn metrics_report_reviews_serving_and_certificate_expiry() {
    let reviews = Arc::new(ReviewCounts::default());
    reviews.count("validate", "refused");
    reviews.count("validate", "refused");
    reviews.count("mutate", "allowed");
    let resolver = Arc::new(Resolver::default());
    let (ready_tx, ready) = watch::channel(false);
    let telemetry = WebhookTelemetry {
        reviews,
        resolver,
        ready,
    };
    let metrics = crate::metrics::Metrics::new();
    metrics.attach_webhook(telemetry.clone());
    let text = metrics.encode();
    assert!(text.contains("kubepim_webhook_serving 0"), "{text}");
    assert!(
        text.contains(r#"kubepim_webhook_reviews_total{endpoint="validate",result="refused"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"kubepim_webhook_reviews_total{endpoint="mutate",result="allowed"} 1"#),
        "{text}"
    );
    // No certificate yet: no expiry to report.
    assert!(
        !text.contains("kubepim_webhook_certificate_expiry"),
        "{text}"
    );
    ready_tx.send_replace(true);
    telemetry
        .resolver
        .note_expiry_for_tests(DateTime::from_timestamp(2_000_000_000, 0).unwrap());
    let text = metrics.encode();
    assert!(text.contains("kubepim_webhook_serving 1"), "{text}");
    assert!(
        text.contains("kubepim_webhook_certificate_expiry_timestamp_seconds 2000000000"),
        "{text}"
    );
}
