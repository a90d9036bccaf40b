"""lgc.search.latency: the one latency convention of the compression search and NAS."""
import numpy as np
import pytest

from lgc.backends.target import GFX803
from lgc.compiler import Options, backend_for, compile as compile_graph
from lgc.distributed.cost import CostModel, Worker
from lgc.errors import InputError
from lgc.search import nas
from lgc.search.latency import EFFICIENCY, LAUNCH_OVERHEAD_S, CostModelLatency, MeasuredLatency


def small_graph(batch=1, arch=((8, 3, 2),)):
    x = np.zeros((batch, 1, 8, 8), np.float32)
    return nas.inference_graph(lambda p, xs: nas.logits(arch, p, xs), nas.init_params(arch, 0), x, batch)


def test_cost_model_is_the_planners_derated_worker():
    """roofline of the gfx803 fusion plan at EFFICIENCY, plus LAUNCH_OVERHEAD_S per launch of
    the program compiled for gfx803, recomputed here from lgc.distributed.cost."""
    g = small_graph(16)
    est = CostModelLatency("gfx803").estimate(g)
    compiled = compile_graph(g, backend_for(GFX803), Options(2))
    roofline = CostModel(compiled.graph).node_times(Worker("w", GFX803, 0, 0.3, 0.0)).sum()
    assert (EFFICIENCY, LAUNCH_OVERHEAD_S) == (0.3, 10e-6)
    assert est.kernels == len(compiled.program.launches) > 0
    assert est.roofline_s == pytest.approx(roofline, rel=1e-12)
    assert est.seconds == pytest.approx(roofline + est.kernels * 10e-6, rel=1e-12)
    assert CostModelLatency("gfx803").estimate(g) == est                   # deterministic
    assert CostModelLatency("gfx803")(small_graph(64)) > est.seconds       # more work, same kernels


def test_both_searches_price_alike():
    """NAS and the compression CLI get the same class with the same constants."""
    import argparse

    from lgc.runtime.device import select_device
    from lgc.tools.search_cli import latency_objective
    args = argparse.Namespace(target="gfx803", opt_level=2)
    cli = latency_objective(args, select_device(None))
    g = small_graph()
    assert type(cli) is type(nas.latency_model("gfx803")) is CostModelLatency
    assert cli(g) == nas.latency_model("gfx803")(g)
    assert isinstance(nas.latency_model("device"), MeasuredLatency)


def test_latency_errors_are_one_line():
    with pytest.raises(InputError, match="no cost model for target 'gfx9000'.*gfx803"):
        CostModelLatency("gfx9000")
    with pytest.raises(InputError, match="needs a baseline"):
        MeasuredLatency().again([small_graph()])


def test_measured_relative_to_a_baseline():
    g = small_graph()
    m = MeasuredLatency(seconds=0.01)
    m.set_baseline(g, name="float32")
    assert "relative to float32" in m.describe()
    est = m.estimate(g)
    assert est.roofline_s is None and est.kernels > 0
    assert 0.2 < est.seconds / m.base[2] < 5                # the same graph: about the baseline
    (again,) = m.again([g])
    assert again > 0
