"""Standing-privilege detection: the scan interval and the break-glass identities reach the
operator as `kubepim run` flags (`kubepim.args`), and the RBAC lets it list every binding."""

from conftest import render


def flags(r, name):
    return [a.split("=", 1)[1] for a in r.args() if a.split("=", 1)[0] == name]


def test_scan_interval_default_and_value():
    assert flags(render(), "--standing-privilege-scan-interval") == ["30s"]
    r = render({"standingPrivilege": {"scanInterval": "1m30s"}})
    assert flags(r, "--standing-privilege-scan-interval") == ["1m30s"]


def test_no_break_glass_by_default():
    r = render()
    assert flags(r, "--break-glass-user") == [] and flags(r, "--break-glass-group") == []


def test_every_break_glass_identity_is_one_flag():
    r = render(
        {
            "breakGlass": {
                "users": ["root-1", "system:serviceaccount:ops:emergency"],
                "groups": ["sre-break-glass", "has space"],
            }
        }
    )
    assert flags(r, "--break-glass-user") == ["root-1", "system:serviceaccount:ops:emergency"]
    assert flags(r, "--break-glass-group") == ["sre-break-glass", "has space"]


def test_the_operator_may_list_every_binding_and_review_its_own_access():
    rules = render().one("ClusterRole", "kubepim-operator")["rules"]

    def allowed(group, resource, verb):
        return any(
            group in r.get("apiGroups", [])
            and resource in r.get("resources", [])
            and verb in r.get("verbs", [])
            and not r.get("resourceNames")
            for r in rules
        )

    for resource in ("rolebindings", "clusterrolebindings"):
        assert allowed("rbac.authorization.k8s.io", resource, "list")
    assert allowed("authorization.k8s.io", "selfsubjectaccessreviews", "create")
    # The events the scan publishes on PrivilegedRoles.
    assert allowed("events.k8s.io", "events", "create")
