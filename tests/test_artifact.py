"""Artifacts: round trip, and refusal of truncated, corrupted, tampered or unknown files."""
import json
import zipfile

import numpy as np
import pytest

import lgc
from lgc.errors import ArtifactError
from lgc.ir import dtypes
from lgc.ir.graph import TensorType


@pytest.fixture
def artifact(small_model_path, tmp_path):
    exe = lgc.compile(small_model_path).executable({"x": TensorType(dtypes.f32, (2, 4))})
    path = tmp_path / "m.lgc"
    exe.save(path)
    return path


def _rewrite(src, dst, change):
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    change(members)
    with zipfile.ZipFile(dst, "w") as z:
        for n, d in members.items():
            z.writestr(n, d)


def test_manifest_describes_the_model(artifact):
    with zipfile.ZipFile(artifact) as z:
        m = json.loads(z.read("manifest.json"))
        assert set(z.namelist()) == {"manifest.json", "ir.txt", "kernels.cl", "weights.bin"}
    assert m["format"] == "lgc-artifact" and m["format_version"] == 1
    assert [i["name"] for i in m["inputs"]] == ["x"]
    assert [o["name"] for o in m["outputs"]] == ["y", "z"]
    assert m["inputs"][0]["shape"] == [2, 4]


def test_truncated(artifact, tmp_path):
    bad = tmp_path / "t.lgc"
    bad.write_bytes(artifact.read_bytes()[:200])
    with pytest.raises(ArtifactError, match="truncated or corrupted"):
        lgc.load(bad)


def test_not_an_artifact(tmp_path):
    bad = tmp_path / "n.lgc"
    bad.write_bytes(b"hello world" * 100)
    with pytest.raises(ArtifactError, match="truncated or corrupted"):
        lgc.load(bad)


def test_tampered_weights(artifact, tmp_path):
    bad = tmp_path / "w.lgc"

    def flip(m):
        w = bytearray(m["weights.bin"])
        w[0] ^= 0xFF
        m["weights.bin"] = bytes(w)
    _rewrite(artifact, bad, flip)
    with pytest.raises(ArtifactError, match="checksum mismatch in weights.bin"):
        lgc.load(bad)


def test_tampered_kernels(artifact, tmp_path):
    bad = tmp_path / "k.lgc"
    _rewrite(artifact, bad, lambda m: m.update({"kernels.cl": m["kernels.cl"] + b"\n// evil"}))
    with pytest.raises(ArtifactError, match="checksum mismatch in kernels.cl"):
        lgc.load(bad)


def test_unknown_format_version(artifact, tmp_path):
    bad = tmp_path / "v.lgc"

    def bump(m):
        man = json.loads(m["manifest.json"])
        man["format_version"] = 99
        m["manifest.json"] = json.dumps(man).encode()
    _rewrite(artifact, bad, bump)
    with pytest.raises(ArtifactError, match="unknown artifact format version 99"):
        lgc.load(bad)


def test_inconsistent_manifest(artifact, tmp_path):
    bad = tmp_path / "s.lgc"

    def grow(m):
        man = json.loads(m["manifest.json"])
        man["inputs"][0]["shape"] = [2000, 4000]
        m["manifest.json"] = json.dumps(man).encode()
    _rewrite(artifact, bad, grow)
    with pytest.raises(ArtifactError, match="does not fit its buffer"):
        lgc.load(bad)


def test_loaded_artifact_runs(artifact):
    exe = lgc.load(artifact)
    y, z = exe(np.ones((2, 4), np.float32))
    assert np.all(y >= 0)
