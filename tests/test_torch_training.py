"""Training through torch.compile(backend="lgc"): AOTAutograd's forward and backward graphs
both run on lgc, the optimizer (torch.optim.SGD) in PyTorch.

Each model trains 20 SGD steps from the same initial weights (copy.deepcopy) on the same
batches, in eager PyTorch and compiled. Must hold: the gradients of step 1 within 1e-4 of
eager's, relative to the largest magnitude per parameter, and the losses within 1e-3 at
every step to 20. The backward operators lgc converts are each checked against PyTorch's
own kernels, called directly in an FX graph.
"""
import copy
import operator

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import lgc.torch  # noqa: E402
from lgc.errors import UnsupportedOp  # noqa: E402
from lgc.torch import resident  # noqa: E402
from lgc.torch.runner import FxProgram  # noqa: E402

from tests.torch_nets import (SmallCNN, cnn_loss, counting_batches, image_batches,  # noqa: E402
                              lm_loss, train_gpt2)

pytestmark = pytest.mark.torch
A = torch.ops.aten
STEPS = 20


def rel_error(got, want) -> float:
    got, want = got.detach().double(), want.detach().double()
    assert got.shape == want.shape, (got.shape, want.shape)
    return float((got - want).abs().max() / max(want.abs().max(), 1e-30))


def sgd(model, batches, loss_of):
    """(gradients of step 1, losses per step) of SGD steps over `batches`."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    first, losses = None, []
    for batch in batches:
        opt.zero_grad()
        loss = loss_of(model, batch)
        loss.backward()
        if first is None:
            first = [p.grad.clone() for p in model.parameters()]
        opt.step()
        losses.append(loss.item())
    return first, losses


def check_training(model, batches, loss_of):
    torch.manual_seed(0)
    model.train()
    twin = copy.deepcopy(model)
    want_grads, want_losses = sgd(model, batches, loss_of)
    got_grads, got_losses = sgd(torch.compile(twin, backend="lgc"), batches, loss_of)
    assert max(rel_error(g, w) for g, w in zip(got_grads, want_grads)) < 1e-4
    assert max(abs(g - w) for g, w in zip(got_losses, want_losses)) < 1e-3
    assert want_losses[-1] < want_losses[0]   # it learns: the comparison means something
    return model, twin


def test_cnn_trains_as_in_eager():
    torch.manual_seed(1)
    model, twin = check_training(SmallCNN(), image_batches(STEPS, seed=1), cnn_loss)
    # the running statistics AOTAutograd copies back from lgc's outputs
    assert rel_error(twin.bn.running_mean, model.bn.running_mean) < 1e-4
    assert rel_error(twin.bn.running_var, model.bn.running_var) < 1e-4
    assert int(twin.bn.num_batches_tracked) == STEPS


def test_gpt2_lm_trains_as_in_eager():
    check_training(train_gpt2(seed=2), counting_batches(STEPS, seed=2), lm_loss)


def test_parameters_upload_once_per_step():
    """Unchanged tensors are not uploaded again; after an optimizer step each parameter is,
    once (the forward and the backward share the upload)."""
    torch.manual_seed(3)
    model = SmallCNN().train()
    compiled = torch.compile(model, backend="lgc")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))

    def uploaded(step: bool) -> int:
        opt.zero_grad()
        resident.reset_transfers()
        torch.nn.functional.cross_entropy(compiled(x), y).backward()
        if step:
            opt.step()
        return resident.transfers().uploaded
    nbytes = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    params, buffers = nbytes(model.parameters()), nbytes(model.buffers())
    logits_grad = 4 * 10 * 4   # computed by torch's loss: the backward's input
    uploaded(True)
    # the step changed the parameters, and the last forward the batch norm's buffers
    assert uploaded(True) == params + buffers + logits_grad
    uploaded(False)
    # no step since: the parameters stay where they are (x, y, the saved activations too)
    assert uploaded(False) == buffers + logits_grad


class Dropped(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, x):
        return torch.nn.functional.dropout(self.fc(x), 0.5, self.training)


def test_training_dropout_is_refused_with_its_line():
    """Dropout with p > 0 in training needs random masks: refused, naming the operator and
    the line; p = 0, or eval mode, runs (the GPT-2 test's dropouts are 0)."""
    compiled = torch.compile(Dropped().train(), backend="lgc")
    with pytest.raises(UnsupportedOp) as e:
        compiled(torch.randn(2, 4)).sum().backward()
    msg = str(e.value)
    assert "\n" not in msg
    assert "aten.native_dropout" in msg and "test_torch_training.py:" in msg and "dropout(" in msg


# ---- backward operators against PyTorch's kernels -----------------------------------------

def run_graph(op, tensors: dict, *args, outputs=1, **kwargs):
    """op called in an FX graph run by lgc, its tensors the graph's inputs (`args` naming
    them by string); against op called eagerly. `outputs`: how many the op has, or the
    list of those the graph reads."""
    graph = torch.fx.Graph()
    nodes = {k: graph.placeholder(k) for k in tensors}
    pick = lambda a: nodes[a] if isinstance(a, str) and a in nodes else a  # noqa: E731
    node = graph.call_function(op, tuple(pick(a) for a in args),
                               {k: pick(v) for k, v in kwargs.items()})
    read = outputs if isinstance(outputs, list) else list(range(outputs)) if outputs > 1 else None
    outs = [node] if read is None else [graph.call_function(operator.getitem, (node, i)) for i in read]
    graph.output(tuple(outs))
    value = lambda a: tensors[a] if isinstance(a, str) and a in tensors else a  # noqa: E731
    want = op(*(value(a) for a in args), **{k: value(v) for k, v in kwargs.items()})
    got = FxProgram(graph, {}, list(tensors))(list(tensors.values()))
    return got, ([want] if read is None else [want[i] for i in read])


def assert_matches(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if w is None:
            assert g is None
        else:
            assert rel_error(g, w) < 1e-4


def randn(*shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("transposed,stride,padding,dilation,groups,mask", [
    (False, (2, 2), (1, 1), (1, 1), 2, [True, True, True]),
    (False, (1, 2), (0, 2), (2, 1), 1, [True, True, False]),
    (False, (1, 1), (1, 1), (1, 1), 1, [False, True, True]),
    (True, (2, 2), (1, 1), (1, 1), 2, [True, True, True]),
])
def test_convolution_backward(transposed, stride, padding, dilation, groups, mask):
    x = randn(2, 4, 9, 8, seed=1)
    w = randn(4, 6 // groups, 3, 3, seed=2) if transposed else randn(6, 4 // groups, 3, 3, seed=2)
    out_pad = (1, 1) if transposed else (0, 0)
    y = A.convolution(x, w, None, stride, padding, dilation, transposed, out_pad, groups)
    got, want = run_graph(A.convolution_backward.default, {"g": randn(*y.shape, seed=3), "x": x, "w": w},
                          "g", "x", "w", [w.shape[1] * groups if transposed else w.shape[0]],
                          stride, padding, dilation, transposed, out_pad, groups, mask,
                          outputs=[i for i in range(3) if mask[i]])
    assert_matches(got, want)


@pytest.mark.parametrize("kernel,stride,padding,dilation,ceil", [
    ((2, 2), (2, 2), (0, 0), (1, 1), False), ((3, 3), (2, 2), (1, 1), (1, 1), True),
    ((3, 2), (1, 2), (1, 0), (2, 1), False)])
def test_max_pool2d_with_indices_backward(kernel, stride, padding, dilation, ceil):
    x = randn(2, 3, 9, 8, seed=4)
    y, idx = A.max_pool2d_with_indices(x, kernel, stride, padding, dilation, ceil)
    got, want = run_graph(A.max_pool2d_with_indices_backward.default,
                          {"g": randn(*y.shape, seed=5), "x": x, "i": idx},
                          "g", "x", kernel, stride, padding, dilation, ceil, "i")
    assert_matches(got, want)


@pytest.mark.parametrize("padding,ceil,include_pad,divisor", [
    ((0, 0), False, True, None), ((1, 1), True, False, None), ((1, 0), False, True, None),
    ((1, 1), False, True, 5)])
def test_avg_pool2d_backward(padding, ceil, include_pad, divisor):
    x, kernel, stride = randn(2, 3, 9, 8, seed=6), (3, 3), (2, 2)
    y = A.avg_pool2d(x, kernel, stride, padding, ceil, include_pad, divisor)
    got, want = run_graph(A.avg_pool2d_backward.default, {"g": randn(*y.shape, seed=7), "x": x},
                          "g", "x", kernel, stride, padding, ceil, include_pad, divisor)
    assert_matches(got, want)


@pytest.mark.parametrize("size,out", [((8, 6), (4, 3)), ((7, 5), (3, 2)), ((5, 5), (5, 5))])
def test_adaptive_avg_pool2d_backward(size, out):
    x = randn(2, 3, *size, seed=8)
    got, want = run_graph(A._adaptive_avg_pool2d_backward.default,
                          {"g": randn(2, 3, *out, seed=9), "x": x}, "g", "x")
    assert_matches(got, want)


@pytest.mark.parametrize("affine,mask", [(True, [True, True, True]), (False, [True, False, False]),
                                         (True, [False, True, True])])
def test_native_layer_norm_backward(affine, mask):
    x, shape = randn(2, 5, 3, 4, seed=10), [3, 4]
    w, b = (randn(3, 4, seed=11), randn(3, 4, seed=12)) if affine else (None, None)
    _, mean, rstd = A.native_layer_norm(x, shape, w, b, 1e-5)
    tensors = {"g": randn(*x.shape, seed=13), "x": x, "mean": mean, "rstd": rstd}
    if affine:
        tensors.update(w=w, b=b)
    got, want = run_graph(A.native_layer_norm_backward.default, tensors, "g", "x", shape, "mean",
                          "rstd", "w" if affine else None, "b" if affine else None, mask,
                          outputs=[i for i in range(3) if mask[i]])
    assert_matches(got, want)


@pytest.mark.parametrize("affine", [True, False])
def test_native_group_norm_backward(affine):
    x, groups = randn(2, 6, 4, 5, seed=14), 3
    w = randn(6, seed=15) if affine else None
    b = randn(6, seed=16) if affine else None
    _, mean, rstd = A.native_group_norm(x, w, b, 2, 6, 20, groups, 1e-5)
    tensors = {"g": randn(*x.shape, seed=17), "x": x, "mean": mean, "rstd": rstd}
    if affine:
        tensors["w"] = w
    mask = [True, affine, affine]
    got, want = run_graph(A.native_group_norm_backward.default, tensors, "g", "x", "mean", "rstd",
                          "w" if affine else None, 2, 6, 20, groups, mask,
                          outputs=[i for i in range(3) if mask[i]])
    assert_matches(got, want)


@pytest.mark.parametrize("padding_idx,by_freq", [(-1, False), (2, False), (-1, True), (4, True)])
def test_embedding_dense_backward(padding_idx, by_freq):
    idx = torch.tensor([[1, 2, 4, 2], [0, 4, 4, 9]])
    got, want = run_graph(A.embedding_dense_backward.default,
                          {"g": randn(2, 4, 5, seed=18), "i": idx}, "g", "i", 10, padding_idx, by_freq)
    assert_matches(got, want)


@pytest.mark.parametrize("causal,mask", [(True, None), (False, "per_query"), (False, "per_head")])
def test_sdpa_flash_attention_for_cpu_backward(causal, mask):
    """With the log-sum-exp the kernel saves (torch.export graphs); the attention weights
    AOTAutograd's decomposition saves in its place are exercised by the GPT-2 test."""
    q, k, v = randn(2, 3, 6, 4, seed=19), randn(2, 3, 7, 4, seed=20), randn(2, 3, 7, 4, seed=21)
    kwargs, tensors = {}, {}
    if mask == "per_query":
        tensors["m"] = randn(6, 7, seed=22)
    elif mask == "per_head":
        tensors["m"] = randn(2, 3, 6, 7, seed=22)
    if mask:
        kwargs["attn_mask"] = "m"
    out, lse = A._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, 0.0, causal, **({"attn_mask": tensors["m"]} if mask else {}))
    tensors = {"g": randn(*out.shape, seed=23), "q": q, "k": k, "v": v, "o": out, "l": lse,
               **tensors}
    got, want = run_graph(A._scaled_dot_product_flash_attention_for_cpu_backward.default, tensors,
                          "g", "q", "k", "v", "o", "l", 0.0, causal, outputs=3, **kwargs)
    assert_matches(got, want)


def test_batch_norm_functional_running_statistics():
    x, w, b = randn(4, 3, 5, 5, seed=24), randn(3, seed=25), randn(3, seed=26)
    rm, rv = randn(3, seed=27), randn(3, seed=28).abs() + 0.5
    got, want = run_graph(A._native_batch_norm_legit_functional.default,
                          {"x": x, "w": w, "b": b, "rm": rm, "rv": rv},
                          "x", "w", "b", "rm", "rv", True, 0.1, 1e-5, outputs=5)
    assert_matches(got, want)


def test_in_place_training_batch_norm_is_refused():
    x, rm, rv = randn(4, 3, 5, 5), torch.zeros(3), torch.ones(3)
    with pytest.raises(UnsupportedOp, match="native_batch_norm.*in place"):
        run_graph(A.native_batch_norm.default, {"x": x, "rm": rm, "rv": rv},
                  "x", None, None, "rm", "rv", True, 0.1, 1e-5, outputs=3)
