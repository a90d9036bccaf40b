import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

warnings.filterwarnings("ignore", category=DeprecationWarning)


# ---- no skips --------------------------------------------------------------------------------
# A skipped test checks nothing, so this suite has none: a test that cannot run (a package or
# tool missing: scripts/install.sh --test installs them all) fails, or at collection errors,
# with the reason, in CI and everywhere else. The one exception is a test marked
# @pytest.mark.device("cpu") (or "gpu"): it checks one kind of device and is skipped, saying
# so, where the run's default device (LGC_DEVICE) is of another kind. xfail is unaffected.

def pytest_configure(config):
    config.addinivalue_line("markers", "device(kind): checks only a 'cpu' or 'gpu' device; "
                                       "skipped where the default device is of another kind")


def _device_kind() -> str:
    from lgc.runtime import select_device
    return select_device(None).kind


def _other_device(item) -> str:
    """The kind of device `item` needs, where this run's is another; else ''."""
    mark = item.get_closest_marker("device")
    return mark.args[0] if mark and mark.args[0] != _device_kind() else ""


def pytest_runtest_setup(item):
    kind = _other_device(item)
    if kind:
        pytest.skip(f"checks a {kind} device; this run's default device is a {_device_kind()}")


def _as_failure(rep, when: str) -> None:
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    rep.outcome = "failed"
    rep.longrepr = f"skipped {when}, and this suite allows no skips (tests/conftest.py): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    rep = (yield).get_result()
    if rep.skipped and not hasattr(rep, "wasxfail") and not _other_device(item):
        _as_failure(rep, f"in {rep.when}")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    rep = (yield).get_result()
    if rep.skipped:
        _as_failure(rep, "at collection")


def make_small_model(path=None, batch="N"):
    """y = relu(x * w + b), z = exp(y) - 1, with a symbolic batch dimension."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal(4).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    nodes = [
        helper.make_node("Mul", ["x", "w"], ["xw"], name="scale"),
        helper.make_node("Add", ["xw", "b"], ["pre"], name="shift"),
        helper.make_node("Relu", ["pre"], ["y"], name="act"),
        helper.make_node("Exp", ["y"], ["ey"], name="exp"),
        helper.make_node("Sub", ["ey", "one"], ["z"], name="minus_one"),
    ]
    graph = helper.make_graph(
        nodes, "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [batch, 4])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
         numpy_helper.from_array(np.array(1, np.float32), "one")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    if path:
        onnx.save(model, str(path))
    return model


def small_model_outputs(x):
    """The independent reference of make_small_model: (y, z) in float64 from its weights."""
    w = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in make_small_model().graph.initializer}
    y = np.maximum(np.asarray(x, np.float64) * w["w"] + w["b"], 0)
    return y, np.exp(y) - 1


@pytest.fixture
def small_model_path(tmp_path):
    p = tmp_path / "small.onnx"
    make_small_model(p)
    return p
