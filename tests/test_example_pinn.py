"""examples/pinn.py at reduced size: nested grad (second derivatives) under vmap and
jit(value_and_grad) train a heat-equation PINN on the device."""
import importlib.util
from pathlib import Path


def test_pinn_trains():
    path = Path(__file__).resolve().parents[1] / "examples" / "pinn.py"
    spec = importlib.util.spec_from_file_location("pinn_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(steps=2000, width=24, n_points=64, verbose=False)
    assert out["residual_after"] * 100 <= out["residual_before"], out
    assert out["max_error"] < 0.1, out
