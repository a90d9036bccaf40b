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


class TinyEncoder(torch.nn.Module):
    """Embedding + positional table, one post-norm encoder layer (GELU), LayerNorm, pooled head."""

    def __init__(self, d=32, heads=4, vocab=50):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Parameter(torch.randn(64, d) * 0.1)
        self.layer = torch.nn.TransformerEncoderLayer(d, heads, dim_feedforward=64, dropout=0.0,
                                                      batch_first=True, activation="gelu")
        self.norm = torch.nn.LayerNorm(d)
        self.head = torch.nn.Linear(d, 3)

    def forward(self, ids, mask):
        x = self.emb(ids) + self.pos[: ids.shape[1]]
        x = self.layer(x, src_key_padding_mask=mask == 0)
        return torch.softmax(self.head(self.norm(x)).mean(1), -1)


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
