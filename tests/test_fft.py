"""The fft op and lgc.numpy.fft against np.fft: every transform type over lengths that take
each kernel path (radix-2, the real half-length trick, the direct DFT, computed twiddles),
on the CPU and GPU schedules (the GPU kernels run on PoCL too); lnp.fft's n/s/axis/axes/norm
handling; gradients of real losses against float64 central differences; vmap and jvp.

Tolerances: float32 transforms of unit normal data; an error is measured against the
largest output magnitude (an FFT's error is spread evenly over its bins)."""
import numpy as np
import pytest

import lgc
import lgc.numpy as lnp
from lgc.backends.kernels import fft as fft_kernels
from lgc.backends.target import GFX803
from lgc.testing import check_ops, numerical_grad

RNG = np.random.default_rng(0)


def _c(*shape):
    return (RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)).astype(np.complex64)


def _r(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def close(got, want, tol=2e-6):
    """got (lgc, float32/complex64) against want (NumPy, any precision): same shape and
    single-precision type, max error within tol of the largest magnitude (times log n)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == (np.complex64 if want.dtype.kind == "c" else np.float32), got.dtype
    scale = max(np.abs(want).max(initial=0.0), 1.0)
    n = max(want.size, 2)
    err = np.abs(got - want).max(initial=0.0) / scale
    assert err <= tol * np.log2(n), err


def _cases(lengths, rows=(3,)):
    cases = []
    for n in lengths:
        at = {"length": n}
        cases += [("fft", [_c(*rows, n)], {**at, "fft_type": "fft"}),
                  ("fft", [_c(*rows, n)], {**at, "fft_type": "ifft"}),
                  ("fft", [_r(*rows, n)], {**at, "fft_type": "rfft"}),
                  ("fft", [_c(*rows, n // 2 + 1)], {**at, "fft_type": "irfft"})]
    return cases


# powers of two (radix-2; real ones as half-length complex), odd, prime and other lengths
LENGTHS = [1, 2, 3, 4, 5, 6, 8, 13, 16, 64]


@pytest.mark.parametrize("target", [None, GFX803], ids=["cpu", "gpu"])
def test_op_against_numpy(target):
    check_ops(_cases(LENGTHS) + _cases([8, 5], rows=(2, 0, 3)) + _cases([16, 3], rows=(2, 3)),
              rtol=1e-4, atol=2e-5 * 64, target=target)


@pytest.mark.parametrize("target", [None, GFX803], ids=["cpu", "gpu"])
def test_op_bluestein(target):
    """Lengths past DIRECT_MAX that are not powers of two: the chirp-z rewrite."""
    from lgc.backends.fft_rewrite import DIRECT_MAX
    check_ops(_cases([DIRECT_MAX + 1, 100], rows=(2,)), rtol=1e-4, atol=2e-4, target=target)


@pytest.mark.parametrize("target", [None, GFX803], ids=["cpu", "gpu"])
def test_op_computed_twiddles(monkeypatch, target):
    """Transforms longer than a __constant table compute their twiddles (cospi/sinpi)."""
    monkeypatch.setattr(fft_kernels, "TABLE_MAX", 2)
    check_ops(_cases([8, 32, 6]), rtol=1e-4, atol=1e-4, target=target)


def test_op_type_errors():
    from lgc.ir import registry
    from lgc.ir.dtypes import c64, f32
    from lgc.ir.graph import TensorType
    infer = registry.get("fft").infer
    with pytest.raises(registry.OpError, match="needs c64 input"):
        infer([TensorType(f32, (4,))], {"fft_type": "fft", "length": 4})
    with pytest.raises(registry.OpError, match="needs 3 elements"):
        infer([TensorType(c64, (4,))], {"fft_type": "irfft", "length": 4})
    with pytest.raises(registry.OpError, match="positive"):
        infer([TensorType(c64, (0,))], {"fft_type": "fft", "length": 0})


# ---- lgc.numpy.fft -----------------------------------------------------------------------------

def test_one_axis_functions():
    x, z = _r(4, 7), _c(4, 6)
    flipped = _r(3, 9)[:, ::-1]          # negative strides
    for name in ("fft", "ifft", "rfft", "irfft", "hfft", "ihfft"):
        a = z if name in ("ifft", "irfft", "hfft") else x
        f, g = getattr(lnp.fft, name), getattr(np.fft, name)
        for kw in ({}, {"n": 5}, {"n": 11, "norm": "ortho"}, {"axis": 0, "norm": "forward"},
                   {"n": 3, "axis": 0, "norm": "backward"}):
            close(lgc.jit(lambda a: f(a, **kw))(a), g(a, **kw))
    close(lnp.fft.fft(flipped), np.fft.fft(flipped))
    close(lnp.fft.rfft(np.arange(6)), np.fft.rfft(np.arange(6)))     # integers become float32
    one = _r(1)
    close(lnp.fft.fft(one), np.fft.fft(one))                          # length 1
    close(lnp.fft.fft(np.zeros((0, 8), np.float32)), np.fft.fft(np.zeros((0, 8))))   # no rows


def test_many_axes():
    x, z = _r(3, 4, 5), _c(3, 4, 6)
    for name, a in (("fft2", z), ("ifft2", z), ("rfft2", x), ("irfft2", z), ("fftn", z),
                    ("ifftn", z), ("rfftn", x), ("irfftn", z)):
        f, g = getattr(lnp.fft, name), getattr(np.fft, name)
        for kw in ({}, {"s": (2, 5), "axes": (2, 0)}, {"norm": "ortho", "axes": (-1, 1)}):
            close(f(a, **kw), g(a, **kw))
    # s without axes: the last len(s) axes
    close(lnp.fft.rfftn(x, s=(3, 4)), np.fft.rfftn(x, s=(3, 4), axes=(1, 2)))
    close(lnp.fft.ifftn(z, s=(5,)), np.fft.ifftn(z, s=(5,), axes=(2,)))


def test_under_jit_with_flips():
    @lgc.jit
    def f(x, h):
        y = lnp.fft.irfft(lnp.fft.rfft(lnp.flip(x, -1)) * h, n=x.shape[-1])
        return y, lnp.fft.fftshift(lnp.fft.fft2(x)), lnp.fft.ifftshift(x, axes=0)
    x, h = _r(5, 10), _c(6)
    y, s, u = f(x, h)
    close(y, np.fft.irfft(np.fft.rfft(x[:, ::-1]) * h, n=10))
    close(s, np.fft.fftshift(np.fft.fft2(x)))
    np.testing.assert_array_equal(u, np.fft.ifftshift(x, axes=0))


def test_frequencies():
    for n, d in ((8, 1.0), (7, 0.1), (1, 2.0)):
        np.testing.assert_allclose(lnp.fft.fftfreq(n, d), np.fft.fftfreq(n, d), rtol=1e-6)
        np.testing.assert_allclose(lnp.fft.rfftfreq(n, d), np.fft.rfftfreq(n, d), rtol=1e-6)
    assert lnp.fft.fftfreq(4).dtype == np.float32


def test_errors():
    with pytest.raises(ValueError, match="Invalid number of FFT data points"):
        lnp.fft.fft(_r(4), n=0)
    with pytest.raises(ValueError, match="Invalid number of FFT data points"):
        lnp.fft.irfft(_c(1))                  # n = 2 * (1 - 1)
    with pytest.raises(ValueError, match="Invalid norm"):
        lnp.fft.fft(_r(4), norm="unitary")
    with pytest.raises(ValueError, match="needs a real input"):
        lnp.fft.rfft(_c(4))
    with pytest.raises(ValueError, match="repeated axes"):
        lnp.fft.fftn(_c(2, 2), axes=(0, 0))
    with pytest.raises(ValueError, match="multiple axes"):
        lnp.fft.fft(_c(2, 2), axis=(0, 1))
    with pytest.raises(ValueError, match="different lengths"):
        lnp.fft.fftn(_c(2, 2), s=(2,), axes=(0, 1))


# ---- gradients, vmap, jvp ----------------------------------------------------------------------

def _check_grad(loss_l, loss_np, x, tol=2e-3):
    want = numerical_grad(loss_np, x)
    got = lgc.jit(lgc.grad(loss_l))(x)
    assert got.dtype == x.dtype
    assert np.abs(got - want).max() <= tol * max(np.abs(want).max(), 1), (got, want)


@pytest.mark.parametrize("n", [1, 5, 8, 12])
def test_gradients_of_real_losses(n):
    x, w = _r(2, n), _r(2, n)
    h = _c(n // 2 + 1)
    _check_grad(lambda x: lnp.sum(lnp.abs(lnp.fft.fft(x)) ** 2),
                lambda x: np.sum(np.abs(np.fft.fft(x)) ** 2), x)
    _check_grad(lambda x: lnp.sum(lnp.fft.irfft(lnp.fft.rfft(x) * h, n=n) * w),
                lambda x: np.sum(np.fft.irfft(np.fft.rfft(x) * h, n=n) * w), x)
    _check_grad(lambda x: lnp.sum(lnp.real(lnp.fft.fft2(x, norm="ortho") * h[0]) ** 3),
                lambda x: np.sum(np.real(np.fft.fft2(x, norm="ortho") * h[0]) ** 3), x)
    _check_grad(lambda x: lnp.sum(lnp.imag(lnp.fft.ihfft(x, n=2 * n)) * lnp.arange(n + 1)),
                lambda x: np.sum(np.imag(np.fft.ihfft(x, n=2 * n)) * np.arange(n + 1)), x)


def test_long_lengths():
    x, z = _r(3, 1000), _c(2, 501)
    close(lnp.fft.rfft(x), np.fft.rfft(x))
    close(lnp.fft.irfft(z, n=999), np.fft.irfft(z, n=999))
    w = _r(3, 70)
    _check_grad(lambda x: lnp.sum(lnp.abs(lnp.fft.rfft(x * w)) ** 2),
                lambda x: np.sum(np.abs(np.fft.rfft(x * w)) ** 2), _r(3, 70))


@pytest.mark.parametrize("n", [3, 4])
def test_gradients_of_complex_inputs(n):
    z = _c(2, n)
    _check_grad(lambda z: lnp.sum(lnp.fft.irfft(z, n=2 * n - 1, norm="forward") ** 2),
                lambda z: np.sum(np.fft.irfft(z, n=2 * n - 1, norm="forward") ** 2), z)
    _check_grad(lambda z: lnp.sum(lnp.abs(lnp.fft.ifftn(z) * (1 + 2j)) ** 2),
                lambda z: np.sum(np.abs(np.fft.ifftn(z) * (1 + 2j)) ** 2), z)
    _check_grad(lambda z: lnp.sum(lnp.fft.hfft(z, n=4)),
                lambda z: np.sum(np.fft.hfft(z, n=4)), z)


def test_vmap_and_jvp():
    x = _r(4, 3, 8)
    for ax in (0, 1, 2):
        got = lgc.vmap(lambda v: lnp.fft.rfft(v, axis=0), in_axes=ax)(x)
        want = np.stack([np.fft.rfft(np.take(x, i, ax), axis=0) for i in range(x.shape[ax])])
        close(got, want)
    g = lgc.vmap(lgc.grad(lambda v: lnp.sum(lnp.abs(lnp.fft.fft(v)) ** 2)))(x[0])
    np.testing.assert_allclose(g, 2 * 8 * x[0], rtol=1e-4, atol=1e-4)      # Parseval
    t = _r(3, 8)
    y, ty = lgc.jvp(lambda v: lnp.fft.irfft(lnp.fft.rfft(v) * 2j, n=8), (x[0],), (t,))
    close(ty, np.fft.irfft(np.fft.rfft(t) * 2j, n=8))
