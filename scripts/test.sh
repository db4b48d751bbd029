#!/usr/bin/env bash
# The test command (README): unit, reconciler, CLI, CRD and chart tests; the end-to-end suites run
# against a real control plane when KUBEBUILDER_ASSETS names a directory with etcd and
# kube-apiserver, and say once that they are skipped otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --locked --all-targets
cargo test --locked --doc

if [ -d tests/chart ]; then
  if python3 -c 'import helm_python' 2>/dev/null; then
    python3 -m pytest -q tests/chart
  else
    echo "SKIPPED chart tests: python module helm_python missing (pip install -r tests/chart/requirements.txt)"
  fi
fi
