"""The foothold remover: a Deployment and an identity of its own, RBAC that only reads and deletes,
and an admission policy that holds its deletions to bindings and token Secrets outside kubepim's
and the control plane's namespaces."""

from conftest import NAMESPACE, render

REMOVER = f"system:serviceaccount:{NAMESPACE}:kubepim-footholds"


def test_on_by_default_with_its_own_identity_and_args():
    r = render()
    d = r.remover()
    assert d is not None and d.name == "kubepim-footholds"
    pod = d["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kubepim-footholds"
    (c,) = pod["containers"]
    assert c["args"] == ["remove-footholds", "--horizon=24h", "--log-format=json"]
    assert c["image"] == r.container()["image"], "the same image as the operator"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["resources"]["limits"]["memory"] == "64Mi"
    # Its pods are not the operator's: the operator's Services, PDB and NetworkPolicy select
    # component=operator.
    assert d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "foothold-remover"
    assert r.deployment()["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    binding = r.one("ClusterRoleBinding", "kubepim-footholds")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kubepim-footholds", "namespace": NAMESPACE}
    ]


def test_off_renders_nothing_of_it():
    r = render({"footholds": {"removal": {"enabled": False}}})
    assert r.remover() is None
    assert r.maybe("ClusterRole", "kubepim-footholds") is None
    assert r.maybe("ValidatingAdmissionPolicy", "kubepim-foothold-remover") is None


def test_horizon_is_passed_on():
    r = render({"footholds": {"removal": {"horizon": "2h"}}})
    (c,) = r.remover()["spec"]["template"]["spec"]["containers"]
    assert "--horizon=2h" in c["args"]


def test_its_rbac_reads_and_deletes_and_never_reads_secrets():
    rules = render().one("ClusterRole", "kubepim-footholds")["rules"]
    verbs = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                verbs.setdefault((group, resource), set()).update(rule["verbs"])
    assert verbs == {
        ("kubepim.io", "activationrequests"): {"get", "list", "watch"},
        ("kubepim.io", "privilegedroles"): {"get", "list", "watch"},
        ("rbac.authorization.k8s.io", "rolebindings"): {"get", "delete"},
        ("rbac.authorization.k8s.io", "clusterrolebindings"): {"get", "delete"},
        ("", "serviceaccounts"): {"get"},
        ("", "secrets"): {"delete"},
        ("events.k8s.io", "events"): {"create", "patch"},
    }
    assert not any(r.get("resourceNames") for r in rules)


def test_its_policy_matches_the_remover_only_and_allows_deletes_only():
    r = render()
    policy = r.one("ValidatingAdmissionPolicy", "kubepim-foothold-remover")
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    (condition,) = spec["matchConditions"]
    assert condition["expression"] == f"request.userInfo.username == '{REMOVER}'"
    resources = {res for rule in spec["matchConstraints"]["resourceRules"] for res in rule["resources"]}
    assert resources == {"rolebindings", "clusterrolebindings", "secrets"}
    for rule in spec["matchConstraints"]["resourceRules"]:
        assert set(rule["operations"]) == {"CREATE", "UPDATE", "DELETE", "CONNECT"}
    expressions = " ".join(v["expression"] for v in spec["validations"])
    for needle in (
        "request.operation == 'DELETE'",
        "kubernetes.io/service-account-token",
        f"'kube-system', '{NAMESPACE}'",
        "startsWith('system:')",
        "app.kubernetes.io/managed-by",
    ):
        assert needle in expressions, needle
    binding = r.one("ValidatingAdmissionPolicyBinding", "kubepim-foothold-remover")
    assert binding["spec"]["validationActions"] == ["Deny"]
    # Without the policies, the remover is still deployed but nothing holds it: the policies'
    # switch is the one for every policy.
    loose = render({"admission": {"policies": {"enabled": False}}})
    assert loose.maybe("ValidatingAdmissionPolicy", "kubepim-foothold-remover") is None


def test_its_rbac_objects_and_pod_are_under_self_protection():
    r = render()
    # Self-protection covers RBAC objects named <fullname>-* and everything in the namespace.
    for kind in ("ClusterRole", "ClusterRoleBinding"):
        assert r.one(kind, "kubepim-footholds").name.startswith("kubepim-")
    assert r.remover()["metadata"]["namespace"] == NAMESPACE
    assert r.one("ServiceAccount", "kubepim-footholds")["metadata"]["namespace"] == NAMESPACE
