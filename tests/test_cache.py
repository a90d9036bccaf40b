"""The program cache: a second compile of the same graph builds nothing (in memory, and from
disk in a "new process"), and a corrupt or refused disk entry is rebuilt without a crash."""
import numpy as np
import pytest

import lgc
from lgc.ir import dtypes
from lgc.ir.builder import GraphBuilder
from lgc.ir.graph import TensorType
from lgc.runtime import cache


def _graph(scale: float = 3.0):
    b = GraphBuilder("cache_test")
    x = b.input("x", TensorType(dtypes.by_name("f32"), (5,)))
    y = b.op("mul", [x, b.const(np.float32(scale))])
    return b.build([b.op("add", [y, x])], ["x"], ["y"])


def _check(exe, scale=3.0):
    x = np.arange(5, dtype=np.float32)
    np.testing.assert_allclose(exe(x), x * scale + x)


@pytest.fixture
def disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LGC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("LGC_CACHE_BINARIES", "1")  # PoCL stores no binaries by default
    cache.clear_memory()
    yield tmp_path
    cache.clear_memory()


def _delta(before):
    return {k: cache.counts[k] - before.get(k, 0) for k in ("build", "disk", "memory", "corrupt")}


def test_second_compile_builds_nothing(disk_cache):
    before = dict(cache.counts)
    _check(lgc.compile(_graph(3.5)), 3.5)
    assert _delta(before)["build"] == 1
    entries = list(disk_cache.glob("binaries/*/*.bin"))
    assert len(entries) == 1

    before = dict(cache.counts)
    _check(lgc.compile(_graph(3.5)), 3.5)           # same process: from memory
    assert _delta(before) == {"build": 0, "disk": 0, "memory": 1, "corrupt": 0}

    cache.clear_memory()                           # as a new process would
    before = dict(cache.counts)
    _check(lgc.compile(_graph(3.5)), 3.5)
    assert _delta(before) == {"build": 0, "disk": 1, "memory": 0, "corrupt": 0}


def test_loading_an_artifact_again_builds_nothing(disk_cache, tmp_path):
    path = tmp_path / "m.lgc"
    lgc.compile(_graph(4.5)).save(path)
    cache.clear_memory()
    before = dict(cache.counts)
    _check(lgc.load(path), 4.5)
    _check(lgc.load(path), 4.5)
    assert _delta(before)["build"] == 0


@pytest.mark.parametrize("damage", ["truncate", "flip", "payload"])
def test_corrupt_entry_is_rebuilt(disk_cache, damage):
    lgc.compile(_graph(5.5))
    (entry,) = disk_cache.glob("binaries/*/*.bin")
    data = bytearray(entry.read_bytes())
    if damage == "truncate":
        data = data[:len(data) // 2]
    elif damage == "flip":
        data[-10] ^= 0xFF
    else:  # a well-formed entry whose payload the driver cannot load
        import hashlib
        junk = b"not a binary" * 10
        data = bytearray(cache.MAGIC + hashlib.sha256(junk).digest() + junk)
    entry.write_bytes(bytes(data))
    cache.clear_memory()
    before = dict(cache.counts)
    _check(lgc.compile(_graph(5.5)), 5.5)
    d = _delta(before)
    assert d["build"] == 1 and d["corrupt"] == 1
    # rebuilt and stored again: the next "process" loads it
    cache.clear_memory()
    before = dict(cache.counts)
    _check(lgc.compile(_graph(5.5)), 5.5)
    assert _delta(before)["build"] == 0


def test_unwritable_cache_dir_still_compiles(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("LGC_CACHE_DIR", str(blocker / "sub"))  # a path under a file
    monkeypatch.setenv("LGC_CACHE_BINARIES", "1")
    cache.clear_memory()
    _check(lgc.compile(_graph(6.5)), 6.5)
    cache.clear_memory()


def test_keys_differ_by_source_options_and_device():
    dev = lgc.runtime.select_device()
    k = cache.program_key(dev, "src")
    assert k != cache.program_key(dev, "src2")
    assert k != cache.program_key(dev, "src", "-cl-fast-relaxed-math")
    assert k == cache.program_key(dev, "src")


# ---- compiled ONNX models (import, passes and lowering skipped on a warm compile) -----------

@pytest.fixture
def onnx_file(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.linspace(-1, 1, 24, dtype=np.float32).reshape(6, 4), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [w])
    path = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return str(path), numpy_helper.to_array(w)


def test_compiled_model_cache(disk_cache, onnx_file, monkeypatch):
    from lgc import compile_cache
    monkeypatch.setattr(compile_cache, "MIN_BYTES", 0)
    path, w = onnx_file
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    before = dict(cache.counts)
    np.testing.assert_allclose(lgc.Model(path)(x), x @ w, rtol=1e-5)
    assert cache.counts["compiled_saved"] - before.get("compiled_saved", 0) == 1
    (entry,) = disk_cache.glob("compiled/*/*.lgc")

    cache.clear_memory()
    before = dict(cache.counts)
    m = lgc.Model(path)
    np.testing.assert_allclose(m(x), x @ w, rtol=1e-5)
    assert cache.counts["compiled_hit"] - before.get("compiled_hit", 0) == 1
    assert _delta(before)["build"] == 0
    exe = m.executable(m.default_types())
    assert exe.graph is not None and "matmul" in exe.ir_text   # recomputed on demand

    entry.write_bytes(entry.read_bytes()[:100])                # corrupt: compiled again
    before = dict(cache.counts)
    np.testing.assert_allclose(lgc.Model(path)(x), x @ w, rtol=1e-5)
    assert cache.counts["compiled_bad"] - before.get("compiled_bad", 0) == 1
    assert cache.counts["compiled_saved"] - before.get("compiled_saved", 0) == 1

    monkeypatch.setenv("LGC_CACHE_COMPILED", "0")
    before = dict(cache.counts)
    np.testing.assert_allclose(lgc.Model(path)(x), x @ w, rtol=1e-5)
    assert cache.counts["compiled_hit"] == before.get("compiled_hit", 0)


def test_cli_compile_from_cache_saves_signed(disk_cache, onnx_file, monkeypatch, tmp_path):
    """`lgc compile --sign` of a model served from the compile cache (a LazyGraphExecutable,
    whose save once took no sign_key: TypeError) writes an artifact that loads with the key's
    public half and is refused with another key."""
    from lgc import compile_cache
    from lgc.errors import SignatureError
    from lgc.runtime.compile_cache import LazyGraphExecutable
    from lgc.tools.cli import main
    monkeypatch.setattr(compile_cache, "MIN_BYTES", 0)
    path, w = onnx_file
    key, other = tmp_path / "k.pem", tmp_path / "o.pem"
    assert main(["keygen", str(key)]) == 0 and main(["keygen", str(other)]) == 0
    assert main(["compile", path, "--sign", str(key), "-o", str(tmp_path / "cold.lgc")]) == 0
    cache.clear_memory()
    m = lgc.Model(path)
    assert isinstance(m.executable(m.default_types()), LazyGraphExecutable)   # from the cache
    cache.clear_memory()
    before = dict(cache.counts)
    out = tmp_path / "warm.lgc"
    assert main(["compile", path, "--sign", str(key), "-o", str(out)]) == 0
    assert cache.counts["compiled_hit"] - before.get("compiled_hit", 0) == 1
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    got = lgc.load(out, trusted_keys=tmp_path / "k.pub.pem")(x)
    np.testing.assert_allclose(got, x @ w, rtol=1e-5)
    with pytest.raises(SignatureError):
        lgc.load(out, trusted_keys=tmp_path / "o.pub.pem")


def test_prune_removes_least_recently_used(tmp_path):
    import os
    for i, name in enumerate(["old", "mid", "new"]):
        p = tmp_path / "a" / f"{name}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x" * 100)
        os.utime(p, (1000 + i, 1000 + i))
    cache.touch(tmp_path / "a" / "old.bin")        # used just now: kept
    assert cache.prune(tmp_path, 250) == 1
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["new.bin", "old.bin"]
    assert cache.prune(tmp_path, 1000) == 0
