"""examples/mlp_digits.py at reduced size (15 epochs, 64 hidden units): jit(value_and_grad)
and Adam in lgc.numpy reach >= 95% held-out accuracy on the digits."""
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("sklearn")


def test_mlp_digits_trains():
    path = Path(__file__).resolve().parents[1] / "examples" / "mlp_digits.py"
    spec = importlib.util.spec_from_file_location("mlp_digits_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(epochs=15, hidden=64, verbose=False) >= 0.95
