"""The PyTorch models the torch front end is checked on (tests/test_torch_frontend.py) and timed
on (bench/torch_models.py), built from torch.nn and transformers' config classes with seeded
random weights (torchvision's wheel does not load here, and nothing is downloaded).

Each builder takes `small=True` for the test sizes: fewer blocks and narrower layers, the
same block structure (and, for the transformers, the real head dimension of 64).
"""
from __future__ import annotations

import torch
from torch import nn


def _seeded(builder):
    def build(*args, seed: int = 0, **kwargs):
        torch.manual_seed(seed)
        model = builder(*args, **kwargs).eval()
        with torch.no_grad():   # batch norms with non-trivial statistics, as in a trained net
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 1.5)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
        return model
    build.__name__ = builder.__name__
    build.__doc__ = builder.__doc__
    return build


# ---- ResNet-18 --------------------------------------------------------------------------

class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    def __init__(self, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), classes=1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        layers, cin = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(BasicBlock(cin, w, 2 if i > 0 and j == 0 else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


@_seeded
def resnet18(small=False):
    """ResNet-18: [2, 2, 2, 2] basic blocks of 64..512 channels (small: one block a stage, 16..128)."""
    if small:
        return ResNet((16, 32, 64, 128), (1, 1, 1, 1), classes=10)
    return ResNet()


# ---- MobileNetV3 ------------------------------------------------------------------------

class SqueezeExcite(nn.Module):
    def __init__(self, c, squeeze):
        super().__init__()
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)

    def forward(self, x):
        s = torch.nn.functional.adaptive_avg_pool2d(x, 1)
        return x * torch.nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(s))))


class InvertedResidual(nn.Module):
    def __init__(self, cin, kernel, expand, cout, se, hswish, stride):
        super().__init__()
        act = nn.Hardswish if hswish else nn.ReLU
        layers = []
        if expand != cin:
            layers += [nn.Conv2d(cin, expand, 1, bias=False), nn.BatchNorm2d(expand), act()]
        layers += [nn.Conv2d(expand, expand, kernel, stride, kernel // 2, groups=expand, bias=False),
                   nn.BatchNorm2d(expand), act()]
        if se:
            layers.append(SqueezeExcite(expand, max(8, expand // 4)))
        layers += [nn.Conv2d(expand, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


# (kernel, expanded, out, squeeze-excite, hard-swish, stride): MobileNetV3-Small's table
_MBV3_SMALL = [(3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1),
               (5, 96, 40, True, True, 2), (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
               (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1), (5, 288, 96, True, True, 2),
               (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1)]


class MobileNetV3(nn.Module):
    def __init__(self, table, last=1024, classes=1000):
        super().__init__()
        layers = [nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish()]
        cin = 16
        for k, e, c, se, hs, s in table:
            layers.append(InvertedResidual(cin, k, e, c, se, hs, s))
            cin = c
        layers += [nn.Conv2d(cin, 6 * cin, 1, bias=False), nn.BatchNorm2d(6 * cin), nn.Hardswish()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(6 * cin, last), nn.Hardswish(), nn.Dropout(0.2),
                                  nn.Linear(last, classes))

    def forward(self, x):
        x = self.features(x)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@_seeded
def mobilenet_v3(small=False):
    """MobileNetV3-Small (small: its first five blocks and a narrower head)."""
    if small:
        return MobileNetV3(_MBV3_SMALL[:5], last=64, classes=10)
    return MobileNetV3(_MBV3_SMALL)


# ---- ViT-B/16 ---------------------------------------------------------------------------

class EncoderBlock(nn.Module):
    """Pre-norm transformer block as torchvision's ViT: nn.MultiheadAttention, GELU MLP."""

    def __init__(self, d, heads, mlp):
        super().__init__()
        self.ln1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(d, mlp), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp, d))

    def forward(self, x):
        y = self.ln1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class ViT(nn.Module):
    def __init__(self, image=224, patch=16, d=768, depth=12, heads=12, mlp=3072, classes=1000):
        super().__init__()
        self.patch = nn.Conv2d(3, d, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, d) * 0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(d, heads, mlp) for _ in range(depth)])
        self.ln = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = self.ln(self.blocks(x))
        return self.head(x[:, 0])


@_seeded
def vit_b16(small=False):
    """ViT-B/16 at 224x224 (small: 64x64 images, 2 blocks of width 256 with 4 heads of 64)."""
    if small:
        return ViT(image=64, d=256, depth=2, heads=4, mlp=1024, classes=10)
    return ViT()


# ---- ConvNeXt ---------------------------------------------------------------------------

class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (ConvNeXt's downsampling layers)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.dwconv = nn.Conv2d(d, d, 7, padding=3, groups=d)
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.pw1 = nn.Linear(d, 4 * d)
        self.pw2 = nn.Linear(4 * d, d)
        self.gamma = nn.Parameter(torch.rand(d) * 0.5 + 0.25)

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pw2(nn.functional.gelu(self.pw1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, dims=(96, 192, 384, 768), depths=(3, 3, 9, 3), classes=1000):
        super().__init__()
        layers = [nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6)]
        for i, (d, n) in enumerate(zip(dims, depths)):
            if i:
                layers += [LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], d, 2, 2)]
            layers += [ConvNeXtBlock(d) for _ in range(n)]
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], classes)

    def forward(self, x):
        return self.head(self.norm(self.features(x).mean((2, 3))))


@_seeded
def convnext(small=False):
    """ConvNeXt-T's block stack (small: two stages of two blocks, 32 and 64 channels)."""
    if small:
        return ConvNeXt((32, 64), (2, 2), classes=10)
    return ConvNeXt()


# ---- LSTM -------------------------------------------------------------------------------

class LSTMTagger(nn.Module):
    """Two stacked LSTM layers over an embedded sequence, a linear head on every step."""

    def __init__(self, vocab=100, d=64, hidden=128, layers=2, classes=10):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.lstm = nn.LSTM(d, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, ids):
        out, _ = self.lstm(self.emb(ids))
        return self.head(out)


@_seeded
def lstm(small=False):
    return LSTMTagger(hidden=64 if small else 256)


# ---- transformers -----------------------------------------------------------------------

def _transformers_config(cls, small, **kwargs):
    cfg = cls(**kwargs)
    if small:   # 2 layers of width 256 with 4 heads of 64; the real vocabulary is kept small too
        cfg = cls(**{**kwargs, **_small_sizes(cls)})
    cfg._attn_implementation = "eager"   # the reference attention: plain matmul + softmax
    return cfg


def _small_sizes(cls):
    name = cls.__name__
    if name == "BertConfig":
        return dict(num_hidden_layers=2, hidden_size=256, num_attention_heads=4,
                    intermediate_size=1024, vocab_size=1000)
    return dict(n_layer=2, n_embd=256, n_head=4, vocab_size=1000)


@_seeded
def bert_base(small=False):
    """BERT-base from transformers.BertConfig() (small: 2 layers of width 256, 4 heads of 64)."""
    from transformers import BertConfig, BertModel
    return BertModel(_transformers_config(BertConfig, small), add_pooling_layer=True)


@_seeded
def gpt2_small(small=False, use_cache=False):
    """GPT-2 small from transformers.GPT2Config() with its LM head (small: 2 layers of 256)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    return GPT2LMHeadModel(_transformers_config(GPT2Config, small, use_cache=use_cache))


CNN_INPUT = {"resnet18": 224, "mobilenet_v3": 224, "vit_b16": 224, "convnext": 224}


def _cache_argument() -> str:
    """transformers renamed past_key_values to cache (5.x); either is taken here."""
    import inspect
    from transformers import GPT2LMHeadModel
    return "cache" if "cache" in inspect.signature(GPT2LMHeadModel.forward).parameters else "past_key_values"


class GPT2WithPast(nn.Module):
    """GPT-2 decoding with a key/value cache as plain tensors: (ids, k0, v0, k1, v1, ...) ->
    (logits, new k0, new v0, ...), the past of length P extended by the S new tokens."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm
        self.cache_argument = _cache_argument()

    def forward(self, input_ids, *past):
        from transformers import DynamicCache
        cache = DynamicCache(config=self.lm.config)
        for layer in range(len(past) // 2):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        out = self.lm(input_ids=input_ids, **{self.cache_argument: cache}, use_cache=True)
        present = getattr(out, self.cache_argument)
        return (out.logits,) + tuple(t for layer in present.layers for t in (layer.keys, layer.values))


def gpt2_past(lm, batch: int, length: int, seed: int = 1) -> tuple[torch.Tensor, ...]:
    """A random past (k, v per layer) for GPT2WithPast, of `length` positions."""
    cfg = lm.config
    g = torch.Generator().manual_seed(seed)
    shape = (batch, cfg.n_head, length, cfg.n_embd // cfg.n_head)
    return tuple(torch.randn(shape, generator=g) for _ in range(2 * cfg.n_layer))


# ---- the training models (tests/test_torch_training.py, bench/torch_training.py) -----------

class SmallCNN(nn.Module):
    """conv, batch norm (training mode), relu, max pool, linear, for 3x16x16 images. The conv
    has no bias: the batch norm right after cancels it, so its gradient is rounding noise."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1))


def train_gpt2(seed: int = 0):
    """A GPT-2 LM to train: 2 layers, 64 positions, width 64, 4 heads, 256 tokens, dropouts 0
    (lgc refuses random dropout masks), no key/value cache returned."""
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=2, n_positions=64, n_embd=64, n_head=4, vocab_size=256,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False,
                        bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config)


def counting_batches(steps: int, batch: int = 2, length: int = 64, seed: int = 0) -> list:
    """Token sequences counting up (mod 256) from random starts: learnable in a few steps."""
    starts = torch.randint(0, 256, (steps, batch, 1), generator=torch.Generator().manual_seed(seed))
    return list((starts + torch.arange(length)) % 256)


def image_batches(steps: int, batch: int = 8, seed: int = 0) -> list:
    """(images 3x16x16, labels of 10 classes) per step."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, 16, 16, generator=g), torch.randint(0, 10, (batch,), generator=g))
            for _ in range(steps)]


def cnn_loss(model, batch):
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


def lm_loss(model, ids):
    return model(ids, labels=ids).loss
