"""Refresh the vendored schemas of the CRD-defined kinds the chart renders.

The chart tests validate ServiceMonitor, PrometheusRule, Certificate and Issuer objects against the
openAPIV3Schema of the real CustomResourceDefinitions (prometheus-operator and cert-manager, both
Apache-2.0), stored here as JSON without descriptions so that the tests run offline. Issuer's
acme, vault and venafi blocks are cut to `{"type": "object"}` (the chart only renders selfSigned).

    python3 tests/chart/schemas/vendor.py CRD.yaml [CRD.yaml ...]

writes one <group>_<plural>.json per CRD (the storage version) next to this file, with the source's
version in "x-vendored-from". Sources (recorded in README.md): prometheus-operator
example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,prometheusrules}.yaml;
cert-manager deploy/crds/cert-manager.io_{certificates,issuers}.yaml.
"""

import json
import pathlib
import sys

import yaml

HERE = pathlib.Path(__file__).resolve().parent
CUT = {"issuers.cert-manager.io": ["acme", "vault", "venafi"]}


def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def main(paths):
    for path in paths:
        crd = yaml.safe_load(pathlib.Path(path).read_text())
        name = crd["metadata"]["name"]
        version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
        schema = strip(version["schema"]["openAPIV3Schema"])
        for block in CUT.get(name, []):
            schema["properties"]["spec"]["properties"][block] = {"type": "object"}
        annotations = crd["metadata"].get("annotations", {})
        schema["x-vendored-from"] = {
            "crd": name,
            "apiVersion": f"{crd['spec']['group']}/{version['name']}",
            "kind": crd["spec"]["names"]["kind"],
            "annotations": annotations,
        }
        plural = crd["spec"]["names"]["plural"]
        out = HERE / f"{crd['spec']['group']}_{plural}.json"
        out.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        print(f"{out.name}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
