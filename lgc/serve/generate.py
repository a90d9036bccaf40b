"""Triton's generate extension on lgc serve: `POST /v2/models/{m}/generate` and
`.../generate_stream` (server-sent events, one per token), for backends that carry a
Decoder (LocalBackend of a decoder ONNX with past_key_values; lgc.generation).

Request: a JSON object with `input_ids` (token ids) or `text_input` (with a tokenizer), and
`parameters`: max_tokens (or max_new_tokens; default 16), temperature (0: greedy), top_k,
top_p, seed, greedy, end_id (or eos_token_id). Answer: {model_name, model_version,
output_ids, text_output (with a tokenizer)}; each stream event carries the new token's id
and text. One sequence runs at a time per model (the decoder's one cache); others wait,
up to the model's queue size (503 beyond).
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass

from starlette.responses import JSONResponse, StreamingResponse

from ..errors import InputError, LgcError
from ..generation import Sampling, stream
from ..generation.generate import Generation, prompt_array
from .bodies import Refusal
from .bodies import error_response as _error
from .protocol import ProtocolError

DEFAULT_MAX_TOKENS = 16
PARAMETERS = {"max_tokens", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "greedy",
              "end_id", "eos_token_id", "stream"}


@dataclass
class GenerateRequest:
    prompt_ids: list[int]
    max_new_tokens: int
    sampling: Sampling
    eos_token_id: int | None


def _number(params: dict, name: str, kind, default):
    v = params.get(name, default)
    if v is default:
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and v != int(v)):
        raise ProtocolError(f"parameter {name!r} must be {'an integer' if kind is int else 'a number'}")
    return kind(v)


def parse_generate_request(obj: dict, backend) -> GenerateRequest:
    """The request as a GenerateRequest, checked against the backend's decoder; ProtocolError
    (400) naming what is wrong."""
    params = obj.get("parameters", {})
    if not isinstance(params, dict):
        raise ProtocolError("'parameters' must be an object")
    unknown = sorted(set(params) - PARAMETERS)
    if unknown:
        raise ProtocolError(f"unknown parameter {unknown[0]!r} (known: {', '.join(sorted(PARAMETERS))})")
    codec = getattr(backend, "tokenizer", None)
    if ("input_ids" in obj) == ("text_input" in obj):
        raise ProtocolError("give exactly one of 'input_ids' (token ids) and 'text_input'")
    if "text_input" in obj:
        if codec is None:
            raise ProtocolError(f"model {backend.name!r} has no tokenizer: send 'input_ids'")
        if not isinstance(obj["text_input"], str):
            raise ProtocolError("'text_input' must be a string")
        ids = codec.encode(obj["text_input"])
    else:
        ids = obj["input_ids"]
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ProtocolError("'input_ids' must be a list of integer token ids")
    try:
        ids = prompt_array(ids).tolist()
        temperature = _number(params, "temperature", float, 1.0)
        greedy = params.get("greedy", temperature == 0)
        if not isinstance(greedy, bool):
            raise ProtocolError("parameter 'greedy' must be true or false")
        sampling = Sampling(greedy, temperature if not greedy else 1.0,
                            _number(params, "top_k", int, 0), _number(params, "top_p", float, 1.0),
                            _number(params, "seed", int, None))
    except InputError as e:
        raise ProtocolError(str(e)) from None
    n = _number(params, "max_tokens", int, None)
    n = _number(params, "max_new_tokens", int, DEFAULT_MAX_TOKENS) if n is None else n
    room = backend.decoder.max_seq_len - len(ids)
    if not 1 <= n <= room:
        raise ProtocolError(f"max_tokens must be between 1 and {max(room, 0)} (the prompt has "
                            f"{len(ids)} tokens of max_seq_len {backend.decoder.max_seq_len}), got {n}")
    eos = _number(params, "end_id", int, None)
    eos = _number(params, "eos_token_id", int, getattr(backend, "eos_token_id", None)) if eos is None else eos
    return GenerateRequest(ids, n, sampling, eos)


class _Run:
    """One generation in a thread of its own (the decoder blocks); its tokens reach the
    event loop through an asyncio queue. `cancel` stops it before its next step."""

    def __init__(self, backend, req: GenerateRequest):
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancel = threading.Event()
        self.result = Generation()
        self.thread = threading.Thread(target=self._work, args=(backend.decoder, req), daemon=True,
                                       name="lgc-serve-generate")
        self.thread.start()

    def _put(self, item) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def _work(self, decoder, req: GenerateRequest) -> None:
        try:
            for token in stream(decoder, req.prompt_ids, req.max_new_tokens, req.sampling,
                                req.eos_token_id, self.result, self.cancel.is_set):
                self._put(("token", token))
            self._put(("done", None))
        except Exception as e:            # noqa: BLE001 - reported to the client
            self._put(("error", e))

    async def next(self, timeout: float | None = None):
        """("token", id), ("done", None) or ("error", exception); TimeoutError after timeout."""
        return await asyncio.wait_for(self.queue.get(), timeout)


class _Texts:
    """Text of each new token: decode everything so far and take what is new, so tokens
    that only make a character together come out whole."""

    def __init__(self, codec):
        self.codec, self.ids, self.text = codec, [], ""

    def add(self, token: int) -> str:
        self.ids.append(token)
        text = self.codec.decode(self.ids)
        piece = text[len(self.text):] if text.startswith(self.text) else text
        self.text = text
        return piece


def generate_routes(models: dict, find, intake, config, metrics):
    """The two route functions, over the app's models and their lookup, body intake, config
    and metrics."""
    busy: dict[str, int] = {}               # generations waiting or running, per model

    async def start(request, t0):
        """(backend, request, _Run) or (outcome, answer) when refused."""
        try:
            m = find(request)
        except ProtocolError as e:
            return "not_found", _error(e.status, str(e), {"connection": "close"})
        b = m.backend
        obj = await intake.receive_json(request, t0)
        if isinstance(obj, Refusal):
            return obj.outcome, obj.response()
        if getattr(b, "decoder", None) is None:
            why = getattr(b, "not_generative", None) or "it takes no past_key_values"
            return "bad_request", _error(400, f"model {b.name!r} does not generate: {why}")
        try:
            req = parse_generate_request(obj, b)
        except ProtocolError as e:
            return "bad_request", _error(e.status, f"model {b.name!r}: {e}")
        if not b.ready():
            return "not_ready", _error(503, f"model {b.name!r} is not ready")
        if busy.get(b.name, 0) >= config.queue_size:
            return "queue_full", _error(503, f"model {b.name!r} has {config.queue_size} generations "
                                             f"waiting or running: retry", {"retry-after": "1"})
        busy[b.name] = busy.get(b.name, 0) + 1
        run = _Run(b, req)
        run.thread_done = lambda: busy.__setitem__(b.name, busy[b.name] - 1)
        return b, run

    def answer(b, tokens: list[int]) -> dict:
        out = {"model_name": b.name, "model_version": b.version, "output_ids": tokens}
        codec = getattr(b, "tokenizer", None)
        if codec is not None:
            out["text_output"] = codec.decode(tokens)
        return out

    def failed(b, e: Exception):
        if isinstance(e, InputError):
            return "bad_request", _error(400, f"model {b.name!r}: {e}")
        kind = "" if isinstance(e, LgcError) else f"{type(e).__name__}: "
        return "error", _error(500, f"model {b.name!r} failed: {kind}{e}")

    async def generate(request):
        t0 = time.monotonic()
        started = await start(request, t0)
        if isinstance(started[0], str):
            outcome, response = started
        else:
            outcome, response = await _collect(*started, t0)
        _observe(request, outcome, t0)
        return response

    async def _collect(b, run: _Run, t0: float):
        tokens = []
        try:
            while True:
                left = config.timeout_s - (time.monotonic() - t0)
                kind, value = await run.next(max(left, 0.0))
                if kind == "token":
                    tokens.append(value)
                elif kind == "done":
                    return "success", JSONResponse(answer(b, tokens))
                else:
                    return failed(b, value)
        except asyncio.TimeoutError:
            return "timeout", _error(504, f"model {b.name!r}: no answer within {config.timeout_s:g} s "
                                          f"(request timeout)")
        finally:
            run.cancel.set()
            run.thread_done()

    async def generate_stream(request):
        t0 = time.monotonic()
        started = await start(request, t0)
        if isinstance(started[0], str):
            _observe(request, *started[:1], t0)
            return started[1]
        b, run = started
        try:       # the first token within the request timeout, or a plain 504 / error answer
            first = await run.next(max(config.timeout_s - (time.monotonic() - t0), 0.0))
        except asyncio.TimeoutError:
            run.cancel.set()
            run.thread_done()
            _observe(request, "timeout", t0)
            return _error(504, f"model {b.name!r}: no first token within {config.timeout_s:g} s")
        if first[0] == "error":
            run.thread_done()
            outcome, response = failed(b, first[1])
            _observe(request, outcome, t0)
            return response
        return StreamingResponse(_events(b, run, first, t0, request), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache"})

    async def _events(b, run: _Run, item, t0, request):
        codec = getattr(b, "tokenizer", None)
        texts = _Texts(codec) if codec is not None else None
        outcome = "disconnected"
        try:
            while item[0] == "token":
                event = {"model_name": b.name, "model_version": b.version, "output_ids": [item[1]]}
                if texts is not None:
                    event["text_output"] = texts.add(item[1])
                yield f"data: {json.dumps(event)}\n\n"
                item = await run.next()
            if item[0] == "error":
                outcome = "error"
                yield f"data: {json.dumps({'error': f'model {b.name!r} failed: {item[1]}'})}\n\n"
            else:
                outcome = "success"
        finally:                       # also when the client went away (the generator is closed)
            run.cancel.set()
            run.thread_done()
            _observe(request, outcome, t0)

    def _observe(request, outcome: str, t0: float) -> None:
        label = request.path_params["name"]
        metrics.observe_request(label if label in models else "<unknown>", outcome,
                                time.monotonic() - t0)

    return generate, generate_stream
