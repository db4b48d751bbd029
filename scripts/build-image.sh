#!/usr/bin/env bash
# Builds the kubepim image without a base image, a registry or a daemon: a statically linked
# release binary, the system CA bundle and a non-root /etc/passwd, assembled by
# scripts/oci_image.py into an OCI layout and a `docker load`-able tarball.
#
#   scripts/build-image.sh [OUT_DIR]     # default target/image
#   docker load -i target/image/kubepim.tar && docker tag kubepim:0.1.0 REGISTRY/kubepim:0.1.0
#
# The Dockerfile builds the same thing where registries are reachable.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-target/image}
triple=x86_64-unknown-linux-gnu
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

if [ ! -f "$ca_bundle" ]; then
  echo "error: $ca_bundle missing (Debian: apt-get install ca-certificates, or set CA_BUNDLE)" >&2
  exit 2
fi

# crt-static links glibc statically; the TLS stack is rustls + ring, so nothing else is dynamic.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --locked --release --target "$triple" --bin kubepim
binary=target/$triple/release/kubepim

# An image whose binary needs a loader it does not contain would fail only at pod start.
if ! file "$binary" | grep -Eq 'statically linked|static-pie linked'; then
  echo "error: $binary is not statically linked: $(file -b "$binary")" >&2
  exit 1
fi

mkdir -p "$out"
python3 scripts/oci_image.py --binary "$binary" --ca-bundle "$ca_bundle" --version "$version" \
  --tag "kubepim:$version" --layout "$out/oci" --tarball "$out/kubepim.tar"
echo "image: $out/oci (OCI layout), $out/kubepim.tar (docker load -i)"
