"""Shared helpers of the chart tests: render charts/kubepim with real Helm (helm-python-sdk, which
embeds Helm's Go SDK) and look at what it renders.

Every test renders through `render(values)`, which is what `helm install` would apply: the chart's
defaults merged with `values`, validated against values.schema.json, templates rendered for the
release below. Renders are cached per value set.
"""

import copy
import json
import pathlib

import helm_python  # pip install -r tests/chart/requirements.txt (helm-python-sdk)
import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kubepim"
RELEASE = "kubepim"
NAMESPACE = "kubepim-system"

# Kubernetes versions whose OpenAPI schemas every rendered object is validated against.
KUBE_VERSIONS = ["1.32.0", "1.33.0"]

# Metric names the operator exports (issue 5), and those the chart's alerts and dashboard use.
METRICS = {
    "kubepim_approval_to_binding_seconds",
    "kubepim_revocation_lateness_seconds",
    "kubepim_active_grants",
    "kubepim_pending_requests",
    "kubepim_unmanaged_privileged_bindings",
    "kubepim_is_leader",
    "kubepim_managed_bindings_removed_total",
    "kubepim_webhook_serving",
    "kubepim_webhook_reviews_total",
    "kubepim_webhook_certificate_expiry_timestamp_seconds",
    # Reconcile errors per kind: the name is the chart's assumption (not fixed by issue 5).
    "kubepim_reconcile_errors_total",
}

SINKS = {
    "approvers": {"type": "slack", "urlSecret": {"name": "kubepim-notifications", "key": "approvers"}},
    "requesters": {"type": "slack", "urlSecret": {"name": "kubepim-notifications", "key": "requesters"}},
    "audit": {"type": "webhook", "urlSecret": {"name": "kubepim-audit-hook", "key": "url"}},
    "security": {"type": "slack", "urlSecret": {"name": "kubepim-notifications", "key": "security"}},
}

# The value sets every generic test (lint, schema validation of the manifests, RBAC rules,
# uniqueness) runs on. Tests of one feature render their own variations too.
VALUE_SETS = {
    "defaults": {},
    "ha": {"replicas": 2},
    "cert-manager": {"admission": {"webhook": {"certificates": {"mode": "certManager"}}}},
    "cert-manager-issuer": {
        "admission": {
            "webhook": {
                "certificates": {
                    "mode": "certManager",
                    "certManager": {"issuerRef": {"kind": "ClusterIssuer", "name": "internal-ca"}},
                }
            }
        }
    },
    "prevention": {
        "standingPrivilege": {"prevent": True},
        "admission": {"rbacApproval": True},
        "breakGlass": {"users": ["root-1"], "groups": ["sre-break-glass"]},
        "bindableRoles": {
            "clusterRoles": ["admin", "edit", "view"],
            "roles": [{"namespace": "payments", "name": "deployer"}],
        },
    },
    "policies-off": {"admission": {"policies": {"enabled": False}}},
    "mutating-admission-policy": {"admission": {"mutatingAdmissionPolicy": {"enabled": True}}},
    "no-crds": {"crds": {"install": False}},
    "crds-not-kept": {"crds": {"keep": False}},
    "notifications": {"notifications": {"enabled": True, "sinks": SINKS}},
    "observability": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "grafanaDashboard": {"enabled": True},
        }
    },
    "network-policy": {"networkPolicy": {"enabled": True}},
    "audit": {"audit": {"enabled": True}, "networkPolicy": {"enabled": True}},
    "network-policy-cidrs": {
        "networkPolicy": {
            "enabled": True,
            "apiServer": {"cidrs": ["10.96.0.1/32", "172.18.0.2/32"], "ports": [443, 6443]},
            "extraEgress": [{"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": 443}]}],
        }
    },
    "metrics-off": {"metrics": {"enabled": False}},
    "webhook-off": {"admission": {"webhook": {"enabled": False}}},
    "out-of-cluster": {
        "deployment": {"enabled": False},
        "admission": {"webhook": {"url": "https://127.0.0.1:8443"}},
    },
    "everything": {
        "replicas": 3,
        "image": {"digest": "sha256:" + "a" * 64},
        "imagePullSecrets": ["registry"],
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "security", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 1,
                        "preference": {
                            "matchExpressions": [{"key": "node-role", "operator": "In", "values": ["infra"]}]
                        },
                    }
                ]
            }
        },
        "podAnnotations": {"example.com/owner": "platform"},
        "podLabels": {"team": "platform"},
        "extraArgs": ["--webhook-bind-address=::"],
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "serviceAccount": {"annotations": {"example.com/role": "kubepim"}},
        "crds": {"keep": True},
        "metrics": {
            "port": 9090,
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "grafanaDashboard": {"enabled": True, "namespace": "grafana"},
        },
        "networkPolicy": {"enabled": True},
        "notifications": {"enabled": True, "sinks": SINKS},
        "standingPrivilege": {"prevent": True},
        "admission": {"rbacApproval": True, "webhook": {"certificates": {"mode": "certManager"}}},
    },
}


class Rendered:
    """What one render produced: the files (path → text) and the objects in them."""

    def __init__(self, values, files):
        self.values = values
        self.files = files
        self.objects = []
        for path, text in files.items():
            if path.endswith("NOTES.txt"):
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    self.objects.append(Obj(path, doc))

    @property
    def notes(self):
        return next((t for p, t in self.files.items() if p.endswith("NOTES.txt")), "")

    def kinds(self, *kinds):
        return [o for o in self.objects if o.kind in kinds]

    def one(self, kind, name=None):
        found = [o for o in self.kinds(kind) if name is None or o.name == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o.name for o in found]}"
        return found[0]

    def maybe(self, kind, name=None):
        found = [o for o in self.kinds(kind) if name is None or o.name == name]
        assert len(found) <= 1, f"several {kind}: {[o.name for o in found]}"
        return found[0] if found else None

    def deployment(self):
        """The operator's Deployment (the foothold remover has one of its own)."""
        found = [
            o
            for o in self.kinds("Deployment")
            if o["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"
        ]
        assert len(found) == 1, f"expected the operator's Deployment, found {found}"
        return found[0]

    def remover(self):
        """The foothold remover's Deployment, or None."""
        found = [
            o
            for o in self.kinds("Deployment")
            if o["metadata"]["labels"].get("app.kubernetes.io/component") == "foothold-remover"
        ]
        assert len(found) <= 1, found
        return found[0] if found else None

    def container(self):
        (container,) = self.deployment()["spec"]["template"]["spec"]["containers"]
        return container

    def args(self):
        return self.container()["args"]


class Obj(dict):
    """A rendered object, remembering the template it came from."""

    def __init__(self, template, doc):
        super().__init__(doc)
        self.template = template.split("/", 1)[1]

    @property
    def kind(self):
        return self["kind"]

    @property
    def name(self):
        return self["metadata"]["name"]

    def __repr__(self):
        return f"{self.kind}/{self.name} ({self.template})"


_chart = None
_cache = {}


def chart():
    global _chart
    if _chart is None:
        _chart = helm_python.Chart.load(str(CHART))
    return _chart


def render(values=None, *, namespace=NAMESPACE, name=RELEASE):
    """Renders the chart as `helm install` would; raises helm_python's errors as they come."""
    values = copy.deepcopy(values or {})
    key = (json.dumps(values, sort_keys=True), namespace, name)
    if key not in _cache:
        files = chart().render(values, name=name, namespace=namespace, is_install=True)
        _cache[key] = Rendered(values, files)
    return _cache[key]


def merge(base, extra):
    """Deep merge of value dicts (extra wins), like Helm's coalescing of -f files."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@pytest.fixture(params=sorted(VALUE_SETS), ids=sorted(VALUE_SETS))
def value_set(request):
    """(name, values) of every value set."""
    return request.param, VALUE_SETS[request.param]


@pytest.fixture
def rendered(value_set):
    return render(value_set[1])
