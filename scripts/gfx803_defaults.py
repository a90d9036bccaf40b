"""Regenerate lgc/backends/tuned/gfx803.json: GEMM parameters for the matmul/conv shapes of
onnx's light models on the RX 580 (gfx803).

No gfx803 is at hand, so these are not timings: for each shape the heuristic's pick is
compiled offline for polaris10 (lgc.backends.isa) and kept if it has no scratch and reaches at
least 4 waves per SIMD; otherwise the next preset that does. The file records the figures.
Replace entries with `lgc tune` results on a real RX 580 (they go to the user database, which
wins over this file). Usage: python scripts/gfx803_defaults.py [model ...]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from lgc.backends import gpu_gemm, isa, tuner
from lgc.backends.kernel import render
from lgc.backends.program import PRELUDE
from lgc.backends.target import GFX803
from lgc.frontend.onnx.importer import default_input_types, import_graph, load_model
from lgc.passes import optimize
from lgc.tools.demo import light_model_path

MODELS = ["resnet50", "vgg19", "inception_v1", "densenet121", "squeezenet", "bvlc_alexnet"]
OUT = Path(__file__).resolve().parent.parent / "lgc" / "backends" / "tuned" / "gfx803.json"


def check(task, params):
    k = tuner.kernel_for(task, params, GFX803, "k")
    (r,) = isa.compile_resources(PRELUDE + render(k), {"k": params.threads})
    return r


def main(models) -> None:
    entries = {}
    for name in models:
        m = load_model(light_model_path(name))
        graph = optimize(import_graph(m, default_input_types(m)), 2)
        for task in tuner.tasks(graph, GFX803):
            if task.signature in entries:
                continue
            order = [task.default] + [p for p in gpu_gemm.PRESETS.values() if p != task.default]
            for p in order:
                if not gpu_gemm.valid(p, GFX803):
                    continue
                r = check(task, p)
                if not r.spills and r.waves >= 4:
                    break
            entries[task.signature] = {
                "params": p.as_dict(), "source": f"heuristic, ISA-checked ({name})",
                "isa": {"vgprs": r.vgprs, "sgprs": r.sgprs, "lds_bytes": r.lds_bytes,
                        "scratch_bytes": r.scratch_bytes, "waves_per_simd": r.waves}}
            print(f"{task.signature:<36} {r.vgprs:>3} VGPRs {r.lds_bytes:>6} B LDS {r.waves:>2} waves", flush=True)
    doc = {"target": "gfx803 (RX 580)",
           "note": "Heuristic picks validated by the offline ISA report (registers, LDS, "
                   "occupancy via clang-16/libclc for polaris10), NOT timings on a gfx803: none "
                   "was available. Regenerate with scripts/gfx803_defaults.py; `lgc tune` on a "
                   "real RX 580 writes timed winners to the user database, which takes precedence.",
           "entries": entries}
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} ({len(entries)} shapes)")


if __name__ == "__main__":
    main(sys.argv[1:] or MODELS)
