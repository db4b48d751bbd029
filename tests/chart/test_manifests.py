"""Every value set renders, lints clean, and every object it renders is valid: against the
Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields are errors) for the
built-in kinds, against the real CRDs' schemas (tests/chart/schemas) for ServiceMonitor,
PrometheusRule, Certificate and Issuer."""

import json
import pathlib

import helm_python
import jsonschema
import kubernetes_validate
import pytest

from conftest import CHART, KUBE_VERSIONS, NAMESPACE, VALUE_SETS, render

SCHEMAS = pathlib.Path(__file__).resolve().parent / "schemas"
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.json",
    ("cert-manager.io/v1", "Certificate"): "cert-manager.io_certificates.json",
    ("cert-manager.io/v1", "Issuer"): "cert-manager.io_issuers.json",
}
CLUSTER_SCOPED = {
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}


_validated = {}


def validate_builtin(obj, version):
    """kubernetes_validate.validate, once per distinct object (most value sets share most objects).
    Returns None (valid), the ValidationError, or SchemaNotFoundError."""
    key = (version, json.dumps(obj, sort_keys=True))
    if key not in _validated:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
            _validated[key] = None
        except kubernetes_validate.SchemaNotFoundError as error:
            _validated[key] = error
        except kubernetes_validate.ValidationError as error:
            _validated[key] = error
    return _validated[key]


def crd_validator(api_version, kind):
    schema = json.loads((SCHEMAS / CRD_SCHEMAS[(api_version, kind)]).read_text())
    assert schema["x-vendored-from"]["apiVersion"] == api_version
    return jsonschema.Draft7Validator(schema)


def test_lint_clean():
    report = helm_python.lint(str(CHART), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_clean_with(name):
    # Linted as for the newest Kubernetes the schemas below cover: offline, Helm's capabilities
    # cannot say which API versions a cluster serves (webhook.yaml picks the
    # MutatingAdmissionPolicy version from them), so a newer default would flag the fallback.
    report = helm_python.lint(
        str(CHART), VALUE_SETS[name], strict=True, namespace=NAMESPACE, kube_version="v" + KUBE_VERSIONS[-1]
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


def test_every_object_is_valid(rendered, value_set):
    problems = []
    for obj in rendered.objects:
        api_version, kind = obj["apiVersion"], obj["kind"]
        where = f"{value_set[0]}: {obj!r}"
        if (api_version, kind) in CRD_SCHEMAS:
            for error in crd_validator(api_version, kind).iter_errors(dict(obj)):
                problems.append(f"{where}: {'/'.join(map(str, error.absolute_path))}: {error.message}")
            continue
        known = 0
        for version in KUBE_VERSIONS:
            error = validate_builtin(dict(obj), version)
            if isinstance(error, kubernetes_validate.SchemaNotFoundError):
                continue
            known += 1
            if error is not None:
                path = "/".join(map(str, error.path))
                problems.append(f"{where}: Kubernetes {version}: {path}: {error.message}")
        if not known:
            problems.append(
                f"{where}: {api_version} {kind} is in no schema of Kubernetes {KUBE_VERSIONS} "
                "nor vendored in tests/chart/schemas"
            )
    assert not problems, "\n".join(problems)


def test_objects_are_unique_and_placed(rendered):
    seen = {}
    for obj in rendered.objects:
        meta = obj["metadata"]
        if obj.kind in CLUSTER_SCOPED:
            assert "namespace" not in meta, f"{obj!r} is cluster-scoped"
        else:
            assert meta.get("namespace"), f"{obj!r} has no namespace"
        key = (obj["apiVersion"].split("/")[0], obj.kind, meta.get("namespace"), obj.name)
        assert key not in seen, f"{obj!r} rendered twice (also by {seen[key]})"
        seen[key] = obj.template
        assert obj.name == obj.name.lower() and len(obj.name) <= 253, obj
        labels = meta.get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "kubepim", f"{obj!r} lacks the chart's labels"


def test_namespaced_objects_in_the_release_namespace(rendered, value_set):
    elsewhere = {
        (o.kind, o.name, o["metadata"].get("namespace"))
        for o in rendered.objects
        if o.kind not in CLUSTER_SCOPED and o["metadata"]["namespace"] != NAMESPACE
    }
    # Only what is placed elsewhere on purpose: Roles granting `bind` on a namespaced Role (in that
    # Role's namespace), and the Grafana dashboard (in the namespace Grafana watches).
    allowed = {(k, n, ns) for (k, n, ns) in elsewhere if k in ("Role", "RoleBinding") and "-bind-" in n}
    allowed |= {(k, n, ns) for (k, n, ns) in elsewhere if k == "ConfigMap" and n.endswith("-dashboard")}
    assert elsewhere == allowed


def test_a_different_release_namespace_follows(value_set):
    other = render(value_set[1], namespace="security-tools")
    for obj in other.objects:
        if obj.kind in ("ServiceAccount", "Deployment", "Service", "PodDisruptionBudget"):
            assert obj["metadata"]["namespace"] == "security-tools", obj


def test_the_crd_schemas_catch_mistakes():
    """The vendored schemas are not vacuous."""
    bad = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "x"},
        "spec": {"endpoints": [{"port": 8080, "interval": 30}], "selector": {}},
    }
    assert list(crd_validator("monitoring.coreos.com/v1", "ServiceMonitor").iter_errors(bad))
    bad_rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "x"},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "A"}]}]},
    }
    assert list(crd_validator("monitoring.coreos.com/v1", "PrometheusRule").iter_errors(bad_rule))
    bad_cert = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "x"},
        "spec": {"dnsNames": ["a"], "issuerRef": {"name": "i"}},
    }
    assert list(crd_validator("cert-manager.io/v1", "Certificate").iter_errors(bad_cert))
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"portz": []}},
            KUBE_VERSIONS[0],
            strict=True,
        )
