"""The lgc command: each subcommand works, has --help, and fails with one line."""
import os

import numpy as np
import pytest

import lgc
from lgc.tools.cli import main

from .conftest import small_model_outputs


def test_compile_run_inspect(small_model_path, tmp_path, capsys):
    out = tmp_path / "m.lgc"
    assert main(["compile", str(small_model_path), "-o", str(out), "--input-shape", "x=3x4"]) == 0
    assert out.exists()
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(out), "--input", f"x={tmp_path / 'x.npy'}", "--output", str(tmp_path / "o.npz")]) == 0
    saved = np.load(tmp_path / "o.npz")
    y, z = small_model_outputs(x)
    np.testing.assert_allclose(saved["y"], y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(saved["z"], z, rtol=1e-5, atol=1e-6)
    assert main(["run", str(small_model_path), "--random"]) == 0
    assert main(["inspect", str(small_model_path)]) == 0
    text = capsys.readouterr().out
    assert "graph @" in text and "parameters:" in text and "FLOPs:" in text
    assert main(["inspect", str(out)]) == 0
    assert main(["devices"]) == 0
    assert "default" in capsys.readouterr().out


@pytest.mark.parametrize("cmd", ["compile", "run", "inspect", "devices", "demo", "keygen"])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "usage: lgc" in capsys.readouterr().out


def test_errors_are_one_line(tmp_path, capsys, small_model_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model at all")
    assert main(["compile", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lgc: error:") and "\n" not in err and "bad.onnx" in err
    assert main(["run", str(tmp_path / "missing.lgc")]) == 1
    assert "no such file" in capsys.readouterr().err
    os.mkfifo(tmp_path / "pipe.lgc")                     # refused at once, never opened
    assert main(["run", str(tmp_path / "pipe.lgc"), "--random"]) == 1
    assert capsys.readouterr().err == "lgc: error: pipe.lgc: not a regular file (an artifact is a .lgc zip file)\n"
    assert main(["run", str(small_model_path), "--input", "q=nothing.npy"]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_demo_checks_a_random_weight_copy(capsys):
    """`lgc demo` runs the light model with seeded random weights (the shipped ones are all
    0.02) and checks every output against onnxruntime; its fallback reference, lgc's NumPy op
    references, agrees with onnxruntime too."""
    from lgc.testing import onnxruntime_session, output_tolerances, random_light_model, scaled_error
    from lgc.tools.demo import numpy_reference
    assert main(["demo", "--model", "squeezenet", "--runs", "1", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "with seeded random weights" in out
    assert "check: every output against onnxruntime on a random input" in out
    assert out.count("max |lgc - onnxruntime| = ") == out.count("of its largest: matches") == 2   # softmax, logits
    model = random_light_model("squeezenet")
    types = lgc.Model(model).default_types()
    feeds = {k: np.random.default_rng(3).standard_normal(t.shape).astype(np.float32) for k, t in types.items()}
    tolerance = output_tolerances(model).values()
    got = numpy_reference(model, types, feeds)
    for g, w, tol in zip(got, onnxruntime_session(model).run(None, feeds), tolerance):
        assert scaled_error(g, w) <= tol
