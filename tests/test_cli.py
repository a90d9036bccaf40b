"""The lgc command: each subcommand works, has --help, and fails with one line."""
import os

import numpy as np
import pytest

from lgc.tools.cli import main


def test_compile_run_inspect(small_model_path, tmp_path, capsys):
    out = tmp_path / "m.lgc"
    assert main(["compile", str(small_model_path), "-o", str(out), "--input-shape", "x=3x4"]) == 0
    assert out.exists()
    np.save(tmp_path / "x.npy", np.ones((3, 4), np.float32))
    assert main(["run", str(out), "--input", f"x={tmp_path / 'x.npy'}", "--output", str(tmp_path / "o.npz")]) == 0
    saved = np.load(tmp_path / "o.npz")
    assert saved["y"].shape == (3, 4)
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
