"""Decoding across workers (lgc.distributed.decode, lgc.generation.stage, lgc.cluster.decode):
a small Llama decoder (tests/llama_decoder.py, 3 layers) cut into its layers, placed on
workers by memory, and decoded as a chain of stages, in one process and as Ray actors
(`ray.init(num_cpus=2)`), against lgc.generate's single-process greedy tokens."""
import json

import numpy as np
import pytest

import lgc
from lgc.distributed.cost import Link
from lgc.distributed.decode import LayerCosts, find_layers, place_layers, stage_graph
from lgc.distributed.planner import PlanError
from lgc.distributed.specs import parse_workers
from lgc.errors import InputError
from lgc.generation import OnnxDecoder
from lgc.generation.stage import DecoderStage

from .llama_decoder import export_llama_decoder

CAPACITY = 40
PROMPTS = [[1, 7, 42, 99, 5], [3, 200, 17]]
NEW = 24


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama3") / "decoder.onnx"
    export_llama_decoder(path, num_hidden_layers=3, initializer_range=0.1)
    return str(path)


@pytest.fixture(scope="module")
def single(llama):
    """lgc.generate's greedy tokens for each prompt, one process, the whole model."""
    dec = OnnxDecoder(llama, CAPACITY)
    out = [lgc.generate(dec, p, NEW, greedy=True).tokens for p in PROMPTS]
    assert all(len(set(t)) > 4 for t in out)          # sequences that move
    return out


@pytest.fixture(scope="module")
def step(llama):
    dec = OnnxDecoder(llama, CAPACITY)
    graph, presents = dec.step_graph()
    return dec, find_layers(graph, dec.pasts), presents


def _model_bytes(layers, sequences=2):
    return LayerCosts(layers, sequences=sequences).memory(0, layers.count)


def test_layers_are_found_with_their_caches(step):
    dec, layers, _ = step
    assert layers.count == 3
    assert layers.caches == [[f"past_key_values.{i}.key", f"past_key_values.{i}.value"] for i in range(3)]
    # each cut carries one value, the hidden state [1, 1, hidden]
    assert [v.shape for v in layers.crossing.values()] == [(1, 1, 64)] * 2
    middle = stage_graph(layers, 1, 2)
    assert middle.input_names[0] == "hidden" and middle.output_names[0] == "hidden"
    assert [n for n in middle.input_names if "past" in n] == layers.caches[1]
    assert "input_ids" not in middle.input_names and "logits" not in middle.output_names


def test_memory_limit_below_the_model_forces_two_stages(step):
    _, layers, _ = step
    total = _model_bytes(layers)
    roomy = place_layers(layers, parse_workers(f"cpu:{total},cpu:{total}"), sequences=2)
    assert len(roomy.stages) == 1                     # fits one worker: no extra hop
    limit = int(total * 0.75)
    plan = place_layers(layers, parse_workers(f"cpu:{limit},cpu:{limit}"), sequences=2, capacity=CAPACITY)
    assert len(plan.stages) == 2
    assert [(s.first, s.end) for s in plan.stages] in ([(0, 1), (1, 3)], [(0, 2), (2, 3)])
    for s in plan.stages:
        assert 0 < s.memory_bytes <= limit
        assert s.weight_bytes > 0 and s.kv_bytes > 0 and s.compute_s > 0
    # the KV cache of 2 sequences: 2 caches per layer of [1, 2 KV heads, CAPACITY, 16] float32
    assert sum(s.kv_bytes for s in plan.stages) == 2 * 3 * 2 * 2 * CAPACITY * 16 * 4
    assert plan.stages[1].in_s > 0 and plan.stages[-1].out_s > 0
    assert plan.latency_s == pytest.approx(sum(s.time_s for s in plan.stages))
    assert plan.tokens_per_s == pytest.approx(min(2 / plan.latency_s, 1 / max(s.time_s for s in plan.stages)))
    doc = plan.as_json()
    assert doc["predicted"]["tokens_per_s"] > 0 and doc["predicted"]["latency_s"] > 0
    # one sequence alone: latency bounds the rate; more sequences than stages: the slowest stage
    one = place_layers(layers, parse_workers(f"cpu:{limit},cpu:{limit}"), Link(125e6), sequences=1)
    assert one.tokens_per_s == pytest.approx(1 / one.latency_s)


def test_no_placement_names_the_worker_and_layer(step):
    _, layers, _ = step
    with pytest.raises(PlanError, match=r"worker w0-cpu \(cpu, memory limit .*\) cannot hold layer 0"):
        place_layers(layers, parse_workers("cpu:10KB,cpu:10KB"))
    lc = LayerCosts(layers)
    one_layer = max(lc.memory(u, u + 1) for u in range(3))
    with pytest.raises(PlanError, match=r"layers 2-2 .* are left over"):
        place_layers(layers, parse_workers(f"cpu:{one_layer},cpu:{one_layer}"))
    with pytest.raises(InputError, match="stages must be between 1 and 2"):
        place_layers(layers, parse_workers("cpu:1GB,cpu:1GB"), stages=3)


def test_stages_in_one_process_give_the_same_tokens(llama, step, single):
    """Three stages (first, middle, last) chained by hand: each holds only its layers' caches."""
    dec, layers, presents = step
    stages = []
    for a in range(3):
        g = stage_graph(layers, a, a + 1)
        st = DecoderStage(g, {p: presents[p] for p in g.input_names if p in presents}, CAPACITY)
        prefill = find_layers(dec.prefill_graph(len(PROMPTS[0]), presents), dec.pasts)
        st.add_prefill(len(PROMPTS[0]), stage_graph(prefill, a, a + 1))
        stages.append(st)
    x = np.array([PROMPTS[0]])
    for st in stages:
        x = st.prefill(0, x, len(PROMPTS[0]))
    tokens = [int(np.argmax(x.reshape(-1)))]
    for pos in range(len(PROMPTS[0]), len(PROMPTS[0]) + NEW - 1):
        x = np.array([[tokens[-1]]])
        for st in stages:
            x = st.step(0, x, pos)
        tokens.append(int(np.argmax(x.reshape(-1))))
    assert tokens == single[0]


def test_pipeline_needs_ray_started(llama):
    import ray

    from lgc.cluster.decode import DecodePipeline
    assert not ray.is_initialized()
    with pytest.raises(InputError, match="Ray is not initialized"):
        DecodePipeline(llama, parse_workers("cpu:1GB"), CAPACITY)


@pytest.fixture(scope="module")
def ray_local():
    import ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20)
    yield ray
    ray.shutdown()


def test_two_ray_workers_decode_like_one_process(ray_local, llama, step, single):
    from lgc.cluster.decode import DecodePipeline
    from lgc.generation import Sampling
    limit = int(_model_bytes(step[1]) * 0.75)
    pipe = DecodePipeline(llama, parse_workers(f"cpu:{limit},cpu:{limit}"), CAPACITY, sequences=2)
    try:
        assert len(pipe.plan.stages) == 2 and len(pipe.actors) == 2
        both = pipe.generate(PROMPTS, NEW, Sampling(greedy=True))      # two sequences in flight
        assert [g.tokens for g in both.generations] == single
        assert both.steps == 2 * (NEW - 1) and both.tokens_per_s > 0 and both.latency_ms > 0
        alone = pipe.generate(PROMPTS[1:], NEW, Sampling(greedy=True))  # slot 0 reused, prefilled again
        assert alone.generations[0].tokens == single[1]
        with pytest.raises(InputError, match="holds 1 to 2 sequences"):
            pipe.generate(PROMPTS * 2, NEW)
    finally:
        pipe.shutdown()


def test_cli_generate_across_workers(ray_local, llama, step, single, tmp_path, capsys):
    from lgc.tools.cli import main
    limit = int(_model_bytes(step[1]) * 0.75)
    out = tmp_path / "out.json"
    rc = main(["generate", llama, "--prompt-ids", ",".join(map(str, PROMPTS[0])), "--max-new-tokens",
               str(NEW), "--max-seq-len", str(CAPACITY), "--greedy", "--workers",
               f"cpu:{limit},cpu:{limit}", "--sequences", "2", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert ",".join(map(str, single[0])) in text and "predicted" in text
    doc = json.loads(out.read_text())
    assert doc["tokens"] == single[0]
    assert len(doc["pipeline"]["stages"]) == 2
    assert doc["pipeline"]["predicted"]["tokens_per_s"] > 0
    assert doc["pipeline"]["measured"]["tokens_per_s"] > 0
