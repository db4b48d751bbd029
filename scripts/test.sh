#!/usr/bin/env bash
# The test command (README): unit, reconciler, property, CLI, CRD and chart tests, and the
# end-to-end suites against a real control plane (etcd + kube-apiserver) whenever the binaries
# are there: KUBEBUILDER_ASSETS, or /opt/kubebuilder-assets holding etcd and kube-apiserver.
# Benchmarks never run here (`cargo bench` runs them).
set -euo pipefail
cd "$(dirname "$0")/.."

default_assets=/opt/kubebuilder-assets
if [ -z "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$default_assets/kube-apiserver" ] && [ -e "$default_assets/etcd" ]; then
  export KUBEBUILDER_ASSETS="$default_assets"
fi
if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  echo "end-to-end suites: against kube-apiserver and etcd from $KUBEBUILDER_ASSETS"
elif [ -z "${KUBEPIM_E2E_KUBECONFIG:-}" ]; then
  echo "SKIPPED end-to-end suites: no kube-apiserver/etcd (set KUBEBUILDER_ASSETS, or put them in $default_assets; see CONTRIBUTING.md)"
fi

# --lib --bins --tests, not --all-targets: that would run the benchmarks as tests.
cargo test --locked --lib --bins --tests
cargo test --locked --doc

if [ -d tests/chart ]; then
  if python3 -c 'import helm_python' 2>/dev/null; then
    python3 -m pytest -q tests/chart
  else
    echo "SKIPPED chart tests: python module helm_python missing (pip install -r tests/chart/requirements.txt)"
  fi
fi
