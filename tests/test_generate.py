"""KV-cache generation (lgc.generation): a Llama decoder with random weights (transformers'
LlamaConfig) exported to ONNX with past_key_values, run by lgc with the cache resident on
the device and written in place, against onnxruntime running the same ONNX with its own
KV loop; sampling semantics; compile counts; the CLI; the serve generate extension; and
jit's donate_argnums, which the cache relies on."""
import importlib
import json

import numpy as np
import onnxruntime as ort
import pytest
from starlette.testclient import TestClient

import lgc
import lgc.numpy as lnp
from lgc import lax
from lgc.errors import InputError, ModelError
from lgc.generation import OnnxDecoder, Sampling, filtered_probabilities, sample
from lgc.serve.app import ServeConfig, make_app
from lgc.serve.backend import LocalBackend

from .llama_decoder import export_llama_decoder, ort_generate

PROMPT = [1, 7, 42, 99, 5]


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama") / "decoder.onnx"
    config = export_llama_decoder(path)
    return str(path), config


@pytest.fixture(scope="module")
def decoder(llama):
    """One decoder for the module's tests: its step compiles once for them all."""
    return OnnxDecoder(llama[0], max_seq_len=80)


def test_greedy_64_tokens_equal_onnxruntime(llama, decoder):
    path, config = llama
    want = ort_generate(ort.InferenceSession(path), PROMPT, 64, config)
    got = lgc.generate(decoder, PROMPT, 64, greedy=True)
    assert got.tokens == want
    assert len(set(want)) > 8                  # a sequence that moves, not one repeated token
    assert got.prefill_ms > 0 and got.tokens_per_s > 0 and got.steps == 63


def test_step_logits_match_onnxruntime(llama, decoder):
    """Not only the argmax: the logits of each step, along onnxruntime's own loop."""
    path, config = llama
    sess = ort.InferenceSession(path)
    past = {n: np.zeros((1, config["kv_heads"], 0, config["head_size"]), np.float32)
            for n in config["past_names"]}
    ids, pos = np.array([PROMPT]), 0
    with decoder.lock:
        logits = decoder.prefill(np.array(PROMPT))
        for token in (3, 250, 17, 17):
            n = ids.shape[1]
            outs = sess.run(None, {"input_ids": ids, "position_ids": np.arange(pos, pos + n)[None],
                                   "attention_mask": np.ones((1, pos + n), np.int64), **past})
            np.testing.assert_allclose(logits, outs[0][0, -1], rtol=1e-4, atol=1e-5)
            past, pos, ids = dict(zip(config["past_names"], outs[1:])), pos + n, np.array([[token]])
            logits = decoder.step(token)


def test_kv_heads_shared_not_repeated_and_head_on_the_last_position(decoder):
    """The tiny decoder has 2 KV heads for 4 query heads: its programs multiply each group's
    queries against the cache as it is (no broadcast_to of the cache; the logits match
    onnxruntime above), and the prefill's LM head multiplies the last position only."""
    from lgc.generation.shared_kv import share_kv_heads
    with decoder.lock:
        decoder.prepare(len(PROMPT))
    imported = decoder._import(1, decoder.max_seq_len - 1)
    for program in (decoder._step, decoder._prefills[len(PROMPT)]):
        assert not any(n.op == "broadcast_to" for n in program.graph.nodes)
    assert share_kv_heads(imported) is imported                 # nothing left to rewrite
    head = [n for n in decoder._prefills[len(PROMPT)].graph.nodes if n.op == "matmul"][-1]
    assert head.inputs[0].shape[:2] == (1, 1)


def test_cache_is_the_same_device_buffer_every_step(decoder):
    with decoder.lock:
        decoder.prefill(np.array(PROMPT))
        buffers = [c._buf for c in decoder.caches]
        for token in range(12):
            decoder.step(token)
            assert [c._buf for c in decoder.caches] == buffers        # same cl.Buffer objects
            assert all(a is b for a, b in zip((c._buf for c in decoder.caches), buffers))
    # the step program: each present output is its past input's buffer, written by an
    # in-place scatter of one position (no kernel copies the cache)
    prog = decoder._step.executor.program
    ins = {s.name: s.buffer for s in prog.inputs}
    outs = {s.name: s.buffer for s in prog.outputs}
    for past, present in zip(decoder.pasts, decoder._present):
        assert outs[present] == ins[past]
    writes = [ln for ln in prog.launches if "tensor_scatter_into" in ln.kernel]
    assert len(writes) == len(decoder.pasts)
    cache_bytes = prog.buffers[ins[decoder.pasts[0]]].nbytes
    assert all(np.prod(ln.global_size) * 4 < cache_bytes for ln in writes)


def test_no_recompilation_per_token(llama, monkeypatch):
    jit = importlib.import_module("lgc.trace.jit")       # (lgc.trace.jit is also the function)
    compiles = []
    real = jit.compile_graph
    monkeypatch.setattr(jit, "compile_graph", lambda *a, **k: compiles.append(1) or real(*a, **k))
    d = OnnxDecoder(llama[0], max_seq_len=40)
    lgc.generate(d, PROMPT, 30, greedy=True)
    assert len(compiles) == 2 == d.compiles           # one step, one prefill (5 tokens)
    lgc.generate(d, PROMPT[::-1], 30, seed=1)
    assert len(compiles) == 2                         # same prompt length: nothing new
    lgc.generate(d, PROMPT[:3], 30, greedy=True)
    assert len(compiles) == 3                         # a new prompt length: its prefill only


def test_seeded_sampling_is_reproducible(decoder):
    kw = dict(temperature=0.9, top_k=50, top_p=0.95)
    a = lgc.generate(decoder, PROMPT, 24, seed=7, **kw).tokens
    b = lgc.generate(decoder, PROMPT, 24, seed=7, **kw).tokens
    c = lgc.generate(decoder, PROMPT, 24, seed=8, **kw).tokens
    assert a == b and a != c


def test_top_k_top_p_semantics():
    logits = np.log(np.array([0.05, 0.4, 0.1, 0.3, 0.15]))
    np.testing.assert_allclose(filtered_probabilities(logits), [0.05, 0.4, 0.1, 0.3, 0.15])
    np.testing.assert_allclose(filtered_probabilities(logits, top_k=2), [0, 0.4 / 0.7, 0, 0.3 / 0.7, 0])
    # top_p: the most probable tokens until their sum reaches p (0.4 + 0.3 = 0.7 >= 0.6)
    np.testing.assert_allclose(filtered_probabilities(logits, top_p=0.6), [0, 0.4 / 0.7, 0, 0.3 / 0.7, 0])
    np.testing.assert_allclose(filtered_probabilities(logits, top_p=0.71),
                               [0, 0.4 / 0.85, 0, 0.3 / 0.85, 0.15 / 0.85])
    np.testing.assert_allclose(filtered_probabilities(logits, top_p=0.01), [0, 1, 0, 0, 0])
    both = filtered_probabilities(logits, top_k=3, top_p=0.75)      # k first, then p of what is left
    np.testing.assert_allclose(both, [0, 0.4 / 0.7, 0, 0.3 / 0.7, 0])
    t = filtered_probabilities(logits, temperature=0.5)              # p ** 2, renormalised
    np.testing.assert_allclose(t, np.array([0.05, 0.4, 0.1, 0.3, 0.15]) ** 2 / 0.285)
    # draws follow the filtered distribution
    rng = np.random.default_rng(0)
    draws = np.bincount([sample(logits, rng, top_k=3) for _ in range(6000)], minlength=5) / 6000
    np.testing.assert_allclose(draws, [0, 0.4 / 0.85, 0, 0.3 / 0.85, 0.15 / 0.85], atol=0.025)
    assert Sampling(greedy=True).chooser()(logits) == 1
    with pytest.raises(InputError, match="top_p"):
        Sampling(greedy=False, top_p=0)


def test_bad_input(llama, decoder, tmp_path):
    with pytest.raises(InputError, match="max_seq_len 80"):
        lgc.generate(decoder, PROMPT, 76)
    with pytest.raises(InputError, match="prompt_ids"):
        lgc.generate(decoder, [[1, 2]], 4)
    import onnx
    m = onnx.load(llama[0])
    keep = [i for i in m.graph.input if i.name != "position_ids"]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    with pytest.raises(ModelError):
        OnnxDecoder(m)


def test_cli_json(llama, tmp_path, capsys):
    from lgc.tools.cli import main
    out = tmp_path / "out.json"
    assert main(["generate", llama[0], "--prompt-ids", "1,7,42,99,5", "--max-new-tokens", "12",
                 "--greedy", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    want = ort_generate(ort.InferenceSession(llama[0]), PROMPT, 12, llama[1])
    assert doc["tokens"] == want
    assert doc["prefill_ms"] > 0 and doc["tokens_per_s"] > 0
    assert capsys.readouterr().out.splitlines()[0] == ",".join(map(str, want))
    assert main(["generate", llama[0], "--prompt-ids", "1,x"]) == 1


def _tokenizer(path):
    """A word-level tokenizer.json over the decoder's 256 ids: w0 .. w255."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(256)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))
    return str(path)


def test_cli_text_prompt(llama, tmp_path, capsys):
    from lgc.tools.cli import main
    tok = _tokenizer(tmp_path / "tokenizer.json")
    out = tmp_path / "out.json"
    assert main(["generate", llama[0], "--prompt", "w1 w7 w42 w99 w5", "--tokenizer", tok,
                 "--max-new-tokens", "6", "--greedy", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["tokens"] == ort_generate(ort.InferenceSession(llama[0]), PROMPT, 6, llama[1])
    assert doc["text"] == " ".join(f"w{t}" for t in doc["tokens"])


def test_serve_generate_and_stream(llama, tmp_path):
    path, config = llama
    want = ort_generate(ort.InferenceSession(path), PROMPT, 10, config)
    backend = LocalBackend(path, name="llama", max_seq_len=64,
                           tokenizer=_tokenizer(tmp_path / "tokenizer.json"))
    with TestClient(make_app([backend], ServeConfig(token="t"))) as client:
        auth = {"Authorization": "Bearer t"}
        r = client.post("/v2/models/llama/generate", headers=auth,
                        json={"input_ids": PROMPT, "parameters": {"max_tokens": 10, "temperature": 0}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_name"] == "llama" and body["output_ids"] == want
        assert body["text_output"] == " ".join(f"w{t}" for t in want)
        r = client.post("/v2/models/llama/generate", headers=auth,
                        json={"text_input": "w1 w7 w42 w99 w5", "parameters": {"max_tokens": 10, "greedy": True}})
        assert r.json()["output_ids"] == want
        with client.stream("POST", "/v2/models/llama/generate_stream", headers=auth,
                           json={"input_ids": PROMPT, "parameters": {"max_tokens": 10, "temperature": 0}}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = [json.loads(line[len("data: "):]) for line in r.iter_lines() if line.startswith("data: ")]
        assert [e["output_ids"][0] for e in events] == want
        assert "".join(e["text_output"] for e in events).split() == [f"w{t}" for t in want]
        # sampling through the server is the seeded sampling of lgc.generate
        params = {"max_tokens": 8, "temperature": 0.8, "top_k": 40, "seed": 3}
        a = client.post("/v2/models/llama/generate", headers=auth, json={"input_ids": PROMPT, "parameters": params})
        assert a.json()["output_ids"] == lgc.generate(backend.decoder, PROMPT, 8, temperature=0.8,
                                                      top_k=40, seed=3).tokens
        for bad, status, text in (
                ({"parameters": {"max_tokens": 4}}, 400, "exactly one of"),
                ({"input_ids": PROMPT, "parameters": {"max_tokens": 60}}, 400, "max_tokens"),
                ({"input_ids": PROMPT, "parameters": {"top_q": 1}}, 400, "unknown parameter"),
                ({"input_ids": ["a"]}, 400, "input_ids")):
            r = client.post("/v2/models/llama/generate", headers=auth, json=bad)
            assert r.status_code == status and text in r.json()["error"], r.text
        assert client.post("/v2/models/nope/generate", headers=auth, json={}).status_code == 404
        assert client.post("/v2/models/llama/generate", json={"input_ids": PROMPT}).status_code == 401
        assert "generate" in client.get("/v2", headers=auth).json()["extensions"]


def test_serve_generate_refused_for_other_models(tmp_path):
    from .conftest import make_small_model
    make_small_model(tmp_path / "small.onnx")
    with TestClient(make_app([LocalBackend(str(tmp_path / "small.onnx"), name="small")])) as client:
        r = client.post("/v2/models/small/generate", json={"input_ids": [1]})
        assert r.status_code == 400 and "does not generate" in r.json()["error"]


def test_jit_donate_argnums_writes_in_place():
    """lax.dynamic_update_slice into a donated cache: the result is the donated buffer, the
    donated Array is deleted, and without donation the input is left as it was."""
    def write(cache, row, pos):
        cache = lax.dynamic_update_slice(cache, row, (0, pos, 0))
        return cache, lnp.sum(cache, axis=1)

    donating = lgc.jit(write, donate_argnums=0)
    cache = lnp.zeros((2, 8, 3), dtype=np.float32)
    want, buf = np.zeros((2, 8, 3), np.float32), cache._buf
    for pos in range(5):
        row = np.full((2, 1, 3), pos + 1, np.float32)
        old, (cache, sums) = cache, donating(cache, row, np.int32(pos))
        want[:, pos:pos + 1] = row
        assert cache._buf is buf and old.is_deleted()
        np.testing.assert_array_equal(np.asarray(cache), want)
        np.testing.assert_array_equal(np.asarray(sums), want.sum(axis=1))
    with pytest.raises(InputError, match="donated"):
        np.asarray(old)
    kernels = [ln.kernel for ln in donating._cache[next(iter(donating._cache))].executor.program.launches]
    assert any("_into" in k for k in kernels)
    plain = lgc.jit(write)
    x = lnp.zeros((2, 8, 3), dtype=np.float32)
    y, _ = plain(x, np.ones((2, 1, 3), np.float32), np.int32(2))
    assert y._buf is not x._buf and not np.asarray(x).any() and np.asarray(y).sum() == 6


def test_donated_program_is_not_saved_as_an_artifact(tmp_path):
    """A .lgc's loader refuses kernels that write input buffers: saving says why at once."""
    from lgc.errors import ArtifactError
    from lgc.ir.builder import GraphBuilder
    from lgc.ir.dtypes import from_numpy
    from lgc.ir.graph import TensorType
    from lgc.runtime import Executable
    b = GraphBuilder("write")
    cache = b.input("cache", TensorType(from_numpy(np.dtype(np.float32)), (1, 2, 8, 4)))
    new = b.input("new", TensorType(from_numpy(np.dtype(np.float32)), (1, 2, 1, 4)))
    at = b.input("at", TensorType(from_numpy(np.dtype(np.int64)), (1,)))
    graph = b.build([b.op("tensor_scatter", [cache, new, at], {"axis": 2})])
    c, u = np.random.rand(1, 2, 8, 4).astype(np.float32), np.ones((1, 2, 1, 4), np.float32)
    want = c.copy()
    want[:, :, 3:4] = u
    donated = Executable.from_graph(graph, donate=["cache"])
    np.testing.assert_array_equal(donated(c, u, np.array([3])), want)     # host path: c untouched
    assert not (c == want).all()
    with pytest.raises(ArtifactError, match="donated input 'cache'"):
        donated.save(tmp_path / "d.lgc")
    Executable.from_graph(graph).save(tmp_path / "plain.lgc")
    np.testing.assert_array_equal(lgc.load(tmp_path / "plain.lgc")(c, u, np.array([3])), want)


class TracedDecoder:
    """A one-layer attention decoder written in lgc.numpy, keeping the Decoder contract: its
    step writes the new key and value into fixed-capacity caches with
    lax.dynamic_update_slice under lgc.jit(donate_argnums=), so in place."""

    def __init__(self, params, max_seq_len):
        self.params, self.max_seq_len = params, max_seq_len
        self.lock = __import__("threading").Lock()
        self._step = lgc.jit(self.step_fn, donate_argnums=(1, 2))

    @staticmethod
    def step_fn(p, k, v, token, pos):
        x = p["emb"][token]
        k = lax.dynamic_update_slice(k, (x @ p["wk"])[None], (pos, 0))
        v = lax.dynamic_update_slice(v, (x @ p["wv"])[None], (pos, 0))
        scores = k @ (x @ p["wq"]) / np.sqrt(k.shape[1])
        w = lgc.nn.softmax(lnp.where(lnp.arange(k.shape[0]) <= pos, scores, -1e30))
        return (x + w @ v) @ p["wo"], k, v

    def prefill(self, prompt_ids):
        d = self.params["wk"].shape[1]
        self.k = lnp.zeros((self.max_seq_len, d), dtype=np.float32)
        self.v = lnp.zeros((self.max_seq_len, d), dtype=np.float32)
        self.pos, self.buffers = 0, (self.k._buf, self.v._buf)
        for t in prompt_ids:
            logits = self.step(int(t))
        return logits

    def step(self, token):
        logits, self.k, self.v = self._step(self.params, self.k, self.v, np.int32(token),
                                            np.int32(self.pos))
        assert (self.k._buf, self.v._buf) == self.buffers       # written in place, every token
        self.pos += 1
        return np.asarray(logits)


def test_traced_decoder_generates_with_donated_cache():
    rng = np.random.default_rng(0)
    p = {"emb": rng.standard_normal((50, 16)), "wq": rng.standard_normal((16, 16)) / 4,
         "wk": rng.standard_normal((16, 16)) / 4, "wv": rng.standard_normal((16, 16)) / 4,
         "wo": rng.standard_normal((16, 50)) / 4}
    p = {k: v.astype(np.float32) for k, v in p.items()}

    def reference(tokens):      # NumPy, no cache: attention over the whole sequence each time
        x = p["emb"][tokens]
        q, k, v = x[-1] @ p["wq"], x @ p["wk"], x @ p["wv"]
        s = k @ q / 4.0
        w = np.exp(s - s.max())
        return (x[-1] + (w / w.sum()) @ v) @ p["wo"]

    seq = [3, 14, 15]
    for _ in range(12):
        seq.append(int(np.argmax(reference(seq))))
    dec = TracedDecoder(p, max_seq_len=16)
    assert lgc.generate(dec, [3, 14, 15], 12, greedy=True).tokens == seq[3:]
    assert dec._step.trace_count == 1
