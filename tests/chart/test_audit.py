"""The activity record's endpoint (audit.enabled): the operator's flags, the token Secret and its
mount, the Service port, the NetworkPolicy, and the shipped audit policy."""

import base64
from pathlib import Path

import pytest
import yaml

from conftest import CHART, render

ON = {"audit": {"enabled": True}}


def test_off_by_default():
    r = render()
    assert not any(a.startswith("--audit") for a in r.args())
    assert not [s for s in r.kinds("Secret") if s.name.endswith("-audit-token")]
    ports = [p["name"] for p in r.container().get("ports", [])]
    assert "audit" not in ports


def test_on_serves_the_endpoint_with_a_mounted_token():
    r = render(ON)
    args = r.args()
    assert "--audit-listen=0.0.0.0:8444" in args
    assert "--audit-token-file=/etc/kubepim/audit/token" in args
    assert "--audit-max-body=4194304" in args
    assert "--audit-flush-interval=2s" in args
    (secret,) = [s for s in r.kinds("Secret") if s.name.endswith("-audit-token")]
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) >= 32 and token.isalnum()
    mounts = {m["name"]: m for m in r.container()["volumeMounts"]}
    assert mounts["audit-token"]["mountPath"] == "/etc/kubepim/audit"
    assert mounts["audit-token"]["readOnly"] is True
    volumes = {v["name"]: v for v in r.deployment()["spec"]["template"]["spec"]["volumes"]}
    assert volumes["audit-token"]["secret"]["secretName"] == secret.name
    ports = {p["name"]: p["containerPort"] for p in r.container()["ports"]}
    assert ports["audit"] == 8444
    services = [s for s in r.kinds("Service") if any(p["name"] == "audit" for p in s["spec"]["ports"])]
    assert len(services) == 1, "the audit port rides on the webhook Service (its certificate)"


def test_an_existing_secret_is_used_instead():
    r = render({"audit": {"enabled": True, "token": {"existingSecret": "my-audit-token"}}})
    assert not [s for s in r.kinds("Secret") if s.name.endswith("-audit-token")]
    volumes = {v["name"]: v for v in r.deployment()["spec"]["template"]["spec"]["volumes"]}
    assert volumes["audit-token"]["secret"]["secretName"] == "my-audit-token"


def test_network_policy_admits_the_audit_port():
    r = render({"audit": {"enabled": True}, "networkPolicy": {"enabled": True}})
    (np,) = r.kinds("NetworkPolicy")
    ports = [p["port"] for rule in np["spec"]["ingress"] for p in rule.get("ports", [])]
    assert "audit" in ports


def test_needs_the_webhook_in_the_cluster():
    with pytest.raises(Exception, match="audit.enabled needs admission.webhook.enabled"):
        render({"audit": {"enabled": True}, "admission": {"webhook": {"enabled": False}}})


def test_the_shipped_policy_is_metadata_at_most_and_omits_the_uncounted_stages():
    policy = yaml.safe_load((Path(CHART) / "files" / "audit-policy.yaml").read_text())
    assert policy["apiVersion"] == "audit.k8s.io/v1" and policy["kind"] == "Policy"
    assert set(policy["omitStages"]) == {"RequestReceived", "ResponseStarted"}
    levels = [rule["level"] for rule in policy["rules"]]
    assert set(levels) <= {"None", "Metadata"}, "never request or response bodies"
    assert levels[-1] == "Metadata", "everything not excluded is recorded"
