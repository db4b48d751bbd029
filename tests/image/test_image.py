"""The container image built by scripts/build-image.sh: config, contents, and that the binary in
the layer runs on its own.

KUBEPIM_IMAGE names the OCI layout directory (default target/image/oci). A missing image fails:
CI builds it before running these tests, so skipping would hide a broken build.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = Path(os.environ.get("KUBEPIM_IMAGE", ROOT / "target" / "image" / "oci"))
TARBALL = LAYOUT.parent / "kubepim.tar"
VERSION = next(
    line.split('"')[1] for line in (ROOT / "Cargo.toml").read_text().splitlines() if line.startswith("version = ")
)


def blob(digest: str) -> bytes:
    algorithm, hex_digest = digest.split(":", 1)
    assert algorithm == "sha256"
    return (LAYOUT / "blobs" / "sha256" / hex_digest).read_bytes()


@pytest.fixture(scope="module")
def manifest() -> dict:
    assert (LAYOUT / "index.json").is_file(), f"no image at {LAYOUT}: run scripts/build-image.sh"
    index = json.loads((LAYOUT / "index.json").read_text())
    assert len(index["manifests"]) == 1
    return json.loads(blob(index["manifests"][0]["digest"]))


@pytest.fixture(scope="module")
def config(manifest) -> dict:
    return json.loads(blob(manifest["config"]["digest"]))


@pytest.fixture(scope="module")
def layer(manifest, config) -> tarfile.TarFile:
    (descriptor,) = manifest["layers"]
    compressed = blob(descriptor["digest"])
    raw = gzip.decompress(compressed)
    # A diff ID that does not match the layer makes runtimes refuse the image.
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(raw).hexdigest()]
    print(f"\nimage layer: {len(compressed) / 1e6:.1f} MB compressed, {len(raw) / 1e6:.1f} MB uncompressed")
    return tarfile.open(fileobj=io.BytesIO(raw))


def test_blobs_match_their_digests(manifest):
    for path in (LAYOUT / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name


def test_config_runs_kubepim_as_non_root(config):
    c = config["config"]
    assert c["User"] == "65532:65532"
    assert c["Entrypoint"] == ["/kubepim"]
    assert c["Cmd"] == ["run"]
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    labels = c["Labels"]
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.title"] == "kubepim"
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.description"]


def test_layer_holds_binary_ca_bundle_and_user(layer):
    members = {m.name.rstrip("/"): m for m in layer.getmembers()}
    binary = members["kubepim"]
    assert binary.isfile() and binary.mode & 0o111 and binary.uid == 0, "root-owned, not writable by the user"
    assert not binary.mode & 0o022
    ca = layer.extractfile("etc/ssl/certs/ca-certificates.crt").read()
    assert ca.count(b"-----BEGIN CERTIFICATE-----") > 50, "a CA bundle, not a placeholder"
    passwd = layer.extractfile("etc/passwd").read().decode()
    assert "nonroot:x:65532:65532:" in passwd
    assert "nonroot:x:65532:" in layer.extractfile("etc/group").read().decode()
    assert not any(name.startswith(("bin", "usr", "lib")) for name in members), "no shell, no libraries"


def test_binary_in_the_layer_runs_alone(layer, tmp_path):
    """Extracted into an empty directory, the binary runs: it needs no loader or library."""
    (tmp_path / "kubepim").write_bytes(layer.extractfile("kubepim").read())
    (tmp_path / "kubepim").chmod(0o755)
    info = subprocess.run(["file", "-b", tmp_path / "kubepim"], capture_output=True, text=True, check=True).stdout
    assert "statically linked" in info or "static-pie linked" in info, info
    out = subprocess.run([tmp_path / "kubepim", "--version"], capture_output=True, text=True, env={}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"kubepim {VERSION}"
    crds = subprocess.run([tmp_path / "kubepim", "crds"], capture_output=True, text=True, env={}, cwd=tmp_path)
    assert crds.returncode == 0 and "kind: CustomResourceDefinition" in crds.stdout


def test_tarball_is_docker_loadable_layout():
    with tarfile.open(TARBALL) as tar:
        names = set(tar.getnames())
        docker = json.loads(tar.extractfile("manifest.json").read())
    assert {"index.json", "oci-layout", "manifest.json"} <= names
    assert docker[0]["RepoTags"] == [f"kubepim:{VERSION}"]
    assert all(layer in names for layer in docker[0]["Layers"]) and docker[0]["Config"] in names
    print(f"\nimage tarball: {TARBALL.stat().st_size / 1e6:.1f} MB")


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


def test_docker_load():
    if not docker_answers():
        pytest.skip("docker load: no docker daemon answers")
    out = subprocess.run(["docker", "load", "-i", TARBALL], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    inspect = subprocess.run(
        ["docker", "image", "inspect", f"kubepim:{VERSION}"], capture_output=True, text=True, check=True
    )
    assert json.loads(inspect.stdout)[0]["Config"]["User"] == "65532:65532"
