"""Artifacts: round trip, and refusal of truncated, corrupted, tampered or unknown files
(tests/test_artifact_fuzz.py tries 100+ hostile files; tests/test_artifact_signing.py signatures)."""
import hashlib
import json
import os
import zipfile

import numpy as np
import pytest

import lgc
from lgc.errors import ArtifactError
from lgc.ir import dtypes
from lgc.ir.graph import TensorType
from lgc.runtime.artifact import write_artifact

from .conftest import small_model_outputs


@pytest.fixture
def artifact(small_model_path, tmp_path):
    exe = lgc.compile(small_model_path).executable({"x": TensorType(dtypes.f32, (2, 4))})
    path = tmp_path / "m.lgc"
    exe.save(path)
    return path


def _rewrite(src, dst, change, redigest=False):
    """Copy an artifact with its members changed; `redigest`: digest.json recomputed to match
    (by lgc's writer), as someone who edits an artifact on purpose would."""
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    change(members)
    if redigest:
        write_artifact(dst, {k: members[k] for k in ("manifest.json", "ir.txt", "kernels.cl", "weights.bin")})
        return
    with zipfile.ZipFile(dst, "w") as z:
        for n, d in members.items():
            z.writestr(n, d)


def _manifest_edit(change):
    """A _rewrite change that applies change(manifest dict) to manifest.json."""
    def edit(members):
        man = json.loads(members["manifest.json"])
        change(man)
        members["manifest.json"] = json.dumps(man, indent=1).encode()
    return edit


def test_manifest_describes_the_model(artifact):
    with zipfile.ZipFile(artifact) as z:
        m = json.loads(z.read("manifest.json"))
        assert z.namelist() == ["manifest.json", "ir.txt", "kernels.cl", "weights.bin", "digest.json"]
        digest = json.loads(z.read("digest.json"))
        members = {n: z.read(n) for n in z.namelist()}
    assert m["format"] == "lgc-artifact" and m["format_version"] == 4
    assert [i["name"] for i in m["inputs"]] == ["x"]
    assert [o["name"] for o in m["outputs"]] == ["y", "z"]
    assert m["inputs"][0]["shape"] == [2, 4]
    # one table covers every member, the manifest included
    assert [(e["name"], e["size"], e["sha256"]) for e in digest["members"]] == [
        (n, len(members[n]), hashlib.sha256(members[n]).hexdigest())
        for n in ("manifest.json", "ir.txt", "kernels.cl", "weights.bin")]
    assert "signature" not in digest


def test_truncated(artifact, tmp_path):
    bad = tmp_path / "t.lgc"
    bad.write_bytes(artifact.read_bytes()[:200])
    with pytest.raises(ArtifactError, match="truncated or corrupted|no zip end record"):
        lgc.load(bad)


def test_not_an_artifact(tmp_path):
    bad = tmp_path / "n.lgc"
    bad.write_bytes(b"hello world" * 100)
    with pytest.raises(ArtifactError, match="no zip end record"):
        lgc.load(bad)


def test_tampered_manifest(artifact, tmp_path):
    """The manifest is covered like the weights: a launch grid edited alone is refused."""
    bad = tmp_path / "edited.lgc"

    def scale(man):
        man["launches"][0]["global"] = [g * 4 for g in man["launches"][0]["global"]]
    grow = _manifest_edit(scale)
    _rewrite(artifact, bad, grow)
    with pytest.raises(ArtifactError, match="manifest.json"):
        lgc.load(bad)
    # with the digest recomputed, the table check refuses it: the kernel would write past
    # the end of its output buffer
    _rewrite(artifact, bad, grow, redigest=True)
    with pytest.raises(ArtifactError, match=r"launches\[0\]\.global \[[\d, ]+\] indexes .* past the 32 bytes"):
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


def test_old_format_is_refused_with_a_way_out(artifact, tmp_path):
    bad = tmp_path / "old.lgc"

    def downgrade(m):
        _manifest_edit(lambda man: man.update(format_version=2))(m)
        del m["digest.json"]
    _rewrite(artifact, bad, downgrade)
    with pytest.raises(ArtifactError, match="format version 2 from an older lgc.*recompile it"):
        lgc.load(bad)


def test_tampered_kernels(artifact, tmp_path):
    bad = tmp_path / "k.lgc"
    _rewrite(artifact, bad, lambda m: m.update({"kernels.cl": m["kernels.cl"].replace(b"x_", b"y_")}))
    with pytest.raises(ArtifactError, match="checksum mismatch in kernels.cl"):
        lgc.load(bad)


def test_unknown_format_version(artifact, tmp_path):
    bad = tmp_path / "v.lgc"
    _rewrite(artifact, bad, _manifest_edit(lambda man: man.update(format_version=99)), redigest=True)
    with pytest.raises(ArtifactError, match="unknown artifact format version 99"):
        lgc.load(bad)


def test_inconsistent_manifest(artifact, tmp_path):
    bad = tmp_path / "s.lgc"
    _rewrite(artifact, bad, _manifest_edit(lambda man: man["inputs"][0].update(shape=[2000, 4000])),
             redigest=True)
    with pytest.raises(ArtifactError, match=r"manifest field inputs\[0\]\.shape \[2000, 4000\] .* does not fit"):
        lgc.load(bad)


def test_fifo_does_not_block(tmp_path):
    fifo = tmp_path / "pipe.lgc"
    os.mkfifo(fifo)
    with pytest.raises(ArtifactError, match="pipe.lgc: not a regular file"):
        lgc.load(fifo)


def test_all_zero_weights_are_stored_not_refused(tmp_path):
    """Members that deflate beyond the reader's zip-bomb ratio are written stored."""
    g = lgc.make_ir(lambda x: x + np.zeros((1024, 512), np.float32))(np.ones(512, np.float32))
    exe = lgc.runtime.Executable.from_graph(g)
    exe.save(tmp_path / "z.lgc")
    with zipfile.ZipFile(tmp_path / "z.lgc") as z:
        assert z.getinfo("weights.bin").compress_type == zipfile.ZIP_STORED
        assert z.getinfo("kernels.cl").compress_type == zipfile.ZIP_DEFLATED
    x = np.arange(512, dtype=np.float32)
    np.testing.assert_array_equal(lgc.load(tmp_path / "z.lgc")(x), np.broadcast_to(x, (1024, 512)))


def test_loaded_artifact_runs(artifact):
    exe = lgc.load(artifact)
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    y, z = exe(x)
    want_y, want_z = small_model_outputs(x)
    np.testing.assert_allclose(y, want_y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(z, want_z, rtol=1e-5, atol=1e-6)
