"""The RBAC the chart renders, whoever's template it is in (rbac.yaml, webhook.yaml, ...), in every
value set: the security contract's "operator's own privileges" and "who may change policy"."""

from conftest import NAMESPACE, VALUE_SETS, render

FORBIDDEN_VERBS = {"*", "escalate", "impersonate"}
RBAC_WRITES = {"create", "update", "patch", "delete", "deletecollection", "*"}


def roles(r):
    return r.kinds("Role", "ClusterRole")


def rules(role):
    return role.get("rules") or []


def test_no_wildcards_escalate_or_impersonate(rendered):
    for role in roles(rendered):
        for rule in rules(role):
            verbs = set(rule.get("verbs", []))
            assert not verbs & FORBIDDEN_VERBS, f"{role!r}: {rule}"
            assert "*" not in rule.get("resources", []), f"{role!r}: {rule}"
            assert "*" not in rule.get("apiGroups", []), f"{role!r}: {rule}"
            assert "nonResourceURLs" not in rule, f"{role!r}: {rule}"


def test_bind_only_by_resource_names(rendered):
    for role in roles(rendered):
        for rule in rules(role):
            if "bind" in rule.get("verbs", []):
                names = rule.get("resourceNames") or []
                assert names, f"{role!r}: `bind` without resourceNames means every role: {rule}"
                assert "*" not in names and all(names), f"{role!r}: {rule}"
                assert set(rule["resources"]) <= {"roles", "clusterroles"}, rule
                assert rule["apiGroups"] == ["rbac.authorization.k8s.io"], rule


def test_nobody_writes_roles_or_clusterroles(rendered):
    for role in roles(rendered):
        for rule in rules(role):
            if "rbac.authorization.k8s.io" in rule.get("apiGroups", []):
                if {"roles", "clusterroles"} & set(rule.get("resources", [])):
                    assert not set(rule["verbs"]) & RBAC_WRITES, f"{role!r}: {rule}"


def test_nothing_binds_system_masters_or_cluster_admin(rendered):
    for binding in rendered.kinds("RoleBinding", "ClusterRoleBinding"):
        assert binding["roleRef"]["name"] != "cluster-admin", binding
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount", f"{binding!r} binds {subject}"
            assert not subject["name"].startswith("system:"), binding
            assert subject["namespace"] == NAMESPACE


def test_bindable_roles_are_exactly_the_value():
    r = render(VALUE_SETS["prevention"])
    operator = r.one("ClusterRole", "kubepim-operator")
    bind = [rule for rule in rules(operator) if "bind" in rule["verbs"]]
    assert bind == [
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"],
            "verbs": ["bind"],
            "resourceNames": ["admin", "edit", "view"],
        }
    ]
    namespaced = r.one("Role", "kubepim-bind-deployer")
    assert namespaced["metadata"]["namespace"] == "payments"
    assert rules(namespaced) == [
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["roles"],
            "verbs": ["bind"],
            "resourceNames": ["deployer"],
        }
    ]
    # No bindable ClusterRole: no `bind` rule at all (an empty resourceNames would mean all).
    none = render({"bindableRoles": {"clusterRoles": [], "roles": []}})
    assert not [
        rule for role in roles(none) for rule in rules(role) if "bind" in rule.get("verbs", [])
    ]


def test_operator_can_record_events_and_elect_a_leader():
    r = render(VALUE_SETS["ha"])
    operator = r.one("ClusterRole", "kubepim-operator")
    events = [rule for rule in rules(operator) if "events" in rule["resources"]]
    assert any({"create", "patch"} <= set(rule["verbs"]) for rule in events), events
    leases = [
        (role, rule)
        for role in roles(r)
        for rule in rules(role)
        if "leases" in rule.get("resources", [])
    ]
    assert leases, "leader election needs leases"
    for role, rule in leases:
        assert role.kind == "Role" and role["metadata"]["namespace"] == NAMESPACE, role
        # kube-lease-manager: create, get, SSA apply and strategic patches; the operator watches
        # the Lease to notice a release at once.
        assert {"get", "list", "watch", "create", "patch"} <= set(rule["verbs"]), rule


def test_policy_admin_is_never_aggregated(rendered):
    for role in rendered.kinds("ClusterRole"):
        labels = role["metadata"].get("labels", {})
        aggregated = [k for k, v in labels.items() if k.startswith("rbac.authorization.k8s.io/aggregate-to-") and v == "true"]
        writes_policy = any(
            "kubepim.io" in rule.get("apiGroups", [])
            and {"privilegedroles", "eligibilities"} & set(rule.get("resources", []))
            and set(rule["verbs"]) & RBAC_WRITES
            for rule in rules(role)
        )
        if writes_policy:
            assert not aggregated, f"{role!r} writes policy and aggregates into {aggregated}"
        if aggregated:
            # Whatever aggregates into admin/edit/view is read-only.
            for rule in rules(role):
                assert set(rule["verbs"]) <= {"get", "list", "watch"}, f"{role!r}: {rule}"
    admin = rendered.one("ClusterRole", "kubepim-policy-admin")
    assert not any(k.startswith("rbac.authorization.k8s.io/aggregate") for k in admin["metadata"].get("labels", {}))


def test_operator_never_writes_policy_objects():
    operator = render().one("ClusterRole", "kubepim-operator")
    for rule in rules(operator):
        if {"privilegedroles", "eligibilities"} & set(rule["resources"]):
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule


def test_operator_deletes_requests_only_for_history_retention():
    # Retention deletes ended requests after exporting them; deletecollection would let one call
    # remove history wholesale, and policy objects are never the operator's to remove.
    operator = render().one("ClusterRole", "kubepim-operator")
    deleting = [rule for rule in rules(operator) if set(rule["verbs"]) & {"delete", "deletecollection"}]
    on_requests = [rule for rule in deleting if "kubepim.io" in rule["apiGroups"]]
    assert on_requests == [
        {"apiGroups": ["kubepim.io"], "resources": ["activationrequests"], "verbs": ["patch", "delete"]}
    ], on_requests


def _reads(operator, resource):
    return [rule for rule in rules(operator) if resource in rule["resources"]]


def test_the_foothold_scan_reads_secrets_and_pods_only_when_asked():
    # RBAC cannot grant "list Secret metadata": a rule on secrets lets the operator read them all.
    default = render().one("ClusterRole", "kubepim-operator")
    assert _reads(default, "secrets") == [], "Secrets readable without footholds.scanSecretsAndPods"
    assert _reads(default, "pods") == []
    assert _reads(default, "certificatesigningrequests") == [
        {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"], "verbs": ["list"]}
    ]
    opted = render({"footholds": {"scanSecretsAndPods": True}}).one("ClusterRole", "kubepim-operator")
    assert _reads(opted, "secrets") == [{"apiGroups": [""], "resources": ["secrets", "pods"], "verbs": ["list"]}]
def test_operator_fills_and_closes_reviews_but_never_rewrites_their_spec():
    # Items, phase and outcomes go through /status; the schedule creates the next review. No
    # update, patch or delete of a review's spec: a review is the platform team's record.
    operator = render().one("ClusterRole", "kubepim-operator")
    on_reviews = [rule for rule in rules(operator) if "accessreviews" in rule["resources"]]
    assert on_reviews == [
        {
            "apiGroups": ["kubepim.io"],
            "resources": ["accessreviews"],
            "verbs": ["get", "list", "watch", "create", "manage"],
        }
    ], on_reviews
    status = [rule for rule in rules(operator) if "accessreviews/status" in rule["resources"]]
    assert status == [{"apiGroups": ["kubepim.io"], "resources": ["accessreviews/status"], "verbs": ["patch"]}]


def test_reviewer_role_is_not_aggregated_and_only_decides():
    reviewer = render().one("ClusterRole", "kubepim-reviewer")
    labels = reviewer["metadata"].get("labels", {})
    assert not any(k.startswith("rbac.authorization.k8s.io/aggregate") for k in labels), labels
    writes = [rule for rule in rules(reviewer) if set(rule["verbs"]) & RBAC_WRITES]
    assert writes == [
        {"apiGroups": ["kubepim.io"], "resources": ["accessreviews/status"], "verbs": ["get", "patch", "update"]}
    ], writes
