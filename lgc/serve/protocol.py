"""Open Inference Protocol (KServe v2) infer requests and responses, JSON and binary.

Pure functions over bytes, so the HTTP layer stays thin and these can be tested alone.
The binary tensor data extension (as Triton and tritonclient.http implement it): the body
starts with `Inference-Header-Content-Length` bytes of JSON; input tensors whose
`parameters.binary_data_size` is set take their raw little-endian, row-major bytes from the
rest of the body, in the order they appear. Outputs asked for with `parameters.binary_data`
(or request-level `parameters.binary_data_output`) come back the same way.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from .backend import KSERVE_TO_NUMPY, TensorSpec, kserve_datatype


class ProtocolError(Exception):
    """A request the server must refuse; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[tuple[str, bool]]      # (output name, send as binary)


def json_object(data: bytes, where: str) -> dict:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"malformed JSON in {where}: {e}") from None
    except RecursionError:
        raise ProtocolError(f"JSON in {where} is nested too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{where} must be a JSON object, got {type(obj).__name__}")
    return obj


def _params(obj: dict, where: str) -> dict:
    p = obj.get("parameters", {})
    if not isinstance(p, dict):
        raise ProtocolError(f"'parameters' of {where} must be an object")
    return p


def parse_infer_request(body: bytes, header_length: str | None,
                        inputs: list[TensorSpec], outputs: list[TensorSpec],
                        max_batch_size: int) -> InferRequest:
    """Decode and check one request against a model's signature; ProtocolError when bad."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise ProtocolError(f"Inference-Header-Content-Length {header_length!r} is not "
                                f"an integer") from None
        if not 0 <= n <= len(body):
            raise ProtocolError(f"Inference-Header-Content-Length {n} is outside the body "
                                f"({len(body)} bytes)")
        head, binary = body[:n], memoryview(body)[n:]
    else:
        head, binary = body, memoryview(b"")
    req = json_object(head, "the request")
    rid = req.get("id")
    if rid is not None and not isinstance(rid, str):
        raise ProtocolError("'id' must be a string")
    rparams = _params(req, "the request")
    raw_inputs = req.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError("'inputs' must be a non-empty list")
    specs = {s.name: s for s in inputs}
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for i, t in enumerate(raw_inputs):
        if not isinstance(t, dict):
            raise ProtocolError(f"inputs[{i}] must be an object")
        name = t.get("name")
        if not isinstance(name, str):
            raise ProtocolError(f"inputs[{i}] has no 'name'")
        if name not in specs:
            raise ProtocolError(f"unknown input {name!r} (inputs are: {', '.join(specs)})")
        if name in arrays:
            raise ProtocolError(f"input {name!r} is given twice")
        spec = specs[name]
        datatype = t.get("datatype")
        if datatype != spec.datatype:
            raise ProtocolError(f"input {name!r} has datatype {datatype!r}, expected {spec.datatype!r}")
        shape = t.get("shape")
        if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool)
                                                and d >= 0 for d in shape)):
            raise ProtocolError(f"input {name!r}: 'shape' must be a list of non-negative integers")
        _check_shape(name, tuple(shape), spec, max_batch_size)
        dtype = KSERVE_TO_NUMPY[spec.datatype]
        count = math.prod(shape)                       # exact: no int64 overflow to fool us
        size = _params(t, f"input {name!r}").get("binary_data_size")
        if size is not None:
            if "data" in t:
                raise ProtocolError(f"input {name!r} has both 'data' and binary_data_size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ProtocolError(f"input {name!r}: binary_data_size must be a non-negative integer")
            if size != count * dtype.itemsize:
                raise ProtocolError(f"input {name!r}: binary_data_size {size} does not match shape "
                                    f"{shape} of {spec.datatype} ({count * dtype.itemsize} bytes)")
            if offset + size > len(binary):
                raise ProtocolError(f"input {name!r}: binary data ends after {len(binary) - offset} "
                                    f"of {size} bytes")
            a = np.frombuffer(binary[offset:offset + size], dtype.newbyteorder("<")).astype(dtype)
            offset += size
        else:
            if "data" not in t:
                raise ProtocolError(f"input {name!r} has neither 'data' nor binary_data_size")
            a = _json_data(name, t["data"], dtype, count)
        arrays[name] = np.ascontiguousarray(a.reshape(shape))
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data follow the inputs unused")
    missing = [s.name for s in inputs if s.name not in arrays]
    if missing:
        raise ProtocolError(f"missing input {missing[0]!r}")
    if max_batch_size > 0:
        rows = {a.shape[0] for a in arrays.values()}
        if len(rows) > 1:
            raise ProtocolError(f"inputs disagree on the batch size (axis 0): {sorted(rows)}")
    default_binary = rparams.get("binary_data_output", False)
    if not isinstance(default_binary, bool):
        raise ProtocolError("'binary_data_output' must be true or false")
    out_names = {s.name for s in outputs}
    raw_outputs = req.get("outputs")
    if raw_outputs is None:
        wanted = [(s.name, default_binary) for s in outputs]
    else:
        if not isinstance(raw_outputs, list):
            raise ProtocolError("'outputs' must be a list")
        wanted = []
        for i, o in enumerate(raw_outputs):
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise ProtocolError(f"outputs[{i}] must be an object with a 'name'")
            if o["name"] not in out_names:
                raise ProtocolError(f"unknown output {o['name']!r} (outputs are: {', '.join(out_names)})")
            b = _params(o, f"output {o['name']!r}").get("binary_data", default_binary)
            if not isinstance(b, bool):
                raise ProtocolError(f"output {o['name']!r}: 'binary_data' must be true or false")
            if "classification" in o.get("parameters", {}):
                raise ProtocolError("the classification extension is not supported")
            wanted.append((o["name"], b))
    return InferRequest(rid, arrays, wanted)


def _check_shape(name, shape, spec: TensorSpec, max_batch_size: int) -> None:
    want = spec.shape
    ok = len(shape) == len(want) and all(w < 0 or w == s for w, s in zip(want, shape))
    if not ok:
        raise ProtocolError(f"input {name!r} has shape {list(shape)}, expected {list(want)} "
                            f"(-1: any size)")
    if max_batch_size > 0:
        if shape[0] < 1:
            raise ProtocolError(f"input {name!r} has an empty batch (axis 0 is 0)")
        if shape[0] > max_batch_size:
            raise ProtocolError(f"input {name!r} has batch {shape[0]}, over the model's "
                                f"max_batch_size {max_batch_size}")


def _json_data(name, data, dtype: np.dtype, count: int) -> np.ndarray:
    """Tensor data given as a JSON list (flat or nested, row-major), checked for its kind."""
    if not isinstance(data, list):
        raise ProtocolError(f"input {name!r}: 'data' must be a list")
    try:
        a = np.asarray(data)
    except (ValueError, OverflowError, RecursionError):
        raise ProtocolError(f"input {name!r}: 'data' is a ragged nested list or holds "
                            f"values no {kserve_datatype(dtype)} tensor can") from None
    a = a.reshape(-1)
    if a.size != count:
        raise ProtocolError(f"input {name!r}: 'data' has {a.size} elements, shape needs {count}")
    if count == 0:
        return np.zeros(0, dtype)
    kind = a.dtype.kind
    if dtype.kind == "b":
        ok = kind == "b"
    elif dtype.kind in "iu":
        ok = kind in "iu"
        if ok:
            info = np.iinfo(dtype)
            if int(a.min()) < info.min or int(a.max()) > info.max:
                raise ProtocolError(f"input {name!r}: a value is out of range for "
                                    f"{kserve_datatype(dtype)}")
    else:
        ok = kind in "iuf"
    if not ok:
        raise ProtocolError(f"input {name!r}: 'data' holds {_kind_name(kind)} values, "
                            f"not {kserve_datatype(dtype)}")
    return a.astype(dtype)


def _kind_name(kind: str) -> str:
    return {"b": "boolean", "i": "integer", "u": "integer", "f": "floating-point",
            "U": "string", "O": "mixed or null"}.get(kind, "unsupported")


def encode_infer_response(model_name: str, model_version: str, request_id: str | None,
                          results: dict[str, np.ndarray],
                          wanted: list[tuple[str, bool]]) -> tuple[bytes, dict[str, str]]:
    """Response body and headers; binary outputs follow the JSON header, in `wanted` order."""
    outs, chunks = [], []
    for name, binary in wanted:
        a = np.asarray(results[name])
        entry = {"name": name, "datatype": kserve_datatype(a.dtype), "shape": list(a.shape)}
        if binary:
            raw = np.ascontiguousarray(a, a.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _json_values(a)
        outs.append(entry)
    head = {"model_name": model_name, "model_version": model_version, "outputs": outs}
    if request_id is not None:
        head["id"] = request_id
    text = json.dumps(head, allow_nan=False).encode()
    if not chunks:
        return text, {"content-type": "application/json"}
    return text + b"".join(chunks), {"content-type": "application/octet-stream",
                                     "inference-header-content-length": str(len(text))}


def _json_values(a: np.ndarray) -> list:
    """Flat row-major values. JSON has no NaN or Infinity: those are written as the strings
    "NaN", "Infinity" and "-Infinity", which tritonclient's and KServe's clients turn back
    into floats (`np.array(data, dtype)`), and which a strict JSON parser still reads."""
    flat = a.reshape(-1)
    values = flat.tolist()
    if flat.dtype.kind == "f":
        for i in np.flatnonzero(~np.isfinite(flat)).tolist():
            v = values[i]
            values[i] = "NaN" if v != v else "Infinity" if v > 0 else "-Infinity"
    return values
