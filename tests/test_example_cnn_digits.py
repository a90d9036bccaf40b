"""examples/cnn_digits.py at reduced size (20 epochs, 10 of fine-tuning, short timings): a CNN
trained with lgc, then compressed. The issue's targets hold at this size too: 50% structured
pruning plus fine-tuning within 2 points of float32, INT8 top-1 within 1 point with weights
4x smaller, FP16 weights 2x smaller at the same accuracy."""
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("sklearn")


@pytest.mark.slow
def test_cnn_digits_compresses():
    path = Path(__file__).resolve().parents[1] / "examples" / "cnn_digits.py"
    spec = importlib.util.spec_from_file_location("cnn_digits_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = mod.main(epochs=20, finetune_epochs=10, latency_runs=2, latency_batch=16, verbose=False)
    f32 = r["float32"]
    assert f32 >= 0.95 and abs(r["float32 (jit)"] - f32) < 1e-9
    assert r["prune 50%, no fine-tuning"] < r["prune 50% + ft"]
    assert r["prune 50% + ft"] >= f32 - 0.02
    assert r["prune 50% + ft params"] <= 0.3 * r["float32 params"]
    assert r["int8"] >= f32 - 0.01
    assert r["int8 weights"] * 4 <= r["float32 weights"]
    assert r["fp16"] >= f32 - 0.01 and r["fp16 weights"] * 2 == r["float32 weights"]
    assert r["svd 1/2 params"] < r["float32 params"]
