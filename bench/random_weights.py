"""Seeded random weights for the onnx "light" models (lgc.testing.randomize, which the tests
use too; see its docstring for the distributions).

The light models ship every weight as a ConstantOfShape of 0.02, which a compiler can fold
away and which hides numerical bugs (every channel equal, the output the same for every
input).

    python bench/random_weights.py light_resnet50.onnx out.onnx [--seed 0]
"""
from __future__ import annotations

import sys

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import onnx

from lgc.testing import LIGHT_MODELS, light_model_path, randomize, with_logits

__all__ = ["LIGHT_MODELS", "light_model_path", "randomize", "with_logits"]


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("output")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    onnx.save(randomize(onnx.load(a.model), a.seed), a.output)
    print(f"wrote {a.output}", file=sys.stderr)
