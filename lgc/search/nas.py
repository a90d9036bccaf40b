"""Hardware-aware architecture search: a small CNN for 8x8 images chosen by NSGA-II on two
objectives, 1 - validation accuracy and latency on a target.

The space: a 3x3 stem, then 1 to 4 inverted-residual blocks (MobileNetV2 style: a 1x1 expansion
by 1/2/4/6, a depthwise 3x3 or 5x5, a 1x1 projection to 8..32 channels, a skip when the widths
match), 2x2 average pooling after the first two blocks, and a dense layer over the flattened
map. A genome is a tuple of `Block`s, hashable as NSGA-II needs.

Accuracy: a short seeded training run (lgc.jit of lgc.value_and_grad, Adam from lgc.optim),
then top-1 on a held-out validation split. Latency: the inference function traced at a fixed
batch and compiled for the target (lgc.search.latency, shared with the compression search): for
a named GPU target (gfx803) the program is lowered for it and priced by the planner's cost model
(deterministic); for "device" it is compiled for the OpenCL device and timed (it varies from
run to run). Every random
choice draws from a seed, so a search on the cost model repeats exactly.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

import lgc
import lgc.nn as nn
import lgc.numpy as lnp
import lgc.optim as optim
import lgc.tree_util as tu

from ..errors import InputError
from .latency import CostModelLatency, MeasuredLatency
from .nsga2 import SearchResult, evolve

POOLED_BLOCKS = 2          # 2x2 average pooling follows each of the first two blocks


class Block(NamedTuple):
    """One inverted-residual block: output channels, depthwise kernel size, expansion ratio."""
    width: int
    kernel: int
    expansion: int

    def __str__(self) -> str:
        return f"{self.width}k{self.kernel}e{self.expansion}"


Arch = tuple          # tuple[Block, ...]: the genome


def as_blocks(arch) -> Arch:
    """Any sequence of (width, kernel, expansion) as a tuple of Blocks."""
    return tuple(Block(*b) for b in arch)


def arch_str(arch: Arch) -> str:
    """'16k3e1-24k5e4': each block as width, k kernel, e expansion."""
    return "-".join(str(b) for b in as_blocks(arch))


@dataclass(frozen=True)
class Space:
    """The choices per block and the allowed depths."""
    depths: tuple = (1, 2, 3, 4)
    widths: tuple = (8, 16, 24, 32)
    kernels: tuple = (3, 5)
    expansions: tuple = (1, 2, 4, 6)

    def __post_init__(self):
        for name in ("depths", "widths", "kernels", "expansions"):
            vals = getattr(self, name)
            if not vals or any(not isinstance(v, int) or v < 1 for v in vals):
                raise InputError(f"search space {name} must be positive integers, got {vals!r}")
        if any(k % 2 == 0 for k in self.kernels):
            raise InputError(f"search space kernels must be odd (SAME padding), got {self.kernels!r}")

    @property
    def size(self) -> int:
        per = len(self.widths) * len(self.kernels) * len(self.expansions)
        return sum(per ** d for d in self.depths)

    def check(self, arch: Arch) -> Arch:
        """The arch as a tuple of Blocks, or an InputError naming what is outside the space."""
        arch = as_blocks(arch)
        if len(arch) not in self.depths:
            raise InputError(f"architecture {arch_str(arch)!r}: depth {len(arch)} not in {self.depths}")
        for b in arch:
            if (b.width not in self.widths or b.kernel not in self.kernels
                    or b.expansion not in self.expansions):
                raise InputError(f"architecture {arch_str(arch)!r}: block {b} is outside the space "
                                 f"(widths {self.widths}, kernels {self.kernels}, "
                                 f"expansions {self.expansions})")
        return arch

    def block(self, rng: np.random.Generator) -> Block:
        return Block(int(rng.choice(self.widths)), int(rng.choice(self.kernels)),
                     int(rng.choice(self.expansions)))

    def sample(self, rng: np.random.Generator) -> Arch:
        return tuple(self.block(rng) for _ in range(int(rng.choice(self.depths))))

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """One change: a block's width, kernel or expansion redrawn, or a block added or removed."""
        blocks = list(arch)
        moves = ["gene"]
        if len(blocks) + 1 in self.depths:
            moves.append("add")
        if len(blocks) - 1 in self.depths:
            moves.append("remove")
        move = moves[int(rng.integers(len(moves)))]
        if move == "add":
            blocks.insert(int(rng.integers(len(blocks) + 1)), self.block(rng))
        elif move == "remove":
            del blocks[int(rng.integers(len(blocks)))]
        else:
            i = int(rng.integers(len(blocks)))
            name = ("width", "kernel", "expansion")[int(rng.integers(3))]
            blocks[i] = blocks[i]._replace(**{name: int(rng.choice(getattr(self, name + "s")))})
        return tuple(blocks)

    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        """One-point: a's first blocks then b's last ones, the depth kept inside the space."""
        for _ in range(8):
            child = a[:int(rng.integers(1, len(a) + 1))] + b[int(rng.integers(len(b) + 1)):]
            if len(child) in self.depths:
                return child
        return a


# -- the network ----------------------------------------------------------------------------

def init_params(arch: Arch, seed: int, side: int = 8, channels: int = 1,
                classes: int = 10) -> dict:
    """He-initialised weights (zero biases) for `arch` on [N, channels, side, side] inputs."""
    arch = as_blocks(arch)
    rng = np.random.default_rng(seed)

    def he(*shape):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 2 else shape[0]
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def zeros(n):
        return np.zeros(n, np.float32)

    c = arch[0].width
    p = {"stem": he(c, channels, 3, 3), "stem_b": zeros(c)}
    for i, b in enumerate(arch):
        hidden = c * b.expansion
        if b.expansion > 1:
            p[f"b{i}_expand"], p[f"b{i}_expand_b"] = he(hidden, c, 1, 1), zeros(hidden)
        p[f"b{i}_dw"], p[f"b{i}_dw_b"] = he(hidden, 1, b.kernel, b.kernel), zeros(hidden)
        p[f"b{i}_project"], p[f"b{i}_project_b"] = he(b.width, hidden, 1, 1), zeros(b.width)
        c = b.width
    s = side >> min(len(arch), POOLED_BLOCKS)
    p["head"], p["head_b"] = he(c * s * s, classes), zeros(classes)
    return p


def logits(arch: Arch, p: dict, x):
    """Class scores of `arch` with weights p for images x [N, C, H, W]."""
    h = nn.relu(nn.conv(x, p["stem"], padding="SAME", bias=p["stem_b"]))
    for i, b in enumerate(as_blocks(arch)):
        skip = h
        if b.expansion > 1:
            h = nn.relu(nn.conv(h, p[f"b{i}_expand"], bias=p[f"b{i}_expand_b"]))
        h = nn.relu(nn.conv(h, p[f"b{i}_dw"], padding="SAME", groups=h.shape[1],
                            bias=p[f"b{i}_dw_b"]))
        h = nn.conv(h, p[f"b{i}_project"], bias=p[f"b{i}_project_b"])
        if h.shape == skip.shape:
            h = h + skip
        if i < POOLED_BLOCKS:
            h = nn.avg_pool(h, (2, 2))
    h = lnp.reshape(h, (h.shape[0], -1))
    return h @ p["head"] + p["head_b"]


# -- data and training ---------------------------------------------------------------------

@dataclass(frozen=True)
class Data:
    """Images [N, C, H, W] float32 and int labels: training, validation (what the search
    ranks on) and test (reported only)."""
    xtr: np.ndarray
    ytr: np.ndarray
    xval: np.ndarray
    yval: np.ndarray
    xte: np.ndarray
    yte: np.ndarray

    @classmethod
    def split(cls, xtr, ytr, xte, yte, val_fraction: float = 0.2, seed: int = 0) -> "Data":
        """Carve a seeded validation split out of the training set."""
        if not 0 < val_fraction < 1:
            raise InputError(f"validation fraction must be in (0, 1), got {val_fraction}")
        order = np.random.default_rng(seed).permutation(len(xtr))
        n_val = int(len(xtr) * val_fraction)
        va, tr = order[:n_val], order[n_val:]
        return cls(xtr[tr], ytr[tr], xtr[va], ytr[va], xte, yte)

    def subset(self, n_train: int, n_eval: int) -> "Data":
        """The first examples of each split (reduced-size runs and tests)."""
        return Data(self.xtr[:n_train], self.ytr[:n_train], self.xval[:n_eval],
                    self.yval[:n_eval], self.xte[:n_eval], self.yte[:n_eval])


@dataclass(frozen=True)
class Recipe:
    """How every candidate (and the baseline) is trained: Adam, fixed epochs and batch, seeded
    initialisation and shuffling."""
    epochs: int = 10
    batch: int = 64
    lr: float = 2e-3
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 1 or self.batch < 1 or not self.lr > 0:
            raise InputError(f"training recipe needs epochs >= 1, batch >= 1 and lr > 0, got {self}")


def cross_entropy(logits_fn: Callable, p, x, y):
    lp = nn.log_softmax(logits_fn(p, x))
    return -lnp.mean(lnp.take_along_axis(lp, y[:, None], axis=1))


def train(init_fn: Callable[[int], dict], logits_fn: Callable, x, y, recipe: Recipe) -> dict:
    """Weights after `recipe.epochs` of Adam on mini-batches (the last partial one dropped)."""
    if len(x) < recipe.batch:
        raise InputError(f"training set of {len(x)} examples is smaller than the batch {recipe.batch}")
    opt = optim.adam(recipe.lr)

    @lgc.jit
    def step(p, opt_state, xb, yb):
        value, g = lgc.value_and_grad(lambda q: cross_entropy(logits_fn, q, xb, yb))(p)
        updates, opt_state = opt.update(g, opt_state, p)
        return optim.apply_updates(p, updates), opt_state, value

    params = init_fn(recipe.seed)
    opt_state = opt.init(params)
    rng = np.random.default_rng(recipe.seed)
    for _ in range(recipe.epochs):
        order = rng.permutation(len(x))
        for b in range(len(x) // recipe.batch):
            idx = order[b * recipe.batch:(b + 1) * recipe.batch]
            params, opt_state, _ = step(params, opt_state, x[idx], y[idx])
    return tu.tree_map(np.asarray, params)


def accuracies(logits_fn: Callable, params, *sets) -> list[float]:
    """Top-1 on each (x, y) set, from one jitted run over all of them."""
    x = np.concatenate([s[0] for s in sets])
    pred = np.asarray(lgc.jit(lambda p, xs: lnp.argmax(logits_fn(p, xs), axis=-1))(params, x))
    out, at = [], 0
    for xs, ys in sets:
        out.append(float(np.mean(pred[at:at + len(xs)] == ys)))
        at += len(xs)
    return out


# -- latency -------------------------------------------------------------------------------

def latency_model(target: str):
    """'device' -> MeasuredLatency on the OpenCL device (LGC_DEVICE or the default), a GPU
    target name (gfx803) -> CostModelLatency: lgc.search.latency, the convention every search
    shares."""
    return MeasuredLatency() if target == "device" else CostModelLatency(target)


def inference_graph(logits_fn: Callable, params, x, batch: int):
    """The trained model's inference function traced at `batch` images, weights as constants."""
    xb = np.zeros((batch,) + x.shape[1:], np.float32)
    return lgc.make_ir(lambda xs: logits_fn(params, xs))(xb)


# -- evaluation and search -------------------------------------------------------------------

@dataclass
class Evaluation:
    """What a trained model scored: objectives (1 - validation accuracy, latency seconds)."""
    accuracy: float
    test_accuracy: float
    latency_s: float
    params: int
    kernels: int
    seconds: float                  # wall clock of this evaluation (training, compiling)
    extra: dict = field(default_factory=dict)

    @property
    def objectives(self) -> tuple[float, float]:
        return (1.0 - self.accuracy, self.latency_s)


def evaluate_model(init_fn: Callable[[int], dict], logits_fn: Callable, data: Data,
                   recipe: Recipe, latency, batch: int = 1) -> Evaluation:
    """Train with the recipe, score validation and test top-1, price the latency of the
    inference function at `batch` images."""
    if batch < 1:
        raise InputError(f"latency batch must be at least 1, got {batch}")
    t0 = time.perf_counter()
    params = train(init_fn, logits_fn, data.xtr, data.ytr, recipe)
    acc, test = accuracies(logits_fn, params, (data.xval, data.yval), (data.xte, data.yte))
    est = latency.estimate(inference_graph(logits_fn, params, data.xtr, batch))
    n_params = int(sum(np.asarray(v).size for v in params.values()))
    extra = {} if est.roofline_s is None else {"roofline_s": est.roofline_s}
    return Evaluation(acc, test, est.seconds, n_params, est.kernels, time.perf_counter() - t0, extra)


def evaluate_arch(arch: Arch, data: Data, recipe: Recipe, latency, batch: int = 1) -> Evaluation:
    side, channels = data.xtr.shape[2], data.xtr.shape[1]
    return evaluate_model(lambda seed: init_params(arch, seed, side, channels,
                                                   int(max(data.ytr.max(), data.yval.max())) + 1),
                          lambda p, x: logits(arch, p, x), data, recipe, latency, batch)


def search(data: Data, *, space: Space = Space(), recipe: Recipe = Recipe(), latency=None,
           population: int = 8, generations: int | None = None, budget_s: float | None = None,
           max_evaluations: int | None = None, seed: int = 0, progress: bool = True,
           seeds=(), batch: int = 1) -> SearchResult:
    """NSGA-II over `space` minimising (1 - validation accuracy, latency). Each Individual's
    info holds its Evaluation under "eval"; latency is priced at `batch` images. With a
    cost-model latency and no budget_s cutting it short, the same seed gives the same result."""
    latency = latency or CostModelLatency()
    seeds = [space.check(a) for a in seeds]
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None)
    count = [0]

    def evaluate(arch):
        ev = evaluate_arch(arch, data, recipe, latency, batch)
        count[0] += 1
        say(f"  [{count[0]:3d}] {arch_str(arch):<28} val {ev.accuracy:.4f}  "
            f"latency {ev.latency_s * 1e6:8.1f} us  {ev.kernels:3d} kernels  ({ev.seconds:.1f}s)")
        return ev.objectives, {"eval": ev}

    return evolve(space.sample, space.mutate, space.crossover, evaluate,
                  population=population, generations=generations, budget_s=budget_s,
                  max_evaluations=max_evaluations, seed=seed, progress=progress, seeds=seeds)
