"""Hostile .lgc files: each one refused by lgc.load and by `lgc run` with one lgc error line
naming what is wrong; none crashes, hangs, or costs memory beyond twice the artifact's
declared size.

The cases are made from one small compiled artifact (relu(x @ w + b), 1 MiB of weights) by
an attacker who knows the format: truncations, bit flips, manifest edits (with the digest
table left alone, and recomputed), zip bombs, duplicate and traversal members, absurd
shapes, special files, kernels.cl edits, broken digest tables and signatures. digest.json and
signatures are built here from the format's description (docs/ARTIFACTS.md), not with lgc's
writer. A separate process loads them one after another, each under an alarm, so that a
crash or hang cannot take pytest with it; it reports each case's exception, the CLI's
output, tracemalloc's peak and the process's peak RSS (ru_maxrss) growth.
"""
import base64
import copy
import hashlib
import json
import os
import random
import re
import struct
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

CONTENT = ("manifest.json", "ir.txt", "kernels.cl", "weights.bin")
CONTEXT = b"lgc-artifact-signature-v1\n"
N = 512
TIMEOUT_S = 10
STALE = r"checksum mismatch in {0}\.|member {0}\.\w+ is \d+ bytes in the zip but"   # edited, table not


# ---- the artifact every case starts from ------------------------------------------------

def tiny_model(path):
    """y = relu(x @ w + b) (a GEMM kernel), z = x * 2 (a one-work-item-per-element kernel)."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((N, N)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["p"]),
         helper.make_node("Relu", ["p"], ["y"]), helper.make_node("Mul", ["x", "two"], ["z"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, N])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, N]) for n in ("y", "z")],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
         numpy_helper.from_array(np.array(2, np.float32), "two")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))


def members_of(path) -> dict:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def digest_doc(content: dict, key=None) -> bytes:
    """digest.json as the format describes it, signed by `key` when given."""
    table = [{"name": k, "size": len(content[k]), "sha256": hashlib.sha256(content[k]).hexdigest()}
             for k in CONTENT]
    doc = {"format": "lgc-artifact-digest", "members": table}
    if key is not None:
        from cryptography.hazmat.primitives import serialization
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        canonical = json.dumps(table, sort_keys=True, separators=(",", ":")).encode()
        doc["signature"] = {"scheme": "ed25519", "key": hashlib.sha256(raw).hexdigest()[:16],
                            "value": base64.b64encode(key.sign(CONTEXT + canonical)).decode()}
    return json.dumps(doc).encode()


def write_entries(path, entries, method=zipfile.ZIP_DEFLATED):
    """A zip of exactly these (name, bytes[, method]) entries, duplicates included; the 1 MiB
    of random weights stored unless a method is given (deflating it 100 times is slow)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w") as z:
            for name, data, *m in entries:
                z.writestr(name, data, m[0] if m else zipfile.ZIP_STORED if len(data) > 1 << 19 else method)


def write_content(path, content: dict, digest=None, key=None, method=None):
    """The content members plus a digest table: recomputed (signed with key) unless given."""
    digest = digest if digest is not None else digest_doc(content, key)
    entries = [(k, content[k]) for k in CONTENT] + [("digest.json", digest)]
    write_entries(path, [(*e, method) for e in entries] if method is not None else entries)


def edit_manifest(content, change) -> dict:
    man = json.loads(content["manifest.json"])
    change(man)
    return {**content, "manifest.json": json.dumps(man).encode()}


# ---- the cases ---------------------------------------------------------------------------

class Cases:
    def __init__(self, folder):
        self.folder = folder
        self.items = []

    def path(self, name):
        return str(self.folder / f"{name}.lgc")

    def add(self, name, expect, make=None, trusted=False):
        """A case: `make(path)` writes it; `expect`: a regex the error line must match."""
        p = self.path(name)
        if make is not None:
            make(p)
        self.items.append({"name": name, "path": p, "expect": expect, "trusted": trusted})


def manifest_edits(cl: bytes):
    """(name, change, expected field) of edits the manifest's tables must refuse even when the
    digest table is recomputed to match; `cl` is kernels.cl."""
    def at(path, value):
        def change(m):
            obj = m
            for k in path[:-1]:
                obj = obj[k]
            obj[path[-1]] = value
        return change
    big = 2**32
    return [
        ("shape_2e32", at(["inputs", 0, "shape"], [big, big]), r"inputs\[0\]\.shape"),
        ("shape_negative", at(["inputs", 0, "shape"], [-1, -16]), r"inputs\[0\]\.shape\[0\]"),
        ("shape_float", at(["inputs", 0, "shape"], [2, 4.5]), r"inputs\[0\]\.shape\[1\]"),
        ("shape_bool", at(["inputs", 0, "shape"], [True, N]), r"inputs\[0\]\.shape\[0\]"),
        ("shape_string", at(["inputs", 0, "shape"], "2x512"), r"inputs\[0\]\.shape"),
        ("shape_rank_40", at(["inputs", 0, "shape"], [1] * 40), r"inputs\[0\]\.shape"),
        ("shape_grown", at(["outputs", 0, "shape"], [4, N]), r"outputs\[0\]\.shape"),
        ("output_huge", at(["outputs", 0, "shape"], [2**40, 2**40]), r"outputs\[0\]\.shape"),
        ("dtype_unknown", at(["inputs", 0, "dtype"], "f128"), r"inputs\[0\]\.dtype"),
        ("buffer_id_out_of_range", at(["outputs", 0, "buffer"], 999), r"outputs\[0\]\.buffer"),
        ("buffer_nbytes_zero", at(["buffers", 0, "nbytes"], 0), r"buffers\[0\]\.nbytes"),
        ("buffer_nbytes_negative", at(["buffers", 0, "nbytes"], -8), r"buffers\[0\]\.nbytes"),
        ("buffer_nbytes_2e60", at(["buffers", 0, "nbytes"], 2**60), r"buffers\[0\]\.nbytes"),
        ("buffer_nbytes_string", at(["buffers", 0, "nbytes"], "4096"), r"buffers\[0\]\.nbytes"),
        ("buffer_beyond_device", lambda m: m["buffers"][m["outputs"][0]["buffer"]].update(nbytes=2**40),
         r"buffers\[\d+\]\.nbytes is 1099511627776, more than"),
        ("buffer_role_unknown", at(["buffers", 0, "role"], "weights"), r"buffers\[0\]\.role"),
        ("buffer_view_outside", at(["buffers", 0, "arena"], 0), r"buffers\[0\]"),
        ("buffers_not_list", at(["buffers"], {"0": 1}), r"buffers is not a list"),
        ("launches_missing", lambda m: m.pop("launches"), r"launches is not a list"),
        ("launch_kernel_unknown", at(["launches", -1, "kernel"], "evil"), r"launches\[\d+\]\.kernel"),
        ("launch_args_short", lambda m: m["launches"][-1]["args"].pop(), r"launches\[\d+\]\.args"),
        ("launch_args_long", lambda m: m["launches"][-1]["args"].append(0), r"launches\[\d+\]\.args"),
        ("launch_arg_out_of_range", lambda m: m["launches"][-1]["args"].__setitem__(0, 10**6),
         r"launches\[\d+\]\.args\[0\]"),
        ("launch_writes_constant", lambda m: _retarget_output(m, cl, "const"), r"launches\[\d+\]\.args"),
        ("launch_writes_input", lambda m: _retarget_output(m, cl, "input"), r"launches\[\d+\]\.args"),
        ("launch_global_grown", lambda m: _scale_global(m, 4), r"launches\[\d+\]\.global"),
        ("launch_global_zero", at(["launches", -1, "global"], [0]), r"launches\[\d+\]\.global"),
        ("launch_global_2e40", at(["launches", -1, "global"], [2**40]), r"launches\[\d+\]\.global"),
        ("launch_global_4d", at(["launches", -1, "global"], [1, 1, 1, 1]), r"launches\[\d+\]\.global"),
        ("launch_local_not_dividing", lambda m: _set_local(m, 7), r"launches\[\d+\]\.global"),
        ("launch_local_huge", lambda m: _set_local(m, 65536), r"launches\[\d+\]\.local"),
        ("launch_scalars_negative", at(["launches", -1, "scalars"], [-1]), r"launches\[\d+\]\.scalars"),
        ("constant_offset_far", at(["constants", 0, "offset"], 10**12), r"constants\[0\]\.offset"),
        ("constant_nbytes_wrong", lambda m: m["constants"][0].update(nbytes=m["constants"][0]["nbytes"] - 4),
         r"constants\[0\]\.nbytes"),
        ("constant_into_input", at(["constants", 0, "buffer"], 0), r"constants\[0\]\.buffer"),
        ("constant_shape_2e32", at(["constants", 0, "shape"], [big, big]), r"constants\[0\]\.nbytes"),
        ("loops_nested_deep", lambda m: m.update(loops=_deep_loops(m, 40)), r"loops"),
        ("loops_malformed", at(["loops"], [{"at": 0}]), r"loops\[0\]"),
        ("uses_fp64_string", at(["uses_fp64"], "no"), r"uses_fp64"),
        ("format_version_old", at(["format_version"], 3), r"format version 3 .*recompile"),
        ("format_version_future", at(["format_version"], 99), r"unknown artifact format version 99"),
        ("format_version_string", at(["format_version"], "4"), r"unknown artifact format version 4"),
        ("format_other", at(["format"], "zip"), r"not an lgc artifact"),
    ]


def _retarget_output(m, cl: bytes, role):
    """Bind the buffer the last launch writes (its kernel's first non-const buffer parameter)
    to a buffer of `role` instead."""
    ln = m["launches"][-1]
    params = re.search(rb"__kernel void " + ln["kernel"].encode() + rb"\(([^)]*)\)", cl).group(1).split(b",")
    j = next(i for i, p in enumerate(params) if b"__global" in p and b"const" not in p)
    ln["args"][j] = next(i for i, b in enumerate(m["buffers"]) if b["role"] == role)


def _scale_global(m, k):
    ln = next(ln for ln in m["launches"] if len(ln["global"]) == 1 and not ln.get("local"))
    ln["global"] = [ln["global"][0] * k]


def _set_local(m, size):
    ln = m["launches"][-1]
    ln["local"] = [size] * len(ln["global"])


def _deep_loops(m, depth):
    empty = {"inputs": [], "outputs": [], "buffers": [], "launches": [], "constants": []}
    inner = empty
    for _ in range(depth):
        inner = {**empty, "loops": [{"at": 0, "inputs": [0], "outputs": [0], "cond": inner, "body": empty}]}
    return inner["loops"]


def build_cases(folder, good: dict, key, other_key) -> list:
    c = Cases(folder)
    raw = open(c.path("good"), "rb").read()
    good_digest = good["digest.json"]
    content = {k: good[k] for k in CONTENT}
    rng = random.Random(1234)

    # truncations
    for n in sorted({0, 1, 4, 21, 22, 30, 100, 1000, 5000} | {int(len(raw) * f) for f in
                    (0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 0.99)} | {len(raw) - 1, len(raw) - 22}):
        c.add(f"truncated_{n}", r"truncated|corrupted|no zip end record|shorter|not a zip",
              lambda p, n=n: open(p, "wb").write(raw[:n]))

    # bit flips: in each member's compressed data, and in the central directory fields that
    # describe it (name, CRC, sizes); flips elsewhere (timestamps) change nothing lgc reads
    with zipfile.ZipFile(c.path("good")) as z:
        infos = z.infolist()
        cd_start = z.start_dir
    spots = []
    for info in infos:
        name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
        start = info.header_offset + 30 + name_len + extra_len
        spots += [(f"data_{info.filename}_{i}", start + rng.randrange(max(info.compress_size - 2, 1)))
                  for i in range(3)]
    cd = cd_start
    for info in infos:
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", raw, cd + 28)
        spots += [(f"cd_{info.filename}_{field}", cd + off) for field, off in
                  (("crc", 16), ("csize", 20), ("usize", 24), ("name", 46))]
        cd += 46 + name_len + extra_len + comment_len
    for label, at in spots:
        bit = rng.randrange(8)
        flipped = bytearray(raw)
        flipped[at] ^= 1 << bit
        c.add(f"bitflip_{label}", r".", lambda p, b=bytes(flipped): open(p, "wb").write(b))

    # manifest edits: digest table left alone (refused as tampered) and recomputed (refused
    # by the table checks)
    for name, change, field in manifest_edits(content["kernels.cl"]):
        edited = edit_manifest(content, change)
        if name in ("shape_2e32", "shape_negative", "buffer_nbytes_zero", "launch_global_grown",
                    "launch_writes_constant", "format_version_old", "launch_args_long"):
            c.add(f"manifest_{name}_stale_digest", STALE.format("manifest"),
                  lambda p, e=edited: write_content(p, e, good_digest))
        c.add(f"manifest_{name}", field, lambda p, e=edited: write_content(p, e))
    weights_out = edit_manifest(content, lambda m: m["outputs"][0].update(
        buffer=m["constants"][0]["buffer"], shape=m["constants"][0]["shape"]))
    c.add("manifest_weights_as_output_stale_digest", STALE.format("manifest"),
          lambda p: write_content(p, weights_out, good_digest))
    c.add("manifest_not_json", r"manifest\.json is not valid JSON",
          lambda p: write_content(p, {**content, "manifest.json": b"{\"format\": \"lgc-art"}))
    c.add("manifest_not_utf8", r"manifest\.json is not valid JSON",
          lambda p: write_content(p, {**content, "manifest.json": b"\xff\xfe{}"}))
    c.add("manifest_nested_deep", r"manifest\.json is not valid JSON",
          lambda p: write_content(p, {**content, "manifest.json": b"[" * 200000 + b"]" * 200000}))
    c.add("manifest_a_list", r"not an lgc artifact",
          lambda p: write_content(p, {**content, "manifest.json": b"[]"}))

    # zip bombs
    zeros = bytes(64 << 20)
    bomb = {**content, "weights.bin": zeros}
    c.add("bomb_weights_consistent", r"weights\.bin expands .* zip bomb",
          lambda p: write_content(p, bomb, method=zipfile.ZIP_DEFLATED))
    c.add("bomb_weights_header_says_small", r"weights\.bin|CRC|checksum",
          lambda p: _lie_about_size(p, {**content, "weights.bin": zeros}, "weights.bin",
                                    len(content["weights.bin"]), digest_doc(content)))
    c.add("bomb_manifest_spaces", r"manifest\.json (expands|declares)",
          lambda p: write_content(p, {**content, "manifest.json": content["manifest.json"] + b" " * (20 << 20)},
                                  method=zipfile.ZIP_DEFLATED))
    c.add("bomb_ir_spaces", r"ir\.txt expands .* zip bomb",
          lambda p: write_content(p, {**content, "ir.txt": b" " * (8 << 20)}, method=zipfile.ZIP_DEFLATED))
    c.add("bomb_digest_json", r"digest\.json declares",
          lambda p: write_entries(p, [(k, content[k]) for k in CONTENT] + [("digest.json", bytes(1 << 20))]))
    c.add("bomb_stored_claims_1GiB", r"weights\.bin claims 1073741824 bytes past the end",
          lambda p: _lie_about_size(p, content, "weights.bin", 1 << 30, good_digest,
                                    method=zipfile.ZIP_STORED, both=True))
    claims = json.loads(good_digest)
    claims["members"][3]["size"] = 1 << 30
    c.add("bomb_stored_claims_1GiB_digest_too", r"weights\.bin claims 1073741824 bytes past the end",
          lambda p: _lie_about_size(p, content, "weights.bin", 1 << 30, json.dumps(claims).encode(),
                                    method=zipfile.ZIP_STORED, both=True))
    longer = json.loads(digest_doc(content))
    longer["members"][0]["size"] += 1000
    c.add("member_shorter_than_declared", r"manifest\.json is shorter than its header declares",
          lambda p: _lie_about_size(p, content, "manifest.json", len(content["manifest.json"]) + 1000,
                                    json.dumps(longer).encode()))
    c.add("bomb_many_entries", r"lists 10005 entries",
          lambda p: write_entries(p, [(k, good[k]) for k in good] + [(f"e{i}", b"") for i in range(10000)]))

    # duplicate, traversal and unexpected members
    evil_cl = content["kernels.cl"].replace(b"out0[gid]", b"out0[gid + 1000000]")
    for name, entries, expect in (
            ("dup_kernels_first_good", [*good.items(), ("kernels.cl", evil_cl)], "duplicate member 'kernels.cl'"),
            ("dup_kernels_last_good", [("kernels.cl", evil_cl), *good.items()], "duplicate member 'kernels.cl'"),
            ("dup_manifest", [*good.items(), ("manifest.json", good["manifest.json"])], "duplicate member 'manifest.json'"),
            ("dup_digest", [*good.items(), ("digest.json", good_digest)], "duplicate member 'digest.json'"),
            ("traversal_parent", [*good.items(), ("../evil.cl", evil_cl)], r"unexpected member '\.\./evil\.cl'"),
            ("traversal_absolute", [*good.items(), ("/tmp/evil.cl", evil_cl)], "unexpected member '/tmp/evil.cl'"),
            ("traversal_nested", [*good.items(), ("kernels.cl/../kernels.cl", evil_cl)], "unexpected member"),
            ("member_directory", [*good.items(), ("lib/", b"")], "unexpected member 'lib/'"),
            ("member_extra", [*good.items(), ("README", b"hi")], "unexpected member 'README'"),
            ("member_case", [*good.items(), ("KERNELS.CL", evil_cl)], "unexpected member 'KERNELS.CL'"),
            ("missing_digest", [(k, good[k]) for k in CONTENT], "missing member digest.json"),
            ("missing_weights", [(k, good[k]) for k in good if k != "weights.bin"], "missing member weights.bin"),
            ("missing_manifest", [(k, good[k]) for k in good if k != "manifest.json"], "missing member manifest.json"),
            ("empty_zip", [], "missing member digest.json"),
            ("method_bzip2", [(k, good[k], zipfile.ZIP_BZIP2 if k == "ir.txt" else zipfile.ZIP_STORED)
                              for k in good], "ir.txt uses zip method 12"),
            ("method_lzma", [(k, good[k], zipfile.ZIP_LZMA if k == "kernels.cl" else zipfile.ZIP_STORED)
                             for k in good], "kernels.cl uses zip method 14")):
        c.add(name, expect, lambda p, e=entries: write_entries(p, e))
    c.add("member_encrypted", "kernels.cl is encrypted", lambda p: _set_flag(p, good, "kernels.cl", 0x1))

    # kernels.cl: edited with the table left alone, and with it recomputed
    c.add("kernels_edit_stale_digest", STALE.format("kernels"),
          lambda p: write_content(p, {**content, "kernels.cl": evil_cl}, good_digest))
    cl = content["kernels.cl"]
    first = cl.split(b"__kernel void ", 1)[1].split(b"(", 1)[0]
    for name, text, expect in (
            ("kernels_renamed", cl.replace(first + b"(", b"renamed("), r"launches\[\d+\]\.kernel"),
            ("kernels_extra_param", cl.replace(first + b"(", first + b"(__global float* restrict extra, "),
             r"launches\[\d+\]\.args"),
            ("kernels_local_param", cl.replace(first + b"(", first + b"(__local float* scratch, "),
             r"kernels\.cl kernel .* parameter"),
            ("kernels_duplicated", cl + b"\n" + cl, r"kernels\.cl defines kernel .* twice"),
            ("kernels_syntax", cl.replace(b"{", b"{ this is not C;", 1), r"kernels\.cl does not build"),
            ("kernels_empty", b"", r"launches\[0\]\.kernel"),
            ("kernels_not_utf8", b"\xff\xfe" + cl, r"kernels\.cl is not UTF-8"),
            ("ir_not_utf8", None, r"ir\.txt is not UTF-8")):
        changed = {**content, "ir.txt": b"\xc3\x28"} if text is None else {**content, "kernels.cl": text}
        c.add(name, expect, lambda p, e=changed: write_content(p, e))

    # digest.json itself
    table = json.loads(digest_doc(content))
    for name, change, expect in (
            ("digest_not_json", lambda d: b"{not json", r"digest\.json is not valid JSON"),
            ("digest_wrong_format", lambda d: {**d, "format": "sha"}, r"digest\.json is not an lgc digest"),
            ("digest_members_missing", lambda d: {k: v for k, v in d.items() if k != "members"},
             r"digest\.json field 'members'"),
            ("digest_members_reordered", lambda d: {**d, "members": d["members"][::-1]}, r"digest\.json field"),
            ("digest_member_dropped", lambda d: {**d, "members": d["members"][:3]}, r"digest\.json field"),
            ("digest_size_bool", lambda d: _entry(d, 1, size=True), r"digest\.json field"),
            ("digest_size_wrong", lambda d: _entry(d, 3, size=d["members"][3]["size"] + 1),
             r"weights\.bin is \d+ bytes in the zip but"),
            ("digest_sha_not_hex", lambda d: _entry(d, 2, sha256="z" * 64), r"digest\.json field"),
            ("digest_sha_wrong", lambda d: _entry(d, 1, sha256="0" * 64), r"checksum mismatch in ir\.txt")):
        doc = change(copy.deepcopy(table))
        data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        c.add(name, expect, lambda p, d=data: write_content(p, content, d))

    # an older lgc's artifact: per-member checksums, the manifest covered by none
    old = edit_manifest(content, lambda m: m.update(
        format_version=1, sha256={k: hashlib.sha256(content[k]).hexdigest() for k in CONTENT[1:]}))
    c.add("old_format_v1", r"format version 1 .*recompile", lambda p: write_entries(p, list(old.items())))

    # not artifacts at all, special files
    c.add("random_bytes", r"truncated|corrupted|no zip end record",
          lambda p: open(p, "wb").write(rng.randbytes(4096)))
    c.add("empty_file", r"no zip end record", lambda p: open(p, "wb").close())
    c.add("fifo", r"not a regular file", lambda p: os.mkfifo(p))
    c.add("directory", r"not a regular file", lambda p: os.mkdir(p))
    c.add("dev_zero_link", r"not a regular file", lambda p: os.symlink("/dev/zero", p))
    c.add("missing_file", r"no such file")

    # signatures, loaded with trusted keys
    signed = {"trusted": True}
    c.add("signed_unsigned", r"unsigned", lambda p: write_content(p, content), **signed)
    c.add("signed_by_other_key", r"not a trusted key", lambda p: write_content(p, content, key=other_key),
          **signed)
    resigned = {**content, "kernels.cl": evil_cl}
    c.add("signed_kernels_edited_resigned_by_other", r"not a trusted key",
          lambda p: write_content(p, resigned, key=other_key), **signed)
    c.add("signed_kernels_edited_stale_digest", STALE.format("kernels"),
          lambda p: write_content(p, resigned, digest_doc(content, key)), **signed)
    sig = json.loads(digest_doc(content, key))["signature"]
    for name, edited in (("signed_manifest_edited", edit_manifest(content, lambda m: m["launches"][-1].update(node="x"))),
                         ("signed_weights_edited", {**content, "weights.bin": _flip(content["weights.bin"], 100)}),
                         ("signed_kernels_edited", resigned)):
        doc = json.loads(digest_doc(edited))
        doc["signature"] = sig                          # the table recomputed, the old signature kept
        c.add(name, r"does not match the content", lambda p, d=json.dumps(doc).encode(), e=edited:
              write_content(p, e, d), **signed)
    for name, change, expect in (
            ("signed_value_garbage", {"value": "!!!"}, "does not match"),
            ("signed_value_truncated", {"value": sig["value"][:20]}, "does not match"),
            ("signed_scheme_rsa", {"scheme": "rsa"}, "'signature' is malformed"),
            ("signed_not_object", None, "'signature' is malformed")):
        doc = json.loads(digest_doc(content))
        doc["signature"] = "sig" if change is None else {**sig, **change}
        c.add(name, expect, lambda p, d=json.dumps(doc).encode(): write_content(p, content, d), **signed)
    return c.items


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 1
    return bytes(out)


def _entry(doc, i, **change):
    doc["members"][i].update(change)
    return doc


def _cd_entries(raw: bytes, start: int):
    """(offset of each central directory entry, its name)."""
    out, at = [], start
    while raw[at:at + 4] == b"PK\x01\x02":
        n, e, k = struct.unpack_from("<HHH", raw, at + 28)
        out.append((at, raw[at + 46: at + 46 + n].decode()))
        at += 46 + n + e + k
    return out


def _patch(path, member, fields):
    """Overwrite header fields of `member`: {central directory offset: (fmt, value)}, each
    applied to the central entry and (offset - 2, for the local header's layout) its local one."""
    with zipfile.ZipFile(path) as z:
        start = z.start_dir
        local = z.getinfo(member).header_offset
    raw = bytearray(open(path, "rb").read())
    for at, name in _cd_entries(bytes(raw), start):
        if name == member:
            for off, (fmt, value, in_local) in fields.items():
                struct.pack_into(fmt, raw, at + off, value)
                if in_local:
                    struct.pack_into(fmt, raw, local + off - 2, value)
    open(path, "wb").write(raw)


def _lie_about_size(path, content, member, size, digest, method=zipfile.ZIP_DEFLATED, both=False):
    """A zip whose headers say `member` holds `size` bytes (both sizes when `both`)."""
    write_entries(path, [(k, content[k], method) for k in CONTENT] + [("digest.json", digest)])
    fields = {24: ("<L", size, True)}
    if both:
        fields[20] = ("<L", size, True)
    _patch(path, member, fields)


def _set_flag(path, good, member, flag):
    write_entries(path, list(good.items()))
    with zipfile.ZipFile(path) as z:
        old = z.getinfo(member).flag_bits
    _patch(path, member, {8: ("<H", old | flag, True)})


# ---- the loading process ----------------------------------------------------------------

class Hang(BaseException):
    """Raised by the alarm: BaseException, so that `lgc run`'s error line does not catch it."""


def worker(cases_path, out_path):
    """Load and run every case by lgc.load and by `lgc run`; write what happened."""
    import contextlib
    import io
    import resource
    import signal
    import tracemalloc

    import lgc
    from lgc.errors import LgcError
    from lgc.feeds import random_inputs
    from lgc.runtime.artifact_sign import public_keys
    from lgc.tools.cli import main

    spec = json.load(open(cases_path))

    def on_alarm(*_):
        raise Hang()
    signal.signal(signal.SIGALRM, on_alarm)

    def load_and_run(case):
        exe = lgc.load(case["path"], trusted_keys=spec["pub"] if case["trusted"] else None)
        exe.run(random_inputs(exe.input_types(), 0))

    def cli(case):
        argv = ["run", case["path"], "--random"] + (["--trusted-keys", spec["pub"]] if case["trusted"] else [])
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
        return rc, err.getvalue()

    good = {"path": spec["good"], "trusted": False}
    load_and_run(good)                          # OpenCL up, kernels built: the baseline
    public_keys(spec["pub"])                    # cryptography imported
    assert cli(good)[0] == 0
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    results = []
    for case in spec["cases"]:
        print("case", case["name"], flush=True)          # the last one names a crash
        r = {"name": case["name"]}
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        signal.alarm(TIMEOUT_S)
        try:
            load_and_run(case)
            r["api"] = "loaded"
        except Hang:
            r["api"] = "hang"
        except LgcError as e:
            r.update(api="lgc", type=type(e).__name__, msg=str(e))
        except BaseException as e:       # noqa: B036 (what the test looks for)
            r.update(api="raw", type=type(e).__name__, msg=str(e)[:300])
        finally:
            signal.alarm(0)
        r["peak"] = tracemalloc.get_traced_memory()[1] - before
        signal.alarm(TIMEOUT_S)
        try:
            r["cli_rc"], r["cli_err"] = cli(case)
        except Hang:
            r["cli_rc"], r["cli_err"] = "hang", ""
        finally:
            signal.alarm(0)
        results.append(r)
    tracemalloc.stop()
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) * 1024
    with open(out_path, "w") as f:
        json.dump({"results": results, "rss_growth": growth}, f)


# ---- the test -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    pub = tmp_path_factory.mktemp("keys") / "trusted.pub.pem"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, other, pub


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    import lgc
    folder = tmp_path_factory.mktemp("fuzz")
    tiny_model(folder / "tiny.onnx")
    lgc.compile(str(folder / "tiny.onnx")).save(folder / "good.lgc")
    return folder, members_of(folder / "good.lgc")


def test_hostile_artifacts_are_refused(good, keys, tmp_path):
    folder, members = good
    key, other, pub = keys
    cases = build_cases(folder, members, key, other)
    declared = sum(e["size"] for e in json.loads(members["digest.json"])["members"])
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps({"good": str(folder / "good.lgc"), "pub": str(pub), "cases": cases}))
    out = tmp_path / "results.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, __file__, str(spec), str(out)], capture_output=True,
                          text=True, timeout=TIMEOUT_S * 2 * 4 + 120, env=env)
    last = proc.stdout.strip().splitlines()[-1:] or ["(none)"]
    assert proc.returncode == 0, (f"the loading process died ({proc.returncode}) at {last[0]}: "
                                  f"{proc.stderr[-2000:]}")
    report = json.loads(out.read_text())
    results = {r["name"]: r for r in report["results"]}
    assert len(cases) >= 100 and len(results) == len(cases)
    bad = []
    for case in cases:
        r = results[case["name"]]
        name = os.path.basename(case["path"])
        msg = r.get("msg", "")
        if r["api"] != "lgc":
            bad.append(f"{case['name']}: lgc.load gave {r['api']} {r.get('type', '')}: {msg[:200]}")
        elif "\n" in msg or name not in msg:
            bad.append(f"{case['name']}: error is not one line naming the file: {msg!r}")
        elif not re.search(case["expect"], msg):
            bad.append(f"{case['name']}: {msg!r} does not match {case['expect']!r}")
        if r["cli_rc"] != 1 or r["cli_err"] != f"lgc: error: {msg}\n":
            bad.append(f"{case['name']}: lgc run gave {r['cli_rc']}: {r['cli_err'][:200]!r}")
        if r["peak"] > 2 * declared:
            bad.append(f"{case['name']}: {r['peak']} bytes allocated for a {declared}-byte artifact")
    assert not bad, f"{len(bad)} of {len(cases)} cases:\n" + "\n".join(bad)
    peak = max(r["peak"] for r in results.values())
    print(f"{len(cases)} hostile files refused; declared size {declared} B; largest tracemalloc "
          f"peak {peak} B ({peak / declared:.2f}x); peak RSS growth {report['rss_growth']} B "
          f"({report['rss_growth'] / declared:.2f}x)")
    assert report["rss_growth"] <= 2 * declared, f"peak RSS grew {report['rss_growth']} bytes"


if __name__ == "__main__":
    worker(*sys.argv[1:])
