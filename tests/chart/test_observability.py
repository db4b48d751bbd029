"""ServiceMonitor, PrometheusRule, Grafana dashboard and NetworkPolicy."""

import json
import re

import pytest

from conftest import METRICS, NAMESPACE, VALUE_SETS, render

METRIC_RE = re.compile(r"\bkubepim_[a-z_]+\b")


def metric_names(expr):
    """Metric names in a PromQL expression, histogram suffixes removed."""
    return {re.sub(r"_(bucket|sum|count)$", "", m) for m in METRIC_RE.findall(expr)}


def balanced(expr):
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for ch in re.sub(r'"[^"]*"', "", expr):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack


def test_service_monitor_scrapes_the_metrics_service():
    r = render(VALUE_SETS["observability"])
    monitor = r.one("ServiceMonitor")
    service = r.one("Service", "kubepim-metrics")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    # Only the metrics Service matches the selector (not the webhook's).
    matching = [
        s.name
        for s in r.kinds("Service")
        if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"].get("labels", {}).items()
    ]
    assert matching == ["kubepim-metrics"]


def alerts(r):
    (group,) = r.one("PrometheusRule")["spec"]["groups"]
    return {rule["alert"]: rule for rule in group["rules"]}


def test_prometheus_rule_alerts():
    r = render(VALUE_SETS["observability"])
    rule = r.one("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    found = alerts(r)
    assert set(found) == {
        "KubepimRevocationLate",
        "KubepimRequestPendingTooLong",
        "KubepimUnmanagedPrivilegedBindings",
        "KubepimNoLeader",
        "KubepimReconcileErrors",
        "KubepimIllegitimateBindingRemoved",
        "KubepimWebhookNotServing",
        "KubepimWebhookCertificateExpiring",
    }
    for name, alert in found.items():
        expr = alert["expr"]
        assert balanced(expr), f"{name}: unbalanced {expr}"
        assert metric_names(expr) <= METRICS, f"{name} uses unknown metrics {metric_names(expr) - METRICS}"
        assert f'namespace="{NAMESPACE}"' in expr, f"{name} is not scoped to the release: {expr}"
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        assert "{{ $value" in alert["annotations"]["description"] or name in {
            "KubepimNoLeader",
            "KubepimWebhookNotServing",
        }
    late = found["KubepimRevocationLate"]["expr"]
    assert "histogram_quantile(0.99" in late and "kubepim_revocation_lateness_seconds_bucket" in late
    assert re.search(r">\s*1\s*$", late)
    assert re.search(r"kubepim_pending_requests\{[^}]*\}\) > 0", found["KubepimRequestPendingTooLong"]["expr"])
    assert found["KubepimRequestPendingTooLong"]["for"] == "1h"
    assert "kubepim_unmanaged_privileged_bindings" in found["KubepimUnmanagedPrivilegedBindings"]["expr"]
    forged = found["KubepimIllegitimateBindingRemoved"]
    assert 'class="illegitimate"' in forged["expr"] and forged["labels"]["severity"] == "critical"
    assert found["KubepimWebhookNotServing"]["expr"].endswith("== 0")
    assert "- time() < 604800" in found["KubepimWebhookCertificateExpiring"]["expr"]
    no_leader = found["KubepimNoLeader"]
    assert no_leader["expr"].startswith("(max(kubepim_is_leader") and no_leader["expr"].endswith("== 0")
    assert no_leader["for"] == "5m"


def test_prometheus_rule_is_tunable():
    r = render(
        {
            "metrics": {
                "prometheusRule": {
                    "enabled": True,
                    "selector": 'job="kubepim-metrics"',
                    "alerts": {
                        "revocationLate": {"thresholdSeconds": 0.5, "severity": "warning"},
                        "requestPending": {"for": "4h"},
                        "reconcileErrors": {"enabled": False},
                    },
                }
            }
        }
    )
    found = alerts(r)
    assert "KubepimReconcileErrors" not in found
    assert found["KubepimRequestPendingTooLong"]["for"] == "4h"
    assert re.search(r">\s*0.5\s*$", found["KubepimRevocationLate"]["expr"])
    assert found["KubepimRevocationLate"]["labels"]["severity"] == "warning"
    for alert in found.values():
        assert 'job="kubepim-metrics"' in alert["expr"] and "namespace=" not in alert["expr"]


def dashboard(r):
    config_map = r.one("ConfigMap", "kubepim-dashboard")
    return config_map, json.loads(config_map["data"]["kubepim.json"])


def test_grafana_dashboard():
    r = render(VALUE_SETS["observability"])
    config_map, board = dashboard(r)
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == NAMESPACE
    assert board["uid"] == "kubepim" and board["title"]
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    used = set()
    for panel in panels:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert balanced(target["expr"]), target["expr"]
            used |= metric_names(target["expr"])
            assert 'namespace=~"$namespace"' in target["expr"], target["expr"]
    assert used == METRICS, f"dashboard misses {METRICS - used} / has unknown {used - METRICS}"
    variables = {v["name"] for v in board["templating"]["list"]}
    assert variables == {"datasource", "namespace"}
    # Panels do not overlap.
    cells = set()
    for panel in panels:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
        assert g["x"] + g["w"] <= 24


def test_grafana_dashboard_namespace_and_labels():
    r = render(
        {"metrics": {"grafanaDashboard": {"enabled": True, "namespace": "grafana", "labels": {"a": "b"},
                                          "annotations": {"grafana_folder": "Security"}}}}
    )
    config_map, _ = dashboard(r)
    assert config_map["metadata"]["namespace"] == "grafana"
    assert config_map["metadata"]["labels"]["a"] == "b"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Security"}


@pytest.mark.parametrize("what", ["serviceMonitor", "prometheusRule", "grafanaDashboard"])
def test_observability_is_opt_in(what):
    assert not render().kinds("ServiceMonitor", "PrometheusRule")
    assert not render().maybe("ConfigMap", "kubepim-dashboard")
    with pytest.raises(Exception, match=f"metrics.{what}.enabled needs metrics.enabled: true"):
        render({"metrics": {"enabled": False, what: {"enabled": True}}})


def test_network_policy():
    r = render(VALUE_SETS["network-policy"])
    policy = r.one("NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == r.deployment()["spec"]["selector"]["matchLabels"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    webhook, metrics = spec["ingress"]
    assert "from" not in webhook, "the API server's address is not known: the webhook is open"
    assert webhook["ports"] == [{"port": "webhook", "protocol": "TCP"}]
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert metrics["ports"] == [{"port": "health", "protocol": "TCP"}]
    api, dns = spec["egress"]
    assert "to" not in api and {p["port"] for p in api["ports"]} == {443, 6443}
    assert {p["port"] for p in dns["ports"]} == {53}
    container_ports = {p["name"] for p in r.container()["ports"]}
    assert {"webhook", "health"} <= container_ports


def test_network_policy_with_api_server_addresses():
    r = render(VALUE_SETS["network-policy-cidrs"])
    spec = r.one("NetworkPolicy")["spec"]
    api = spec["egress"][0]
    assert api["to"] == [{"ipBlock": {"cidr": "10.96.0.1/32"}}, {"ipBlock": {"cidr": "172.18.0.2/32"}}]
    assert spec["egress"][-1] == VALUE_SETS["network-policy-cidrs"]["networkPolicy"]["extraEgress"][0]


def test_network_policy_without_webhook_or_metrics_denies_ingress():
    r = render({"networkPolicy": {"enabled": True, "dns": False}, "metrics": {"enabled": False},
                "admission": {"webhook": {"enabled": False}}})
    spec = r.one("NetworkPolicy")["spec"]
    assert spec["ingress"] == []
    assert len(spec["egress"]) == 1
