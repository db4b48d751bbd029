"""Self-protection and the managed label: the policies that keep a grant away from kubepim's own
objects, rendered with real Helm; who is exempt, what is matched, and that they can be turned off."""

import re

import helm_python
import pytest

from conftest import NAMESPACE, render

OPERATOR = f"system:serviceaccount:{NAMESPACE}:kubepim"


def policy(r, name):
    return r.one("ValidatingAdmissionPolicy", f"kubepim-{name}")


def condition(p, name):
    return next(c["expression"] for c in p["spec"]["matchConditions"] if c["name"] == name)


def test_the_release_namespace_is_protected_whole():
    p = policy(render(), "protect-namespace")
    constraints = p["spec"]["matchConstraints"]
    assert constraints["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}
    }
    (rule,) = constraints["resourceRules"]
    assert rule["resources"] == ["*/*"] and rule["apiGroups"] == ["*"]
    assert set(rule["operations"]) == {"CREATE", "UPDATE", "DELETE", "CONNECT"}
    assert p["spec"]["failurePolicy"] == "Fail"
    binding = render().one("ValidatingAdmissionPolicyBinding", "kubepim-protect-namespace")
    assert binding["spec"]["validationActions"] == ["Deny"]


def test_exemptions_are_the_operator_the_control_plane_and_the_administrators():
    r = render(
        {
            "selfProtection": {
                "adminGroups": ["platform-admins"],
                "exemptUsers": ["system:serviceaccount:argocd:argocd-application-controller"],
            }
        }
    )
    for name in ("protect-namespace", "protect-cluster"):
        exempt = condition(policy(r, name), "not-exempt")
        for who in (
            OPERATOR,
            "system:kube-controller-manager",
            "system:kube-scheduler",
            "system:serviceaccount:argocd:argocd-application-controller",
        ):
            assert f'"{who}"' in exempt, (name, who)
        assert '"system:nodes"' in exempt and '"platform-admins"' in exempt
        assert "'system:serviceaccount:kube-system:'" in exempt
        # Only what is configured: system:masters is the default, replaced here.
        assert "system:masters" not in exempt


def test_kubepims_cluster_objects_are_matched_by_name():
    p = policy(render(), "protect-cluster")
    own = condition(p, "kubepims-own")
    assert "endsWith('.kubepim.io')" in own
    assert "startsWith('kubepim-')" in own
    namespaces = next(
        r for r in p["spec"]["matchConstraints"]["resourceRules"] if r["resources"] == ["namespaces"]
    )
    assert namespaces["resourceNames"] == [NAMESPACE]


def test_only_the_operator_writes_the_managed_label():
    p = policy(render(), "managed-label")
    assert condition(p, "not-the-operator") == f"request.userInfo.username != '{OPERATOR}'"
    (rule,) = p["spec"]["matchConstraints"]["resourceRules"]
    assert set(rule["resources"]) == {"rolebindings", "clusterrolebindings"}
    assert set(rule["operations"]) == {"CREATE", "UPDATE"}
    expressions = [v["expression"] for v in p["spec"]["validations"]]
    assert expressions == ["!variables.wasLabelled", "!variables.labelled", "size(variables.annotated) == 0"]


def test_self_protection_can_be_turned_off_and_the_label_policy_goes_with_the_policies():
    off = render({"selfProtection": {"enabled": False}})
    names = {d.name for d in off.kinds("ValidatingAdmissionPolicy")}
    assert not {"kubepim-protect-namespace", "kubepim-protect-cluster"} & names
    assert "kubepim-managed-label" in names
    # admission.policies.enabled is the switch of every policy, self-protection included.
    none = render({"admission": {"policies": {"enabled": False}}})
    assert not {d.name for d in none.kinds("ValidatingAdmissionPolicy")}


@pytest.mark.parametrize(
    "values, message",
    [
        ({"selfProtection": {"adminGroups": [""]}}, "at '/selfProtection/adminGroups/0'"),
        ({"selfProtection": {"exemptUsers": "helm"}}, "at '/selfProtection/exemptUsers'"),
        ({"selfProtection": {"enable": True}}, "additional properties 'enable' not allowed"),
    ],
)
def test_bad_values_are_refused(values, message):
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(message)):
        render(values)


def test_notes_say_who_may_still_write_and_what_to_do_when_an_upgrade_is_refused():
    notes = render({"selfProtection": {"exemptUsers": ["argocd"]}}).notes
    assert "Self-protection is on" in notes and "system:masters" in notes and "argocd" in notes
    assert "selfProtection.exemptUsers" in notes
    assert "Self-protection is on" not in render({"selfProtection": {"enabled": False}}).notes


def test_every_status_field_but_approvals_is_the_controllers():
    # The request-status policy lists the controller-owned fields by name: a status field added to
    # the CRD and forgotten here would be writable by any approver inside an approving write.
    import pathlib

    import yaml

    crds = yaml.safe_load_all((pathlib.Path(__file__).parents[2] / "crds" / "kubepim.io.yaml").read_text())
    crd = next(c for c in crds if c and c["spec"]["names"]["kind"] == "ActivationRequest")
    (version,) = crd["spec"]["versions"]
    fields = set(version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]) - {"approvals"}
    p = render().one("ValidatingAdmissionPolicy", "kubepim-request-status")
    expression = next(v["expression"] for v in p["spec"]["variables"] if v["name"] == "changedFields")
    listed = set(re.findall(r"'(\w+)' : ''", expression))
    assert listed == fields, f"not guarded: {sorted(fields - listed)}; not in the CRD: {sorted(listed - fields)}"
