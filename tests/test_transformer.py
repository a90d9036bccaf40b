"""A transformer exported from PyTorch with dynamic batch and sequence axes runs in lgc and
matches onnxruntime. Skipped when torch is not installed."""
import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import lgc  # noqa: E402

pytestmark = pytest.mark.torch


class SelfAttention(torch.nn.Module):
    """BERT-style multi-head self-attention with an additive padding mask."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.dh = heads, d // heads
        self.qkv = torch.nn.Linear(d, 3 * d)
        self.out = torch.nn.Linear(d, d)

    def forward(self, x, mask):
        b, s, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q, k, v = (t.reshape(b, s, self.heads, self.dh).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2) / self.dh ** 0.5
        scores = scores + (1.0 - mask[:, None, None, :].float()) * -1e4
        ctx = torch.softmax(scores, -1) @ v
        return self.out(ctx.transpose(1, 2).reshape(b, s, d))


class TinyEncoder(torch.nn.Module):
    """Embedding + positions, one post-norm encoder layer (GELU MLP), mean-pooled head."""

    def __init__(self, d=32, heads=4, vocab=50):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Embedding(64, d)
        self.attn = SelfAttention(d, heads)
        self.norm1 = torch.nn.LayerNorm(d)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(d, 64), torch.nn.GELU(), torch.nn.Linear(64, d))
        self.norm2 = torch.nn.LayerNorm(d)
        self.head = torch.nn.Linear(d, 3)

    def forward(self, ids, mask):
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.emb(ids) + self.pos(positions)[None]
        x = self.norm1(x + self.attn(x, mask))
        x = self.norm2(x + self.mlp(x))
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return torch.softmax(self.head(pooled), -1)


@pytest.fixture(scope="module")
def exported():
    torch.manual_seed(0)
    model = TinyEncoder().eval()
    ids = torch.randint(0, 50, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.int64)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids, mask), f, input_names=["ids", "mask"], output_names=["probs"],
                          dynamic_axes={"ids": {0: "batch", 1: "seq"}, "mask": {0: "batch", 1: "seq"}},
                          opset_version=17, dynamo=False)
    return f.getvalue()


@pytest.mark.parametrize("batch,seq", [(2, 7), (3, 5), (1, 12)])
def test_matches_onnxruntime(exported, batch, seq):
    rng = np.random.default_rng(batch * 100 + seq)
    ids = rng.integers(0, 50, (batch, seq)).astype(np.int64)
    mask = np.ones((batch, seq), np.int64)
    mask[0, seq // 2:] = 0  # padding in the first sequence
    sess = ort.InferenceSession(exported, providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {"ids": ids, "mask": mask})
    model = lgc.compile(exported)
    got = model(ids, mask)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
