"""The CRDs the chart installs are crds/kubepim.io.yaml (the single source), kept on uninstall."""

import yaml

from conftest import CHART, REPO, VALUE_SETS, render

SOURCE = REPO / "crds" / "kubepim.io.yaml"
COPY = CHART / "files" / "crds" / "kubepim.io.yaml"
REFRESH = (
    "refresh it with `KUBEPIM_UPDATE_CRDS=1 cargo test --test crds` "
    f"(or `cp {SOURCE.relative_to(REPO)} {COPY.relative_to(REPO)}`) and commit both"
)
KEEP = "helm.sh/resource-policy"


def source_crds():
    return [d for d in yaml.safe_load_all(SOURCE.read_text()) if d]


def test_chart_copy_is_identical_to_crds_dir():
    assert COPY.exists(), f"{COPY.relative_to(REPO)} is missing; {REFRESH}"
    source, copy = SOURCE.read_text(), COPY.read_text()
    if source != copy:
        first = next(
            (i for i, (a, b) in enumerate(zip(source.splitlines(), copy.splitlines()), 1) if a != b),
            min(len(source.splitlines()), len(copy.splitlines())) + 1,
        )
        raise AssertionError(
            f"{COPY.relative_to(REPO)} differs from {SOURCE.relative_to(REPO)} (first at line {first}); {REFRESH}"
        )


def without_chart_metadata(crd):
    crd = yaml.safe_load(yaml.safe_dump(dict(crd)))
    meta = crd["metadata"]
    meta.pop("labels", None)
    annotations = meta.pop("annotations", {})
    annotations.pop(KEEP, None)
    if annotations:
        meta["annotations"] = annotations
    return crd


def test_rendered_crds_are_the_source_crds():
    rendered = render().kinds("CustomResourceDefinition")
    assert [c.name for c in rendered] == [c["metadata"]["name"] for c in source_crds()]
    for crd, source in zip(rendered, source_crds()):
        assert crd.template == "templates/crds.yaml"
        assert without_chart_metadata(crd) == source, f"{crd.name} is not what crds/ says"
        assert crd["spec"]["scope"] == "Cluster"


def test_crds_are_kept_on_uninstall_by_default():
    for crd in render().kinds("CustomResourceDefinition"):
        assert crd["metadata"]["annotations"][KEEP] == "keep", crd.name
        assert crd["metadata"]["labels"]["app.kubernetes.io/name"] == "kubepim"


def test_crds_keep_false():
    for crd in render(VALUE_SETS["crds-not-kept"]).kinds("CustomResourceDefinition"):
        assert KEEP not in crd["metadata"].get("annotations", {}), crd.name


def test_crds_install_false():
    r = render(VALUE_SETS["no-crds"])
    assert not r.kinds("CustomResourceDefinition")
    assert "crds.install=false" in r.notes
    # Everything else is still there.
    assert r.kinds("Deployment") and r.kinds("ClusterRole")


def test_no_helm_crds_folder():
    """Helm would install a chart crds/ folder ungated and never upgrade it."""
    assert not (CHART / "crds").exists()
