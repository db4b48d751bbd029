#!/usr/bin/env python3
"""Assembles the kubepim container image without a base image or a container daemon.

The image is one layer: the statically linked `kubepim` binary, the CA bundle (notification
sinks are reached over HTTPS with the system roots), and /etc/passwd and /etc/group naming the
non-root user 65532 (`nonroot`, as in distroless). The output is an OCI image layout directory
and a tarball that `docker load` accepts (it carries both `index.json` and docker's
`manifest.json`).

Standard library only, and reproducible: fixed mtimes, owners and file order, so the same inputs
give the same digests.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

UID = 65532
# SOURCE_DATE_EPOCH semantics without reading the clock: 2000-01-01, like many reproducible builds.
EPOCH = 946684800
PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = "root:x:0:\nnonroot:x:65532:\n"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _entry(name: str, kind: bytes, mode: int, size: int = 0, uid: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.uid = info.gid = uid
    info.uname = info.gname = ""
    info.mtime = EPOCH
    return info


def layer_tar(binary: bytes, ca_bundle: bytes) -> bytes:
    """The uncompressed layer (its sha256 is the diff ID in the config)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ["etc", "etc/ssl", "etc/ssl/certs", "home", "tmp"]:
            mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(_entry(directory + "/", tarfile.DIRTYPE, mode))
        # The user's home belongs to the user; nothing else in the image is writable by it.
        tar.addfile(_entry("home/nonroot/", tarfile.DIRTYPE, 0o700, uid=UID))
        files = [
            ("etc/group", GROUP.encode(), 0o644),
            ("etc/passwd", PASSWD.encode(), 0o644),
            ("etc/ssl/certs/ca-certificates.crt", ca_bundle, 0o644),
            ("kubepim", binary, 0o755),
        ]
        for name, data, mode in files:
            tar.addfile(_entry(name, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))
    return buf.getvalue()


def _blob(out: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = out / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def build(binary: Path, ca_bundle: Path, version: str, source: str, tag: str, out: Path) -> dict:
    """Writes the OCI layout to `out`; returns a summary (digests and sizes)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    layer = layer_tar(binary.read_bytes(), ca_bundle.read_bytes())
    # mtime=0 in the gzip header keeps the compressed digest reproducible.
    compressed = gzip.compress(layer, compresslevel=9, mtime=0)
    layer_digest = _blob(out, compressed)
    labels = {
        "org.opencontainers.image.title": "kubepim",
        "org.opencontainers.image.description": "Privileged Identity Management for Kubernetes: "
        "eligible, approved, time-limited RBAC bindings",
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.licenses": "Apache-2.0",
    }
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": f"{UID}:{UID}",
            "Entrypoint": ["/kubepim"],
            "Cmd": ["run"],
            "Env": ["SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
            "WorkingDir": "/",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
        "history": [{"created_by": "scripts/oci_image.py: kubepim, CA bundle, /etc/passwd"}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_digest = _blob(out, config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": "sha256:" + config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": "sha256:" + layer_digest, "size": len(compressed)}],
        "annotations": labels,
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    manifest_digest = _blob(out, manifest_bytes)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": "sha256:" + manifest_digest,
                "size": len(manifest_bytes),
                "annotations": {"org.opencontainers.image.ref.name": tag.rsplit(":", 1)[-1], "io.containerd.image.name": tag},
            }
        ],
    }
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}\n')
    # docker load (before the containerd image store) reads manifest.json, not index.json.
    docker_manifest = [
        {
            "Config": f"blobs/sha256/{config_digest}",
            "RepoTags": [tag],
            "Layers": [f"blobs/sha256/{layer_digest}"],
        }
    ]
    (out / "manifest.json").write_text(json.dumps(docker_manifest, indent=2) + "\n")
    return {
        "manifest": "sha256:" + manifest_digest,
        "config": "sha256:" + config_digest,
        "layer": "sha256:" + layer_digest,
        "layer_bytes": len(compressed),
        "uncompressed_bytes": len(layer),
    }


def write_tarball(layout: Path, tarball: Path) -> None:
    """The layout as one tar (for `docker load -i`), entries in a fixed order."""
    with tarfile.open(tarball, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(layout.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(layout)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = EPOCH
            if path.is_file():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, required=True, help="statically linked kubepim")
    parser.add_argument("--ca-bundle", type=Path, default=Path("/etc/ssl/certs/ca-certificates.crt"))
    parser.add_argument("--version", required=True)
    parser.add_argument("--source", default="https://github.com/kubepim/kubepim")
    parser.add_argument("--tag", required=True, help="e.g. kubepim:0.1.0")
    parser.add_argument("--layout", type=Path, required=True, help="OCI layout directory to write")
    parser.add_argument("--tarball", type=Path, help="also write this docker-loadable tar")
    args = parser.parse_args(argv)
    for path in [args.binary, args.ca_bundle]:
        if not path.is_file():
            print(f"error: {path}: no such file", file=sys.stderr)
            return 2
    summary = build(args.binary, args.ca_bundle, args.version, args.source, args.tag, args.layout)
    if args.tarball:
        write_tarball(args.layout, args.tarball)
        summary["tarball_bytes"] = args.tarball.stat().st_size
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
