"""notifications: the config file the operator reads, its mount, and the Secrets behind the URLs."""

import re

import pytest
import yaml

from conftest import SINKS, VALUE_SETS, merge, render

CONFIG = "/etc/kubepim/notifications.yaml"
SECRETS = "/etc/kubepim/notification-secrets"


def config(r):
    return yaml.safe_load(r.one("ConfigMap", "kubepim-notifications")["data"]["notifications.yaml"])


def test_off_by_default():
    r = render()
    assert not r.maybe("ConfigMap", "kubepim-notifications")
    assert not any(a.startswith("--notifications-config") for a in r.args())


def test_config_file():
    r = render(VALUE_SETS["notifications"])
    assert f"--notifications-config={CONFIG}" in r.args()
    cfg = config(r)
    # The operator's format (src/notify/config.rs): sinks with urlFrom, audiences, routes.
    assert set(cfg) == {"sinks", "audiences"}
    assert [s["name"] for s in cfg["sinks"]] == sorted(SINKS)
    for sink in cfg["sinks"]:
        assert sink == {
            "name": sink["name"],
            "type": SINKS[sink["name"]]["type"],
            "urlFrom": {"file": f"{SECRETS}/{sink['name']}/url"},
        }
    # The brief's routing, by audience: requested → approvers, approved/denied → requester,
    # activated/expired/revoked → audit, breakGlass → security (and audit).
    assert cfg["audiences"] == {
        "approvers": ["approvers"],
        "requester": ["requesters"],
        "audit": ["audit"],
        "security": ["security"],
    }


def test_no_secret_in_the_config_map():
    r = render(VALUE_SETS["notifications"])
    text = r.one("ConfigMap", "kubepim-notifications")["data"]["notifications.yaml"]
    assert "http" not in text, "URLs only come from Secrets"


def test_mounts():
    r = render(VALUE_SETS["notifications"])
    container = r.container()
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["notifications"] == {
        "name": "notifications",
        "mountPath": CONFIG,
        "subPath": "notifications.yaml",
        "readOnly": True,
    }
    assert mounts["notification-secrets"]["mountPath"] == SECRETS
    assert mounts["notification-secrets"]["readOnly"] is True
    volumes = {v["name"]: v for v in r.deployment()["spec"]["template"]["spec"]["volumes"]}
    assert volumes["notifications"]["configMap"]["name"] == "kubepim-notifications"
    sources = volumes["notification-secrets"]["projected"]["sources"]
    files = {
        src["secret"]["items"][0]["path"]: (src["secret"]["name"], src["secret"]["items"][0]["key"])
        for src in sources
    }
    assert files == {
        f"{name}/url": (sink["urlSecret"]["name"], sink["urlSecret"]["key"]) for name, sink in SINKS.items()
    }
    # Readable by the operator's group only.
    assert volumes["notification-secrets"]["projected"]["defaultMode"] == 0o440
    assert r.deployment()["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 65532
    # A change of routing rolls the pods.
    annotations = r.deployment()["spec"]["template"]["metadata"]["annotations"]
    assert len(annotations["checksum/notifications"]) == 64


def test_routing_change_rolls_the_pods():
    a = render(VALUE_SETS["notifications"])
    b = render(merge(VALUE_SETS["notifications"], {"notifications": {"routes": {"failed": ["audit"]}}}))
    checksum = lambda r: r.deployment()["spec"]["template"]["metadata"]["annotations"]["checksum/notifications"]
    assert checksum(a) != checksum(b)
    assert config(b)["routes"] == {"failed": ["audit"]}


def test_headers_cluster_queue_and_routes():
    values = {
        "notifications": {
            "enabled": True,
            "cluster": "prod-eu-1",
            "queueSize": 512,
            "sinks": {
                "siem": {
                    "type": "webhook",
                    "urlSecret": {"name": "siem", "key": "url"},
                    "headers": [
                        {"name": "X-Source", "value": "kubepim"},
                        {"name": "Authorization", "valueSecret": {"name": "siem", "key": "token"}},
                    ],
                }
            },
            "audiences": {"approvers": [], "requester": [], "audit": ["siem"], "security": ["siem"]},
            "routes": {"cancelled": [], "breakGlass": ["siem"]},
        }
    }
    r = render(values)
    cfg = config(r)
    assert cfg["cluster"] == "prod-eu-1" and cfg["queueSize"] == 512
    (siem,) = cfg["sinks"]
    assert siem["headers"] == [
        {"name": "X-Source", "value": "kubepim"},
        {"name": "Authorization", "valueFrom": {"file": f"{SECRETS}/siem/header-1"}},
    ]
    assert cfg["routes"] == {"cancelled": [], "breakGlass": ["siem"]}
    volumes = {v["name"]: v for v in r.deployment()["spec"]["template"]["spec"]["volumes"]}
    paths = [s["secret"]["items"][0] for s in volumes["notification-secrets"]["projected"]["sources"]]
    assert paths == [{"key": "url", "path": "siem/url"}, {"key": "token", "path": "siem/header-1"}]


@pytest.mark.parametrize(
    "notifications, message",
    [
        ({"enabled": True}, "notifications.sinks is empty"),
        (
            {"enabled": True, "sinks": {"approvers": SINKS["approvers"]}},
            'notifications.audiences.audit names sink "audit", which notifications.sinks does not define '
            "(defined: approvers)",
        ),
        (
            {"enabled": True, "sinks": SINKS, "routes": {"failed": ["pager"]}},
            'notifications.routes.failed names sink "pager"',
        ),
        (
            {
                "enabled": True,
                "sinks": {**SINKS, "x": {"type": "slack", "urlSecret": {"name": "s", "key": "k"},
                                         "headers": [{"name": "A"}]}},
            },
            "notifications.sinks.x.headers[0] (A): set exactly one of value or valueSecret",
        ),
    ],
)
def test_inconsistent_notifications_are_refused(notifications, message):
    with pytest.raises(Exception, match=re.escape(message)):
        render({"notifications": notifications})
