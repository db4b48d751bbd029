"""NOTES.txt: what `helm install` tells the user to do next."""

from conftest import NAMESPACE, VALUE_SETS, render


def test_next_steps():
    notes = render().notes
    for expected in [
        f"kubectl -n {NAMESPACE} rollout status deployment/kubepim",  # is the operator ready?
        "examples/roles/",  # a PrivilegedRole
        "examples/eligibilities/",  # an Eligibility
        "kind: ActivationRequest",  # request with kubectl
        "kubectl create -f -",
        "--subresource=status --type=json",  # approve with a JSON-patch append
        '"op":"add","path":"/status/approvals/-"',
        "kubectl describe actreq/NAME",  # Events
        "namespace default",
        "kubepim::audit",  # the audit log
        "kubepim-policy-admin",
        "kubepim-requester",
        "kubepim-approver",
        "kubepim-reviewer",  # access reviews
        "The image is kubepim:0.1.0",  # what to do when the image cannot be pulled
        "ImagePullBackOff",
        "docker build -t REGISTRY/kubepim:0.1.0 . && docker push REGISTRY/kubepim:0.1.0",
        "--set image.repository=REGISTRY/kubepim",
    ]:
        assert expected in notes, f"NOTES.txt lacks {expected!r}:\n{notes}"
    assert "WARNING" not in notes


def test_notes_follow_the_values():
    assert "grep kubepim::audit" in render({"operator": {"logFormat": "text"}}).notes
    assert "admission.policies.enabled=false" in render({"admission": {"policies": {"enabled": False}}}).notes
    assert "spec.requester" in render(VALUE_SETS["webhook-off"]).notes
    assert "Standing-privilege prevention is on" in render(VALUE_SETS["prevention"]).notes
    notifications = render(VALUE_SETS["notifications"]).notes
    assert "Secret kubepim-notifications, key approvers" in notifications
    assert "rollout restart" in notifications
    observability = render(VALUE_SETS["observability"]).notes
    assert "PrometheusRule kubepim" in observability and "ConfigMap kubepim-dashboard" in observability
    pinned = render({"image": {"repository": "registry.example/kubepim", "digest": "sha256:" + "b" * 64}}).notes
    assert "The image is registry.example/kubepim@sha256:" + "b" * 64 in pinned
    out = render(VALUE_SETS["out-of-cluster"]).notes
    assert "--webhook-url https://127.0.0.1:8443" in out and "rollout status" not in out
    assert "ImagePullBackOff" not in out, "no image is pulled when no operator is deployed"
