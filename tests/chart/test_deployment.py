"""The operator's Deployment and what surrounds it: hardening, probes, resources, one replica vs
HA, scheduling values, image, ServiceAccount, PodDisruptionBudget, metrics Service."""

import pytest

from conftest import NAMESPACE, VALUE_SETS, render

RESTRICTED_VOLUME_TYPES = {"configMap", "secret", "projected", "emptyDir", "downwardAPI"}


def pod_spec(r):
    return r.deployment()["spec"]["template"]["spec"]


def test_pod_is_hardened_in_every_value_set(rendered):
    """Pod Security Standard "restricted", and then some."""
    if not rendered.kinds("Deployment"):
        pytest.skip("no Deployment in this value set")
    pod = pod_spec(rendered)
    ctx = pod["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == 65532
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is True, "the operator needs the API"
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for container in pod["containers"] + pod.get("initContainers", []):
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc.get("privileged", False) is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not any(p.get("hostPort") for p in container.get("ports", []))
    for volume in pod["volumes"]:
        kinds = set(volume) - {"name"}
        assert kinds <= RESTRICTED_VOLUME_TYPES, f"volume {volume['name']}: {kinds}"


def test_defaults():
    r = render()
    deployment = r.deployment()
    pod = pod_spec(r)
    container = r.container()
    assert deployment["metadata"]["namespace"] == NAMESPACE
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["serviceAccountName"] == "kubepim"
    assert "priorityClassName" not in pod
    assert "topologySpreadConstraints" not in pod
    assert container["image"] == "kubepim:0.1.0", "tag defaults to appVersion; users build and push it"
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "webhook": 8443}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["RUST_LOG"]["value"] == "info,kube_client=warn,kube_runtime=warn"
    assert r.args() == [
        "run",
        "--log-format=json",
        "--sweep-interval=30s",
        "--concurrency=16",
        "--history-retention=2160h",
        "--history-prune-interval=1h",
        "--separation-interval=5m",
        "--separation-window=720h",
        "--separation-fast-approval=5s",
        "--separation-concentration=0.8",
        "--separation-concentration-min=10",
        "--separation-approver-requests=3",
        "--separation-break-glass-uses=3",
        "--standing-privilege-scan-interval=30s",
        "--metrics-port=8080",
        "--webhook-port=8443",
        "--webhook-service-name=kubepim-webhook",
        "--webhook-cert-mode=self-managed",
    ]
    assert not r.kinds("PodDisruptionBudget"), "a PDB with one replica blocks every drain"
    assert not r.kinds("NetworkPolicy", "ServiceMonitor", "PrometheusRule")
    assert not [o for o in r.kinds("ConfigMap")], "no dashboard or notifications by default"


def test_selector_matches_the_pods_and_is_stable():
    r = render()
    deployment = r.deployment()
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    # Selectors are immutable: nothing that changes with an upgrade may be in them.
    assert set(selector) == {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
    }
    # podLabels cannot take the selector labels over.
    r2 = render({"podLabels": {"app.kubernetes.io/component": "other", "team": "x"}})
    labels2 = r2.deployment()["spec"]["template"]["metadata"]["labels"]
    assert labels2["app.kubernetes.io/component"] == "operator" and labels2["team"] == "x"


@pytest.mark.parametrize("replicas", [2, 3])
def test_ha(replicas):
    r = render({"replicas": replicas})
    spec = r.deployment()["spec"]
    assert spec["replicas"] == replicas
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert "--leader-election" in r.args()
    (spread,) = spec["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread["maxSkew"] == 1
    assert spread["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    pdb = r.one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == spec["selector"]


def test_leader_election_values():
    assert "--leader-election" not in render().args()
    assert "--leader-election" in render({"leaderElection": {"enabled": True}}).args()
    one = render({"leaderElection": {"enabled": True}})
    assert one.deployment()["spec"]["strategy"] == {"type": "Recreate"}
    custom = [{"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "kubepim"}}}]
    r = render({"replicas": 2, "topologySpreadConstraints": custom})
    assert pod_spec(r)["topologySpreadConstraints"] == custom


def test_scheduling_and_extra_values():
    values = VALUE_SETS["everything"]
    r = render(values)
    pod = pod_spec(r)
    container = r.container()
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == values["affinity"]
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    meta = r.deployment()["spec"]["template"]["metadata"]
    assert meta["annotations"]["example.com/owner"] == "platform"
    assert meta["labels"]["team"] == "platform"
    assert container["image"] == "kubepim@sha256:" + "a" * 64
    assert container["args"][-1] == "--webhook-bind-address=::", "extraArgs come last"
    assert {"name": "TZ", "value": "UTC"} in container["env"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["health"] == 9090
    assert "--metrics-port=9090" in container["args"]
    sa = r.one("ServiceAccount", "kubepim")
    assert sa["metadata"]["annotations"] == {"example.com/role": "kubepim"}


# Flags `kubepim run` takes once per value.
REPEATABLE_FLAGS = {"--break-glass-user", "--break-glass-group"}


def test_no_flag_twice():
    """`kubepim run` (clap) refuses a flag given twice, except the repeatable ones."""
    for values in VALUE_SETS.values():
        r = render(values)
        if r.kinds("Deployment"):
            names = [a.split("=", 1)[0] for a in r.args() if a.startswith("--")]
            names = [n for n in names if n not in REPEATABLE_FLAGS]
            assert len(names) == len(set(names)), names


def test_image_tag_and_operator_flags():
    r = render(
        {
            "image": {"repository": "registry.example/kubepim", "tag": "0.2.0-rc.1", "pullPolicy": "Always"},
            "operator": {"logFormat": "text", "logLevel": "debug", "sweepInterval": "1m", "concurrency": 4},
            "terminationGracePeriodSeconds": 60,
            # Helm merges maps: null removes a default (here the CPU limit).
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": None, "memory": "512Mi"}},
        }
    )
    container = r.container()
    assert container["image"] == "registry.example/kubepim:0.2.0-rc.1"
    assert container["imagePullPolicy"] == "Always"
    assert r.args()[:4] == ["run", "--log-format=text", "--sweep-interval=1m", "--concurrency=4"]
    assert {"name": "RUST_LOG", "value": "debug"} in container["env"]
    assert pod_spec(r)["terminationGracePeriodSeconds"] == 60
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}


def test_service_account():
    r = render()
    sa = r.one("ServiceAccount", "kubepim")
    assert sa.name == "kubepim" and sa["metadata"]["namespace"] == NAMESPACE
    assert sa["automountServiceAccountToken"] is True
    # The RBAC binds the same account.
    operator_binding = r.one("ClusterRoleBinding", "kubepim-operator")
    assert operator_binding["subjects"] == [{"kind": "ServiceAccount", "name": "kubepim", "namespace": NAMESPACE}]
    other = render({"serviceAccount": {"create": False, "name": "existing-sa"}})
    assert [o.name for o in other.kinds("ServiceAccount")] == ["kubepim-footholds"], "only the remover's own"
    assert pod_spec(other)["serviceAccountName"] == "existing-sa"
    assert other.one("ClusterRoleBinding", "kubepim-operator")["subjects"][0]["name"] == "existing-sa"


def test_metrics_service():
    r = render()
    service = r.one("Service", "kubepim-metrics")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "health", "protocol": "TCP"}]
    assert service["spec"]["selector"] == r.deployment()["spec"]["selector"]["matchLabels"]


def test_metrics_off_removes_flag_probes_and_service():
    r = render(VALUE_SETS["metrics-off"])
    container = r.container()
    assert not any(a.startswith("--metrics-port") for a in r.args())
    assert "livenessProbe" not in container and "readinessProbe" not in container
    assert [p["name"] for p in container["ports"]] == ["webhook"]
    assert not r.maybe("Service", "kubepim-metrics")


def test_webhook_modes():
    off = render(VALUE_SETS["webhook-off"])
    assert not any(a.startswith("--webhook") for a in off.args())
    assert [p["name"] for p in off.container()["ports"]] == ["health"]

    cm = render(VALUE_SETS["cert-manager"])
    assert "--webhook-cert-mode=cert-manager" in cm.args()
    assert "--webhook-cert-dir=/etc/kubepim/webhook-tls" in cm.args()
    volumes = {v["name"]: v for v in pod_spec(cm)["volumes"]}
    mounts = {m["name"]: m for m in cm.container()["volumeMounts"]}
    assert mounts["webhook-tls"] == {"name": "webhook-tls", "mountPath": "/etc/kubepim/webhook-tls", "readOnly": True}
    certificate = cm.one("Certificate")
    assert volumes["webhook-tls"]["secret"]["secretName"] == certificate["spec"]["secretName"]
    service = "kubepim-webhook"
    assert f"{service}.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    issuer = cm.one("Issuer")
    assert issuer["spec"] == {"selfSigned": {}}
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": issuer.name}
    assert "server auth" in certificate["spec"]["usages"]

    external = render(VALUE_SETS["cert-manager-issuer"])
    assert not external.kinds("Issuer")
    assert external.one("Certificate")["spec"]["issuerRef"] == {"kind": "ClusterIssuer", "name": "internal-ca"}

    self_managed = render()
    assert not self_managed.kinds("Certificate", "Issuer")
    assert "webhook-tls" not in {v["name"] for v in pod_spec(self_managed)["volumes"]}


def test_webhook_service_name_matches_the_flag():
    """--webhook-service-name names the Service webhook.yaml creates (the certificate's DNS name)."""
    for values in ({}, {"fullnameOverride": "pim"}):
        r = render(values)
        flag = next(a for a in r.args() if a.startswith("--webhook-service-name="))
        name = flag.split("=", 1)[1]
        services = {s.name for s in r.kinds("Service")}
        if any(o.template == "templates/webhook.yaml" for o in r.objects):
            assert name in services, f"{name} not among {services}"
        assert name == f"{values.get('fullnameOverride', 'kubepim')}-webhook"


def test_out_of_cluster():
    r = render(VALUE_SETS["out-of-cluster"])
    assert not r.kinds("Deployment", "PodDisruptionBudget", "NetworkPolicy")
    assert not r.maybe("Service", "kubepim-metrics")
    assert r.kinds("ServiceAccount"), "the operator outside still runs as the chart's ServiceAccount"
    assert "kubepim run" in r.notes
