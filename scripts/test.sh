#!/usr/bin/env bash
# The test command (README): unit, reconciler, CLI, CRD and chart tests, and the end-to-end suites
# (tests/e2e_*.rs) against a real control plane when KUBEBUILDER_ASSETS names a directory with
# etcd and kube-apiserver (or /opt/kubebuilder-assets has them); one line says when they are
# skipped. Benchmarks (benches/) never run here: `cargo bench --bench lifecycle`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${KUBEBUILDER_ASSETS:-}" ] && [ -x /opt/kubebuilder-assets/etcd ] &&
  [ -x /opt/kubebuilder-assets/kube-apiserver ]; then
  export KUBEBUILDER_ASSETS=/opt/kubebuilder-assets
fi
e2e=()
for suite in tests/e2e_*.rs; do
  e2e+=(--test "$(basename "$suite" .rs)")
done
if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  for bin in etcd kube-apiserver; do
    if [ ! -x "$KUBEBUILDER_ASSETS/$bin" ]; then
      echo "error: KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $bin" >&2
      exit 2
    fi
  done
fi

# Not --all-targets: that builds and runs the harness=false benchmark too (`test = false` does
# not exclude it there). The e2e suites are integration tests; they are run on their own below.
unit=()
for suite in tests/*.rs; do
  case $(basename "$suite") in e2e_*) ;; *) unit+=(--test "$(basename "$suite" .rs)") ;; esac
done
cargo test --locked --lib --bins "${unit[@]}"
cargo test --locked --doc

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  # Tests that want an isolated cluster start their own etcd and kube-apiserver; on a 2-core
  # machine more than two at once starve each other into timeouts. E2E_THREADS overrides.
  echo "e2e suites against etcd + kube-apiserver from $KUBEBUILDER_ASSETS (${E2E_THREADS:-2} test threads)"
  cargo test --locked "${e2e[@]}" -- --test-threads "${E2E_THREADS:-2}"
else
  echo "SKIPPED e2e suites (tests/e2e_*.rs): KUBEBUILDER_ASSETS unset and /opt/kubebuilder-assets has no etcd and kube-apiserver (see CONTRIBUTING.md)"
fi

if [ -d tests/chart ]; then
  if python3 -c 'import helm_python' 2>/dev/null; then
    python3 -m pytest -q tests/chart
  else
    echo "SKIPPED chart tests: python module helm_python missing (pip install -r tests/chart/requirements.txt)"
  fi
fi
