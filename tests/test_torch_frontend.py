"""PyTorch models on lgc, through torch.export (lgc.torch.compile, from_exported_program) and
through torch.compile(backend="lgc"), checked against PyTorch eager on the same inputs.

Accuracy: max |lgc - torch| / max |torch| per output, below 1e-4. The models are the shapes
of tests/torch_nets.py at test size (fewer, narrower blocks); the full-size BERT-base, GPT-2
small and ViT-B/16 run under the slow mark.
"""
import operator
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import lgc  # noqa: E402
import lgc.torch  # noqa: E402
from lgc.errors import InputError, ModelError, UnsupportedOp  # noqa: E402
from torch.export import Dim  # noqa: E402

from tests import torch_nets as nets  # noqa: E402

pytestmark = pytest.mark.torch
ROOT = Path(__file__).resolve().parent.parent
TOL = 1e-4


def rel_error(got, want) -> float:
    got, want = got.detach().double(), want.detach().double()
    assert got.shape == want.shape, (got.shape, want.shape)
    if not want.numel():
        return 0.0
    return float((got - want).abs().max() / max(want.abs().max(), 1e-30))


def assert_close(got, want, tol=TOL):
    got = torch.utils._pytree.tree_leaves(got)
    want = torch.utils._pytree.tree_leaves(want)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        if w.dtype.is_floating_point:
            assert rel_error(g, w) < tol
        else:
            assert torch.equal(g, w)


def eager(model, *args, **kwargs):
    with torch.no_grad():
        return model(*args, **kwargs)


BATCH, SEQ, PAST = Dim("batch", max=64), Dim("seq", max=256), Dim("past", max=256)
IMAGE = (3, 64, 64)


def images(n, seed=0):
    return torch.randn((n,) + IMAGE, generator=torch.Generator().manual_seed(seed))


def tokens(n, s, vocab=1000, seed=0):
    return torch.randint(0, vocab, (n, s), generator=torch.Generator().manual_seed(seed))


# ---- the models through torch.export ------------------------------------------------------

@pytest.mark.parametrize("build", [nets.resnet18, nets.mobilenet_v3, nets.vit_b16, nets.convnext],
                         ids=lambda b: b.__name__)
def test_cnn_and_vit_export(build):
    model = build(small=True)
    compiled = lgc.torch.compile(model, (images(2),), dynamic_shapes=({0: BATCH},))
    assert_close(compiled(images(2, seed=1)), eager(model, images(2, seed=1)))
    if build is nets.resnet18:   # the batch Dim takes each call's size
        assert_close(compiled(images(3, seed=2)), eager(model, images(3, seed=2)))


@pytest.mark.filterwarnings("ignore:The tensor attributes self.lstm._flat_weights")   # torch's own
def test_lstm_export():
    model = nets.lstm(small=True)
    compiled = lgc.torch.compile(model, (tokens(2, 7, vocab=100),), dynamic_shapes=({0: BATCH},))
    for n in (2, 3):
        ids = tokens(n, 7, vocab=100, seed=n)
        assert_close(compiled(ids), eager(model, ids))


def test_bert_export_batch_and_sequence_dims():
    model = nets.bert_base(small=True)
    dims = {"input_ids": {0: BATCH, 1: SEQ}, "attention_mask": {0: BATCH, 1: SEQ}}
    mask = torch.ones(2, 9, dtype=torch.int64)
    compiled = lgc.torch.compile(model, (tokens(2, 9),), {"attention_mask": mask}, dynamic_shapes=dims)
    for n, s in ((2, 9), (3, 5)):
        ids, mask = tokens(n, s, seed=s), torch.ones(n, s, dtype=torch.int64)
        mask[0, s // 2:] = 0   # padding in the first sequence
        got = compiled(ids, attention_mask=mask)
        assert type(got).__name__ == "BaseModelOutputWithPoolingAndCrossAttentions"
        assert_close(got, eager(model, ids, attention_mask=mask))


def test_gpt2_export():
    model = nets.gpt2_small(small=True)
    compiled = lgc.torch.compile(model, (tokens(2, 9),), dynamic_shapes=({0: BATCH, 1: SEQ},))
    ids = tokens(2, 6, seed=3)
    assert_close(compiled(ids).logits, eager(model, ids).logits)


def test_gpt2_export_with_past_key_values():
    lm = nets.gpt2_small(small=True, use_cache=True)
    model = nets.GPT2WithPast(lm).eval()
    past = nets.gpt2_past(lm, 2, 5)
    dims = ({0: BATCH, 1: SEQ}, tuple({0: BATCH, 2: PAST} for _ in past))
    compiled = lgc.torch.compile(model, (tokens(2, 3),) + past, dynamic_shapes=dims)
    for new, length in ((3, 5), (1, 8)):   # a prompt's continuation, then one decoding step
        ids, past = tokens(2, new, seed=length), nets.gpt2_past(lm, 2, length, seed=length)
        got = compiled(ids, *past)
        assert got[1].shape[2] == length + new
        assert_close(got, eager(model, ids, *past))


def test_from_exported_program_and_input_checks():
    model = nets.resnet18(small=True)
    ep = torch.export.export(model, (images(2),), dynamic_shapes=({0: BATCH},))
    compiled = lgc.torch.from_exported_program(ep)
    assert_close(compiled(images(2)), eager(model, images(2)))
    with pytest.raises(InputError) as e:
        compiled(torch.randn(2, 3, 32, 64))   # the image size was exported static
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="float64"):
        compiled(images(2).double())


def test_training_mode_batch_norm_is_refused():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).train()
    with pytest.raises(ModelError, match="running_mean"):
        lgc.torch.compile(model, (images(2),))


# ---- torch.compile(backend="lgc") ---------------------------------------------------------

def counted(graphs: list):
    """lgc's backend, recording each graph dynamo hands it."""
    def backend(gm, example_inputs):
        graphs.append(gm)
        return lgc.torch.lgc_backend(gm, example_inputs)
    return backend


@pytest.mark.parametrize("build", [nets.resnet18, nets.mobilenet_v3, nets.vit_b16, nets.convnext,
                                   nets.lstm], ids=lambda b: b.__name__)
def test_torch_compile_backend(build):
    model = build(small=True)
    x = tokens(2, 7, vocab=100) if build is nets.lstm else images(2)
    graphs = []
    with torch._dynamo.config.patch(allow_rnn=True):   # dynamo leaves nn.LSTM to eager otherwise
        compiled = torch.compile(model, backend=counted(graphs))
        assert_close(eager(compiled, x), eager(model, x))
    assert len(graphs) == 1


def test_torch_compile_transformers():
    bert = nets.bert_base(small=True)
    compiled = torch.compile(bert, backend=lgc.torch.lgc_backend, dynamic=True)   # SymInt sizes
    for n, s in ((2, 9), (3, 5)):
        ids, mask = tokens(n, s, seed=s), torch.ones(n, s, dtype=torch.int64)
        mask[1, s // 2:] = 0
        assert_close(eager(compiled, ids, attention_mask=mask), eager(bert, ids, attention_mask=mask))
    ids = tokens(2, 9)
    lm = nets.gpt2_small(small=True, use_cache=True)
    gpt = nets.GPT2WithPast(lm).eval()
    past = nets.gpt2_past(lm, 1, 4)
    compiled = torch.compile(gpt, backend=lgc.torch.lgc_backend)
    assert_close(eager(compiled, tokens(1, 1), *past), eager(gpt, tokens(1, 1), *past))
    plain = nets.gpt2_small(small=True)
    compiled = torch.compile(plain, backend=lgc.torch.lgc_backend)
    assert_close(eager(compiled, ids).logits, eager(plain, ids).logits)


class TwoHalves(torch.nn.Module):
    """A graph break between two convolutions: dynamo gives the backend two graphs."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 4, 3)

    def forward(self, x):
        y = torch.relu(self.a(x))
        torch._dynamo.graph_break()
        return self.b(y).mean((2, 3))


def test_graph_breaks_run_in_between_and_weights_refreeze():
    torch.manual_seed(0)
    model = TwoHalves().eval()
    graphs = []
    compiled = torch.compile(model, backend=counted(graphs))
    x = images(2)
    assert_close(eager(compiled, x), eager(model, x))
    assert len(graphs) == 2
    with torch.no_grad():
        model.b.weight.mul_(-2)   # frozen weights are taken again once changed in place
    assert_close(eager(compiled, x), eager(model, x))


def test_gradients_flow_through_the_lgc_forward():
    """With autograd on, the forward and the backward both run on lgc (training:
    tests/test_torch_training.py): the gradients match eager's."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 62 * 62, 5))
    x = images(2)
    compiled = torch.compile(model, backend=lgc.torch.lgc_backend)
    compiled(x).square().sum().backward()
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x).square().sum().backward()
    for g, p in zip(got, model.parameters()):
        assert rel_error(g, p.grad) < TOL


def test_backend_is_found_through_its_entry_point(tmp_path):
    """`torch.compile(backend="lgc")` with nothing imported but torch: torch reads the
    torch_dynamo_backends entry point. Where the installed metadata predates it (an older
    editable install), the entry point is declared from pyproject.toml in a dist-info here."""
    from importlib.metadata import entry_points
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]))
    if "lgc" not in entry_points(group="torch_dynamo_backends").names:
        import tomllib
        declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
        info = tmp_path / "lgc_entry_points-0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lgc-entry-points\nVersion: 0\n")
        (info / "entry_points.txt").write_text(
            "[torch_dynamo_backends]\n" + "".join(f"{k} = {v}\n" for k, v in
                                                  declared["torch_dynamo_backends"].items()))
    script = textwrap.dedent("""
        import sys, torch
        model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh()).eval()
        x = torch.randn(2, 4)
        with torch.no_grad():
            got, want = torch.compile(model, backend="lgc")(x), model(x)
        assert "lgc.torch" in sys.modules
        print(float((got - want).abs().max()))
    """)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-5


def test_import_lgc_does_not_import_torch():
    script = "import sys, lgc; lgc.compile; assert 'torch' not in sys.modules, 'torch imported'"
    out = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


# ---- errors -------------------------------------------------------------------------------

class Spectrum(torch.nn.Module):
    def forward(self, x):
        return torch.fft.rfft(x).abs()   # complex numbers: not in lgc


def test_unsupported_op_names_op_and_source_line():
    with pytest.raises(UnsupportedOp) as e:
        lgc.torch.compile(Spectrum(), (torch.randn(2, 8),))
    msg = str(e.value)
    assert "\n" not in msg
    assert "aten._fft_r2c" in msg and "test_torch_frontend.py:" in msg and "rfft" in msg


def test_unsupported_op_through_torch_compile():
    """Found when dynamo hands the graph over, so dynamo reports it as a backend failure."""
    compiled = torch.compile(Spectrum(), backend=lgc.torch.lgc_backend)
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed) as e:
        compiled(torch.randn(2, 8))
    assert isinstance(e.value.inner_exception, UnsupportedOp)
    assert "aten._fft_r2c" in str(e.value.inner_exception)


# ---- operator families ----------------------------------------------------------------------

class Elementwise(torch.nn.Module):
    def forward(self, x, y, i):
        pos = x.abs() + 0.5
        return (x.exp(), pos.log(), pos.rsqrt(), x.expm1(), pos.log1p(), pos.log2(), pos.log10(),
                x.trunc(), x.round(), x.sign(), torch.atan2(x, y), x.pow(3), pos.pow(y),
                2.0 ** x, x.clamp(-0.5, 0.3), torch.nn.functional.hardtanh(x),
                torch.nn.functional.leaky_relu(x, 0.2), torch.nn.functional.elu(x),
                torch.nn.functional.selu(x), torch.nn.functional.gelu(x, approximate="tanh"),
                torch.nn.functional.silu(x), torch.nn.functional.softplus(x),
                torch.nn.functional.mish(x), torch.nn.functional.hardsigmoid(x),
                torch.nn.functional.hardswish(x), torch.sigmoid(x), x.erf(), x.tan().sin(),
                torch.maximum(x, y), torch.minimum(x, y), torch.fmod(x, 0.3),
                torch.remainder(x, 0.3), torch.remainder(i, 3), torch.div(i, 3, rounding_mode="floor"),
                torch.div(i, 3, rounding_mode="trunc"), i / 4, i * 2.5, (i > 2) & (x > 0),
                (i < 0) | (x < 0), (i == 1) ^ (x > 1), ~(i == 1), i.bitwise_and(6), i ^ 5,
                torch.where(x > y, x, y), x.ne(y), x.masked_fill(x > 0.5, -1.0),
                torch.isnan(x / (x - x)), torch.isinf(1 / (x - x)), x.float() - i)


class Reductions(torch.nn.Module):
    def forward(self, x, i):
        v, k = x.max(1)
        return (x.sum((0, 2)), x.mean(-1, keepdim=True), x.amax((1, 2)), x.amin(0), v, k,
                x.min(2)[1], x.argmax(), x.argmin(1, keepdim=True), x.prod(2), x.var(1),
                x.var((0, 2), correction=0), (x > 0).any(1), (x > -3).all(), x.cumsum(1),
                i.sum(1), torch.logsumexp(x, 2), torch.softmax(x, 1), torch.log_softmax(x, 0),
                torch.topk(x, 3, 2)[0], torch.sort(x, 1, descending=True)[0], x.norm(dim=-1))


class Layout(torch.nn.Module):
    def forward(self, x, i):
        a, b = x.split([1, 3], 1)
        return (x.flip(1, 2), x.roll(2, 1), x.roll((1, -1), (0, 2)), x.repeat(2, 1, 1, 1),
                torch.diagonal(x, 1, 1, 2), torch.diagonal(x, -1, 2, 1), x.unbind(2)[1],
                torch.cat([b, a], 1), x.transpose(0, 2).contiguous().view(5, -1),
                x[:, 1:3, ::2], x[..., -1], x.narrow(2, 1, 2), x.expand(2, 4, 4, 5),
                torch.nn.functional.pad(x, (1, 2, 0, 1)), torch.nn.functional.pad(x, (-1, 1)),
                torch.nn.functional.pad(x, (2, 2, 1, 1), mode="reflect"),
                torch.nn.functional.pad(x, (2, 2, 1, 1), mode="replicate"),
                torch.arange(5) * i[0, 0], torch.full_like(x, 2.5), torch.zeros(3, i.shape[1]),
                x.new_ones(2, 3), x.to(torch.int32), i.to(torch.float64), x[0, 0].t())


class Indexing(torch.nn.Module):
    def forward(self, x, idx, j):
        y = x.clone()
        y[idx] = 1.0
        z = x.clone()
        z[:, j] += 2.0
        w = x.clone()
        w[x > 0.5] = 0.0
        s = x.clone()
        s[1:3, :, 1] = torch.ones(2, 6)
        s[0] = x[1]
        return (x[idx], x[:, j], x[idx, :, j[1:]], x[idx, j[:3]], x[:, j[:2], j[1:3]], y, z, w, s,
                x.index_select(2, j), x.gather(1, j.view(1, 4, 1).expand(3, 4, 5)),
                x.scatter(1, j.view(1, 4, 1).expand(3, 4, 5), 7.0),
                torch.zeros(3, 6, 5).scatter_add(1, j.view(1, 4, 1).expand(3, 4, 5), x),
                torch.zeros(3, 6, 5).scatter_reduce(1, j.view(1, 4, 1).expand(3, 4, 5), x, "amax"),
                x.masked_fill(x < 0, 0.0), torch.nn.functional.embedding(j, x[0]))


class Spatial(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch.nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)
        self.dil = torch.nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2)
        self.conv1d = torch.nn.Conv1d(4, 2, 3)
        self.gn = torch.nn.GroupNorm(2, 4)
        self.inorm = torch.nn.InstanceNorm2d(4)

    def forward(self, x, grid):
        f = torch.nn.functional
        pool, idx = f.max_pool2d(x, 3, 2, 1, return_indices=True)
        return (self.up(x), self.dil(x), self.conv1d(x.flatten(2)), self.gn(x), self.inorm(x),
                pool, idx, f.max_pool2d(x, 2, ceil_mode=True), f.avg_pool2d(x, 3, 2, 1),
                f.avg_pool2d(x, 3, 2, 1, count_include_pad=False), f.avg_pool2d(x, 2, divisor_override=3),
                f.adaptive_avg_pool2d(x, (3, 2)), f.adaptive_avg_pool2d(x, 1),
                f.interpolate(x, scale_factor=2, mode="nearest"), f.interpolate(x, size=(5, 9)),
                f.interpolate(x, scale_factor=2, mode="bilinear"),
                f.interpolate(x, size=(4, 5), mode="bilinear", align_corners=True),
                f.grid_sample(x, grid, align_corners=False),
                f.pixel_shuffle(x, 2), torch.cdist(x[0], x[1]), torch.pdist(x[0, 0]),
                f.unfold(x, 2), f.fold(f.unfold(x, 2), (7, 6), 2),
                f.local_response_norm(x, 3), f.layer_norm(x, (7, 6)))


@pytest.mark.parametrize("module,make_args", [
    (Elementwise, lambda g: (torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g),
                             torch.randint(-5, 6, (3, 4), generator=g))),
    (Reductions, lambda g: (torch.randn(3, 4, 5, generator=g), torch.randint(-5, 6, (3, 4), generator=g))),
    (Layout, lambda g: (torch.randn(1, 4, 4, 5, generator=g), torch.randint(1, 3, (3, 4), generator=g))),
    (Indexing, lambda g: (torch.randn(3, 6, 5, generator=g), torch.tensor([2, 0, -1]),
                          torch.tensor([4, 1, 3, 0]))),
    (Spatial, lambda g: (torch.randn(2, 4, 7, 6, generator=g), torch.rand(2, 3, 5, 2, generator=g) * 2 - 1)),
], ids=lambda m: getattr(m, "__name__", ""))
def test_operator_families(module, make_args):
    torch.manual_seed(0)
    model = module().eval()
    args = make_args(torch.Generator().manual_seed(1))
    assert_close(lgc.torch.compile(model, args)(*args), eager(model, *args))


A = torch.ops.aten
# ATen operators called directly, on inputs named by the keys of core_inputs(): torch.export
# and AOTAutograd decompose some further, so a model never hands them to a converter.
CORE_CASES = [
    # elementwise
    (A.expm1.default, "tiny"), (A.log1p.default, "tiny"), (A.acos.default, "u"), (A.asin.default, "u"),
    (A.atan.default, "x"), (A.atanh.default, "u"), (A.acosh.default, "g"), (A.asinh.default, "x"),
    (A.cos.default, "x"), (A.cosh.default, "x"), (A.sinh.default, "x"), (A.sqrt.default, "p"),
    (A.neg.default, "x"), (A.ceil.default, "x"), (A.floor.default, "x"), (A.ceil.default, "i"),
    (A.add.Scalar, "x", 2.5), (A.sub.Scalar, "i", 3), (A.add.Tensor, "x", "y", {"alpha": 0.5}),
    (A.pow.Tensor_Scalar, "p", 0.5), (A.pow.Tensor_Scalar, "p", -1), (A.pow.Tensor_Scalar, "x", 2),
    (A.pow.Tensor_Scalar, "i", 1), (A.pow.Tensor_Scalar, "p", 1.7), (A.pow.Tensor_Scalar, "j", 3),
    (A.rsub.Scalar, "x", 1.0), (A.rsub.Tensor, "i", "j", {"alpha": 2}), (A.div.Scalar, "x", 4.0),
    (A.div.Scalar_mode, "i", -3, {"rounding_mode": "floor"}),
    (A.div.Scalar_mode, "x", 0.7, {"rounding_mode": "trunc"}),
    (A.div.Tensor_mode, "i", "j", {"rounding_mode": "floor"}),
    (A.fmod.Tensor, "x", "p"), (A.remainder.Tensor, "i", "j"), (A.remainder.Scalar, "x", -0.6),
    (A.ge.Tensor, "x", "y"), (A.lt.Tensor, "i", "j"), (A.le.Scalar, "x", 0.1),
    (A.bitwise_or.Scalar, "i", 3), (A.bitwise_not.default, "b"), (A.logical_and.default, "x", "i"),
    (A.logical_or.default, "b", "i"), (A.logical_xor.default, "b", "x"), (A.isinf.default, "i"),
    (A.clamp.Tensor, "x", "y", "p"), (A.where.self, "b", "i", "x"),
    (A.masked_fill.Scalar, "x", "b", -2.0), (A.masked_fill.Tensor, "i", "b", "k0"),
    (A.hardsigmoid.default, "x"), (A.hardswish.default, "x"), (A.silu.default, "x"),
    (A.mish.default, "x"), (A.softplus.default, "x", 2.0, 1.0), (A.native_dropout.default, "x", 0.3, False),
    # reductions and scans
    (A.any.default, "b"), (A.all.default, "b"), (A.all.dim, "b", 1), (A.all.dims, "x", [0, 2]),
    (A.mean.default, "x"), (A.prod.default, "p"), (A.sum.default, "i"), (A.max.default, "x"),
    (A.min.default, "i"), (A.var.dim, "x", [1, 3], False, True), (A.logsumexp.default, "x", [2]),
    (A.cumprod.default, "p", 2), (A.sort.stable, "x", {"stable": True, "dim": 1, "descending": True}),
    # layout and creation
    (A.squeeze.dim, "s", 1), (A.squeeze.default, "s"), (A.t.default, "m"), (A.transpose.int, "x", 1, -1),
    (A.unbind.int, "q", 3), (A.split.Tensor, "x", 2, 3), (A._unsafe_view.default, "x", [6, -1]),
    (A.as_strided.default, "x", [3, 4], [5, 2], 1), (A.roll.default, "x", [2], []),
    (A.detach.default, "x"), (A.lift_fresh_copy.default, "x"), (A.fill.Scalar, "x", 1.5),
    (A.fill.Tensor, "i", "k0"), (A.full.default, [2, 2], 3), (A.scalar_tensor.default, 2.5),
    (A.zeros.default, [2, 3]), (A.ones.default, [3], {"dtype": torch.int32}), (A.zeros_like.default, "i"),
    (A.ones_like.default, "b"), (A.empty_like.default, "x"), (A.empty_strided.default, [2, 3], [3, 1]),
    (A.empty.memory_format, [4]), (A.arange.default, 5), (A.arange.start, 2, 6, {"dtype": torch.float32}),
    (A.arange.start_step, 1, 7, 2), (A.arange.start_step, 0.5, 2.0, 0.25),
    (A.reflection_pad1d.default, "v", [2, 1]), (A.reflection_pad2d.default, "x", [1, 2, 2, 0]),
    (A.reflection_pad3d.default, "x", [1, 1, 1, 0, 0, 1]), (A.replication_pad1d.default, "v", [0, 2]),
    (A.replication_pad2d.default, "x", [2, 1, 0, 1]),
    (A.replication_pad3d.default, "x", [1, 0, 2, 1, 1, 1]),
    # indexing
    (A.scatter.src, "x", 1, "k", "y"), (A.select_scatter.default, "x", "r", 2, -1),
    (A.slice_scatter.default, "x", "q", 3, 0, 5, 2), (A.masked_scatter.default, "x", "b", "y"),
    (A._embedding_bag.default, "W", "I", "O", False, 0), (A._embedding_bag.default, "W", "I", "O", False, 1),
    (A._embedding_bag.default, "W", "I", "O", False, 2, False, None, False, 3),
    (A._embedding_bag.default, "W", "I", "O", False, 0, False, "d", True),
    (A._embedding_bag_forward_only.default, "W", "I", "O"),
    # nn
    (A.max_pool2d_with_indices.default, "x", [2, 3], [2, 1], [1, 1]),
    (A.max_pool3d_with_indices.default, "x", [2, 2, 2], [1, 2, 2]),   # unbatched
    (A.max_pool3d_with_indices.default, "z", [2, 2, 2], [], [1, 0, 1], [1, 1, 1], True),
    (A.avg_pool1d.default, "v", [2]), (A.avg_pool3d.default, "x", [1, 2, 3]),
    (A._adaptive_avg_pool3d.default, "x", [2, 3, 2]),
    (A.upsample_nearest2d.vec, "x", None, [2.0, 1.5]), (A.upsample_bilinear2d.vec, "x", [3, 7], False, None),
    (A.col2im.default, "f", [4, 5], [2, 2], [1, 1], [0, 0], [1, 1]),
    (A._native_batch_norm_legit.default, "x", "w", "w", "m", "w", False, 0.1, 1e-5),
    (A._native_batch_norm_legit.default, "x", None, "w", "n", "e", True, 0.1, 1e-5),   # writes n, e
    (A.baddbmm.default, "r", "h", "t", {"beta": 0.5, "alpha": 2.0}),
    (A._cdist_forward.default, "h", "o", 0.0, None), (A._cdist_forward.default, "h", "h", 1.0, None),
    (A._cdist_forward.default, "h", "o", 3.0, None), (A._cdist_forward.default, "h", "o", float("inf"), None),
    (A._pdist_forward.default, "W", 1.0),
    # symbolic sizes and assertions
    (torch.ops.prims.convert_element_type.default, "x", torch.float64), (A.sym_numel.default, "x"), (A.sym_stride.int, "x", 1), (A.sym_storage_offset.default, "x"),
    (A._local_scalar_dense.default, "c"), (A._assert_scalar.default, True, "ok"),
    (A.sym_constrain_range_for_size.default, 3), (A.sym_constrain_range.default, 3, {"min": 0}),
    (A._assert_async.msg, "c", "ok"), (A._assert_async.default, "c"),
]
FIRST_OUTPUT_ONLY = {A._embedding_bag.default, A._embedding_bag_forward_only.default}   # the rest: backward


def core_inputs():
    g = torch.Generator().manual_seed(3)

    def randn(*shape):
        return torch.randn(shape, generator=g)

    def rand(*shape):
        return torch.rand(shape, generator=g)
    full = (2, 3, 4, 5)
    return {"x": randn(*full), "y": randn(*full), "u": rand(*full) * 1.8 - 0.9, "g": rand(*full) + 1.0,
            "p": rand(*full) + 0.5, "b": rand(*full) > 0.5, "i": torch.randint(-9, 10, full, generator=g),
            "j": torch.randint(1, 4, full, generator=g), "k": torch.randint(0, 3, full, generator=g),
            "s": randn(2, 1, 4), "r": randn(2, 3, 5), "o": randn(2, 6, 4), "q": randn(2, 3, 4, 3), "v": randn(2, 3, 5),
            "f": randn(1, 12, 12), "w": rand(3) + 0.5, "m": randn(3), "t": randn(2, 4, 5),
            "h": randn(2, 3, 4), "z": randn(1, 2, 3, 4, 5), "n": torch.zeros(3), "e": torch.ones(3),
            "W": randn(10, 4), "I": torch.tensor([3, 1, 4, 1, 5, 9, 2]), "O": torch.tensor([0, 2, 2, 5]),
            "d": rand(7), "k0": torch.tensor(3),
            "tiny": torch.tensor([1e-9, -3e-8, 2e-6, -4e-4, 0.0, 0.3, -0.7, 3.0])}


def test_core_aten_operators_called_directly():
    """One FX graph calling each case's operator, run by lgc, against the operators in eager."""
    from lgc.torch.runner import FxProgram
    inputs, constant = core_inputs(), {"c": torch.tensor(4.5)}
    graph = torch.fx.Graph()
    nodes = {k: graph.placeholder(k) for k in list(inputs) + list(constant)}
    outs, want, ops = [], [], []
    for op, *args in CORE_CASES:
        kwargs = args.pop() if args and isinstance(args[-1], dict) else {}
        node = graph.call_function(op, tuple(nodes.get(a, a) if isinstance(a, str) else a for a in args),
                                   kwargs)
        result = op(*(inputs.get(a, constant.get(a, a)) if isinstance(a, str) else a for a in args),
                    **kwargs)
        results = result[:1] if op in FIRST_OUTPUT_ONLY else \
            result if isinstance(result, (tuple, list)) else None
        if results is None:
            outs.append(node)
        else:
            outs += [graph.call_function(operator.getitem, (node, k)) for k in range(len(results))]
        want += [result] if results is None else list(results)
        ops += [op] * (1 if results is None else len(results))
    graph.output(tuple(outs))
    program = FxProgram(graph, {len(inputs): constant["c"].numpy()}, list(nodes))
    got = program(list(inputs.values()))
    for op, g, w in zip(ops, got, want):
        if op in (A.empty_strided.default, A.empty.memory_format, A.empty_like.default):
            assert g.shape == w.shape and g.dtype == w.dtype   # any values will do
        elif op in (A.expm1.default, A.log1p.default):   # accurate near 0, element by element
            assert torch.all((g - w).abs() <= 1e-6 * w.abs()), (op, g, w)
        elif isinstance(w, torch.Tensor):
            assert g.dtype == w.dtype and g.shape == w.shape, op
            assert (rel_error(g, w) < TOL if w.is_floating_point() else torch.equal(g, w)), op
        else:
            assert g == w, op


def test_coverage_table_is_current():
    """docs/TORCH-OPS.md says of each operator what the converter table says (another torch
    may have another core set: the rows are checked, not the whole text)."""
    import re
    from lgc.frontend.torch.converters import CONVERTERS
    doc = (ROOT / "docs" / "TORCH-OPS.md").read_text()
    rows = dict(re.findall(r"^\| `([^`]+)` \| (yes|no)", doc, re.M))
    listed = set(rows) | set(re.findall(r"`(\w+\.[^`]+)`", doc.split("Other operators converted")[-1]))
    stale = [n for n, done in rows.items() if (done == "yes") != (n in CONVERTERS)]
    stale += [n for n in CONVERTERS if n not in listed]
    assert not stale, f"regenerate it (python -m lgc.frontend.torch.coverage): {stale[:5]}"


# ---- full size --------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", ["bert_base", "gpt2_small", "vit_b16"])
def test_full_size(name):
    model = getattr(nets, name)()
    if name == "vit_b16":
        args, kwargs = (torch.randn(1, 3, 224, 224),), {}
    else:
        args, kwargs = (tokens(1, 32, vocab=model.config.vocab_size),), {}
    got = lgc.torch.compile(model, args, kwargs)(*args, **kwargs)
    want = eager(model, *args, **kwargs)
    first = lambda out: out if isinstance(out, torch.Tensor) else out[0]  # noqa: E731
    assert rel_error(first(got), first(want)) < TOL
