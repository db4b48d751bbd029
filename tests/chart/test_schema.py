"""values.schema.json: covers every value, closes every block, and turns bad values into a clear
`helm install` error. Cross-value checks the schema cannot say clearly are `fail`s in
templates/_helpers.tpl (kubepim.validate)."""

import json
import re

import helm_python
import pytest
import yaml

from conftest import CHART, render

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def resolve(node):
    while True:
        if "$ref" in node:
            node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[1]]
        elif "allOf" in node and len(node["allOf"]) == 1:
            node = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
        else:
            return node


def test_draft_07():
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"


def test_every_block_is_closed():
    """Every object with named properties refuses unknown keys (a typo is an error, not a no-op)."""
    open_blocks = []

    def walk(node, path):
        node = resolve(node)
        if node.get("type") == "object" and "properties" in node:
            if node.get("additionalProperties") is not False:
                open_blocks.append(path or "/")
        for name, child in node.get("properties", {}).items():
            walk(child, f"{path}/{name}")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}/*")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(SCHEMA, "")
    assert not open_blocks, open_blocks


def test_schema_and_values_yaml_agree():
    """Every key of values.yaml is in the schema, and every property of the schema is in values.yaml
    (so nothing is undocumented), except Helm's `global`."""
    missing_in_schema, missing_in_values = [], []

    def walk(values, node, path):
        node = resolve(node)
        props = node.get("properties")
        if props is None or not isinstance(values, dict):
            return
        for key, value in values.items():
            if key not in props:
                missing_in_schema.append(f"{path}/{key}")
            else:
                walk(value, props[key], f"{path}/{key}")
        for key in props:
            if key not in values and f"{path}/{key}" != "/global":
                missing_in_values.append(f"{path}/{key}")

    walk(VALUES, SCHEMA, "")
    # Optional keys documented in values.yaml comments rather than set.
    documented = ("/admission/webhook/certificates/certManager/issuerRef/", "/notifications/routes/")
    undocumented = [p for p in missing_in_values if not p.startswith(documented)]
    assert not missing_in_schema, f"add to values.schema.json: {missing_in_schema}"
    assert not undocumented, f"in values.schema.json but not in values.yaml: {undocumented}"


def test_defaults_are_valid():
    helm_python.Chart.load(str(CHART)).validate_schema({})


BAD_VALUES = [
    ({"replicas": "2"}, "at '/replicas': got string, want integer"),
    ({"replicas": 0}, "at '/replicas': minimum: got 0, want 1"),
    ({"replica": 2}, "additional properties 'replica' not allowed"),
    ({"metrics": {"serviceMonitor": {"enable": True}}}, "at '/metrics/serviceMonitor': additional properties 'enable' not allowed"),
    ({"metrics": {"port": 70000}}, "at '/metrics/port': maximum"),
    ({"operator": {"logFormat": "yaml"}}, "at '/operator/logFormat': value must be one of 'text', 'json'"),
    ({"operator": {"sweepInterval": "30 seconds"}}, "at '/operator/sweepInterval'"),
    ({"admission": {"webhook": {"certificates": {"mode": "manual"}}}},
     "at '/admission/webhook/certificates/mode': value must be one of 'selfManaged', 'certManager'"),
    ({"admission": {"webhook": {"url": "http://127.0.0.1:8443"}}}, "at '/admission/webhook/url'"),
    ({"admission": {"webhook": {"certificates": {"certManager": {"issuerRef": {"kind": "ClusterIssuer"}}}}}},
     "at '/admission/webhook/certificates/certManager/issuerRef': missing property 'name'"),
    ({"image": {"digest": "abc"}}, "at '/image/digest'"),
    ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy': value must be one of"),
    ({"resources": {"requests": {"memory": "lots"}}}, "at '/resources/requests/memory'"),
    ({"leaderElection": {"enabled": "auto"}}, "at '/leaderElection/enabled': got string, want null or boolean"),
    ({"crds": {"install": "yes"}}, "at '/crds/install': got string, want boolean"),
    ({"bindableRoles": {"roles": [{"name": "deployer"}]}}, "at '/bindableRoles/roles/0': missing property 'namespace'"),
    ({"bindableRoles": {"clusterRoles": "admin"}}, "at '/bindableRoles/clusterRoles': got string, want array"),
    ({"extraArgs": ["concurrency=3"]}, "at '/extraArgs/0'"),
    ({"extraEnv": [{"value": "x"}]}, "at '/extraEnv/0': missing property 'name'"),
    ({"metrics": {"prometheusRule": {"alerts": {"noLeader": {"for": "5 minutes"}}}}},
     "at '/metrics/prometheusRule/alerts/noLeader/for'"),
    ({"metrics": {"prometheusRule": {"alerts": {"noLeader": {"severity": "page"}}}}},
     "at '/metrics/prometheusRule/alerts/noLeader/severity': value must be one of 'critical', 'warning', 'info'"),
    ({"networkPolicy": {"apiServer": {"cidrs": ["10.0.0.1"]}}}, "at '/networkPolicy/apiServer/cidrs/0'"),
    ({"notifications": {"sinks": {"x": {"type": "slack", "url": "https://hooks.slack.com/services/T/B/x"}}}},
     "at '/notifications/sinks/x': missing property 'urlSecret'"),
    ({"notifications": {"sinks": {"x": {"type": "teams", "urlSecret": {"name": "a", "key": "b"}}}}},
     "at '/notifications/sinks/x/type': value must be one of 'slack', 'webhook'"),
    ({"notifications": {"sinks": {"Bad_Name": {"type": "slack", "urlSecret": {"name": "a", "key": "b"}}}}},
     "invalid propertyName 'Bad_Name'"),
    ({"notifications": {"routes": {"breakglass": ["x"]}}},
     "at '/notifications/routes': additional properties 'breakglass' not allowed"),
    ({"notifications": {"audiences": {"requesters": ["x"]}}},
     "at '/notifications/audiences': additional properties 'requesters' not allowed"),
    ({"notifications": {"queueSize": 0}}, "at '/notifications/queueSize': minimum"),
    ({"standingPrivilege": {"prevent": "true"}}, "at '/standingPrivilege/prevent': got string, want boolean"),
]


@pytest.mark.parametrize("values, message", BAD_VALUES, ids=[m for _, m in BAD_VALUES])
def test_bad_values_are_refused_with_a_clear_message(values, message):
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(message)):
        render(values)


BAD_COMBINATIONS = [
    ({"replicas": 2, "leaderElection": {"enabled": False}},
     "replicas: 2 needs leader election (only the leader may reconcile and sweep)"),
    ({"metrics": {"port": 8443}},
     "metrics.port and admission.webhook.port are both 8443"),
    ({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
     "metrics.serviceMonitor.enabled needs metrics.enabled: true"),
]


@pytest.mark.parametrize("values, message", BAD_COMBINATIONS, ids=[m for _, m in BAD_COMBINATIONS])
def test_bad_combinations_are_refused_with_a_clear_message(values, message):
    with pytest.raises(helm_python.HelmError, match=re.escape(message)):
        render(values)


def test_lint_reports_bad_values():
    report = helm_python.lint(str(CHART), {"replicas": "two"})
    assert any("at '/replicas'" in (m["error"] or "") for m in report["messages"] if m["severity"] >= 3), report
