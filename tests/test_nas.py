"""lgc.search.nas at reduced size: the space's operators, the network against a torch reference,
training, both latency sources, and examples/nas_digits.py over a 4-architecture space (1 epoch,
3 candidates): the same seed repeats the search exactly and the front is non-dominated."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import lgc
from lgc.errors import InputError
from lgc.runtime import Executable
from lgc.search import nas
from lgc.search.nsga2 import dominates

pytest.importorskip("sklearn")

TINY = nas.Space(depths=(1,), widths=(4, 8), kernels=(3,), expansions=(1, 2))


def test_space_operators_stay_inside_and_are_seeded():
    space = nas.Space()
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(50)]
    for a, b in zip(archs, archs[1:]):
        assert space.check(space.mutate(a, rng)) is not None
        assert space.check(space.crossover(a, b, rng)) is not None
        assert hash(a) == hash(tuple(nas.Block(*blk) for blk in a))
    again = np.random.default_rng(0)
    assert [space.sample(again) for _ in range(50)] == archs
    changed = sum(space.mutate(a, rng) != a for a in archs)
    assert changed >= 40                      # a redrawn gene may come back the same
    assert TINY.size == 4 and nas.Space().size == sum(32 ** d for d in (1, 2, 3, 4))


def test_space_rejects_what_is_outside():
    with pytest.raises(InputError, match="depth 5"):
        nas.Space().check(((8, 3, 1),) * 5)
    with pytest.raises(InputError, match="12k3e1"):
        nas.Space().check(((12, 3, 1),))
    with pytest.raises(InputError, match="odd"):
        nas.Space(kernels=(2, 3))
    with pytest.raises(InputError, match="recipe"):
        nas.Recipe(epochs=0)
    with pytest.raises(InputError, match="no cost model for target 'cpu'.*gfx803"):
        nas.latency_model("cpu")
    with pytest.raises(InputError, match="no cost model for target 'gfx9000'"):
        nas.latency_model("gfx9000")


def torch_logits(arch, p, x):
    """The same network written with torch.nn.functional, from the same weights."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t = {k: torch.from_numpy(v) for k, v in p.items()}
    h = F.relu(F.conv2d(torch.from_numpy(x), t["stem"], t["stem_b"], padding=1))
    for i, b in enumerate(arch):
        skip = h
        if b.expansion > 1:
            h = F.relu(F.conv2d(h, t[f"b{i}_expand"], t[f"b{i}_expand_b"]))
        h = F.relu(F.conv2d(h, t[f"b{i}_dw"], t[f"b{i}_dw_b"], padding=b.kernel // 2,
                            groups=h.shape[1]))
        h = F.conv2d(h, t[f"b{i}_project"], t[f"b{i}_project_b"])
        if h.shape == skip.shape:
            h = h + skip
        if i < nas.POOLED_BLOCKS:
            h = F.avg_pool2d(h, 2)
    return (h.reshape(h.shape[0], -1) @ t["head"] + t["head_b"]).numpy()


def test_network_matches_torch():
    arch = nas.Space().check(((8, 3, 2), (8, 5, 1), (16, 3, 4)))   # skip in block 1 only
    p = nas.init_params(arch, 3)
    x = np.random.default_rng(1).standard_normal((4, 1, 8, 8)).astype(np.float32)
    got = np.asarray(lgc.jit(lambda q, xs: nas.logits(arch, q, xs))(p, x))
    want = torch_logits(arch, p, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def digits(n_train=128):
    from sklearn.datasets import load_digits
    d = load_digits()
    x, y = (d.images / 16.0).astype(np.float32)[:, None], d.target.astype(np.int32)
    return nas.Data.split(x[:400], y[:400], x[400:500], y[400:500]).subset(n_train, 64)


def test_training_lowers_the_loss_and_is_seeded():
    data = digits(256)
    arch = nas.as_blocks(((8, 3, 1),))
    init = lambda s: nas.init_params(arch, s)     # noqa: E731
    fn = lambda p, x: nas.logits(arch, p, x)      # noqa: E731
    recipe = nas.Recipe(epochs=2, seed=5)
    trained = nas.train(init, fn, data.xtr, data.ytr, recipe)
    again = nas.train(init, fn, data.xtr, data.ytr, recipe)
    for k in trained:
        np.testing.assert_array_equal(trained[k], again[k])

    def loss(p):   # cross-entropy on the training set, from the torch reference's logits
        z = torch_logits(arch, p, data.xtr).astype(np.float64)
        z = z - z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(z)), data.ytr]))
    assert loss(trained) < 0.9 * loss(init(recipe.seed))
    with pytest.raises(InputError, match="smaller than the batch"):
        nas.train(init, fn, data.xtr[:10], data.ytr[:10], recipe)


def test_latency_sources():
    x = np.zeros((1, 1, 8, 8), np.float32)

    def graph(arch, batch=1):
        return nas.inference_graph(lambda p, xs: nas.logits(arch, p, xs),
                                   nas.init_params(arch, 0), x, batch)
    one, two = ((8, 3, 1),), ((8, 3, 1), (8, 3, 1))
    model = nas.latency_model("gfx803")
    e1, e2 = model.estimate(graph(one)), model.estimate(graph(two))
    assert model.estimate(graph(one)) == e1                        # deterministic
    assert e2.kernels > e1.kernels > 0 and e2.seconds > e1.seconds
    assert e1.seconds == pytest.approx(e1.roofline_s + e1.kernels * model.launch_overhead_s)
    assert model.estimate(graph(one, 64)).roofline_s > 10 * e1.roofline_s
    measured = nas.latency_model("device")
    measured.seconds = 0.01
    est = measured.estimate(graph(one))
    on_device = Executable.from_graph(graph(one), None, 2)       # the CPU's own program: its
    assert 0 < est.seconds < 1 and est.roofline_s is None          # kernel choices (dwpw fusion)
    assert est.kernels == len(on_device.program.launches) > 0      # differ from gfx803's


def load_example():
    path = Path(__file__).resolve().parents[1] / "examples" / "nas_digits.py"
    spec = importlib.util.spec_from_file_location("nas_digits_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow     # ~70 s with PoCL's kernel cache cold (4 networks compiled), ~5 s warm
def test_example_search_repeats_and_front_is_non_dominated():
    ex = load_example()
    kw = dict(budget_s=None, epochs=1, population=2, max_evaluations=3, space=TINY, n_train=128,
              verbose=False)
    first, second = ex.main(**kw), ex.main(**kw)
    runs = [[(i.genome, i.objectives) for i in r["result"].evaluated] for r in (first, second)]
    assert runs[0] == runs[1] and len(runs[0]) == 3
    assert first["baseline"].objectives == second["baseline"].objectives

    evaluated, front = first["result"].evaluated, first["front"]
    for a in front:
        assert not any(dominates(b.objectives, a.objectives) for b in evaluated)
    for a in evaluated:
        assert a in front or any(dominates(b.objectives, a.objectives) for b in front)
        ev = a.info["eval"]
        assert 0 <= ev.accuracy <= 1 and ev.kernels > 0 and ev.latency_s > 0
        assert ev.objectives == a.objectives and TINY.check(a.genome) == a.genome
    base = first["baseline"].objectives
    assert first["dominating"] == [a for a in front if all(x <= y for x, y in zip(a.objectives, base))
                                   and a.objectives != base]
