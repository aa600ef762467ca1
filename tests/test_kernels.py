"""Kernels against plain numpy float64 references (also run with NUMBA_DISABLE_JIT=1)."""
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hires.kernels import blend_into, feather_window, gram_accumulate


def gram_reference(f, w):
    f = f.astype(np.float64)
    w = w.astype(np.float64)
    return (f * w[:, None]).T @ f, (f * w[:, None]).sum(0), w.sum()


def test_gram_runs_blas_on_one_thread_per_kernel_thread(rng, monkeypatch):
    """The Gram kernel's threads each multiply their own blocks; OpenBLAS threads on top of them
    spun against them (a 1M x 64 Gram 6.4 s instead of 0.2 s on two busy cores)."""
    from hires.kernels import _config, gram
    if not _config.blas_threads():
        pytest.skip("no OpenBLAS whose thread count can be read")
    before = _config.blas_threads()
    seen = []
    real = _config.single_threaded_blas

    def recording():
        with real():
            seen.append(_config.blas_threads())
            yield
    monkeypatch.setattr(gram, "single_threaded_blas", contextlib.contextmanager(recording))
    f = rng.standard_normal((5000, 8)).astype(np.float32)
    gram_accumulate(f, np.ones(5000, np.float32), np.zeros((8, 8)), np.zeros(8))
    assert seen and all(n == 1 for n in seen[0])
    assert _config.blas_threads() == before  # put back


def test_gram_skips_positions_of_zero_weight(rng):
    """A style region's weights are zero over much of its box (other regions, a kept part): those
    positions are left out of the product, not multiplied by zero; what is not finite there (a
    position no region owns) does not reach the sums."""
    f = rng.standard_normal((3000, 16)).astype(np.float32)
    w = rng.random(3000).astype(np.float32)
    w[rng.random(3000) < 0.6] = 0.0
    g, m = np.zeros((16, 16)), np.zeros(16)
    poisoned = f.copy()
    poisoned[w == 0] = np.nan
    count = gram_accumulate(poisoned, w, g, m)
    gr, mr, cr = gram_reference(f, w)
    np.testing.assert_allclose(g, gr, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(m, mr, rtol=1e-10, atol=1e-10)
    assert count == pytest.approx(cr, rel=1e-12)


@pytest.mark.parametrize("n,c", [(1, 1), (7, 3), (2049, 5), (5000, 64), (333, 1), (4097, 17)])
def test_gram_matches_numpy(rng, n, c):
    f = rng.standard_normal((n, c)).astype(np.float32)
    w = rng.random(n).astype(np.float32)
    if n > 10:
        assert f.std() > 0.5 and w.std() > 0.1  # fixtures have variance
    g, m = np.zeros((c, c)), np.zeros(c)
    count = gram_accumulate(f, w, g, m)
    gr, mr, cr = gram_reference(f, w)
    np.testing.assert_allclose(g, gr, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(m, mr, rtol=1e-10, atol=1e-10)
    assert count == pytest.approx(cr, rel=1e-12)


@pytest.mark.parametrize("h,w,c", [(3, 700, 64), (5, 33, 144), (2, 1, 3)])
def test_gram_reads_a_strided_box_in_place(rng, h, w, c):
    """A box of a channels-last activation, (h, w, C) with the rows' strides of the whole image,
    gives the numpy float64 Gram of its positions (rows split into blocks, 700 > 256 per block)."""
    from hires.kernels.gram import block_positions
    assert w <= block_positions(c) or w % block_positions(c)  # a partial last block
    image = rng.standard_normal((h + 4, w + 9, c)).astype(np.float32)
    box = image[2:2 + h, 5:5 + w]
    assert not box.flags.c_contiguous
    wts = rng.random((h, w)).astype(np.float32)
    g, m = np.zeros((c, c)), np.zeros(c)
    count = gram_accumulate(box, wts, g, m)
    gr, mr, cr = gram_reference(box.reshape(-1, c), wts.ravel())
    np.testing.assert_allclose(g, gr, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(m, mr, rtol=1e-10, atol=1e-10)
    assert count == pytest.approx(cr, rel=1e-12)
    with pytest.raises(ValueError):
        gram_accumulate(box, wts[:, 1:], g, m)


@pytest.mark.parametrize("c,h,w", [(8, 37, 53), (1, 1, 1), (3, 5, 700)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_moments_match_the_gram_diagonal(rng, c, h, w, channels_last):
    """moments_accumulate gives the float64 reference's weighted sums and sums of squares, for a
    box of a (C, H, W) map read in place, laid out channel by channel or position by position."""
    from hires.kernels import moments_accumulate
    image = (rng.standard_normal((c, h + 3, w + 2)) * 3 + 1).astype(np.float32)
    if channels_last:  # (H, W, C) memory seen as (C, H, W), as a channels-last activation is
        image = np.ascontiguousarray(image.transpose(1, 2, 0)).transpose(2, 0, 1)
    box = image[:, 1:1 + h, 2:]
    wts = rng.random((h, w)).astype(np.float32)
    sq, total = np.zeros(c), np.zeros(c)
    count = moments_accumulate(box, wts, sq, total)
    f = box.reshape(c, -1).T
    gr, mr, cr = gram_reference(f, wts.ravel())
    np.testing.assert_allclose(sq, np.diag(gr), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(total, mr, rtol=1e-10, atol=1e-10)
    assert count == pytest.approx(cr, rel=1e-12)
    with pytest.raises(ValueError):
        moments_accumulate(box, wts[1:], sq, total)


def test_gram_accumulates_tiles_to_whole(rng):
    """Summing per-tile Grams with ownership weights that add to one gives the whole image's."""
    f = rng.standard_normal((3000, 8)).astype(np.float32)
    w1 = rng.random(3000).astype(np.float32)
    w2 = (1.0 - w1).astype(np.float32)
    g, m = np.zeros((8, 8)), np.zeros(8)
    count = gram_accumulate(f, w1, g, m) + gram_accumulate(f, w2, g, m)
    gr, mr, _ = gram_reference(f, np.ones(3000, np.float32))
    np.testing.assert_allclose(g, gr, rtol=1e-6)
    np.testing.assert_allclose(m, mr, rtol=1e-5, atol=1e-6)
    assert count == pytest.approx(3000, rel=1e-6)


def test_gram_rejects_bad_input():
    with pytest.raises(ValueError):
        gram_accumulate(np.zeros((4, 3), np.float32), np.ones(5, np.float32), np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(TypeError):
        gram_accumulate(np.zeros((4, 3), np.int32), np.ones(4, np.float32), np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ValueError):
        gram_accumulate(np.zeros((4, 3), np.float32), np.ones(4, np.float32), np.zeros((3, 3), np.float32),
                        np.zeros(3))


def blend_reference(shape, tiles):
    H, W, C = shape
    acc = np.zeros(shape, np.float64)
    ws = np.zeros((H, W), np.float64)
    for tile, win, y0, x0 in tiles:
        h, w = win.shape
        ys = (np.arange(h) + y0) % H
        xs = (np.arange(w) + x0) % W
        np.add.at(ws, (ys[:, None], xs[None, :]), win)
        np.add.at(acc, (ys[:, None], xs[None, :]), tile * win[..., None])
    return np.where(ws[..., None] > 0, acc / np.where(ws > 0, ws, 1)[..., None], 0.0)


@pytest.mark.parametrize("H,W,C,h,w", [(9, 11, 3, 5, 7), (1, 1, 1, 1, 1), (17, 13, 1, 17, 13), (30, 40, 3, 12, 9)])
def test_blend_matches_numpy(rng, H, W, C, h, w):
    canvas = rng.random((H, W, C)).astype(np.float32)  # old values: ignored where nothing is blended yet
    before = canvas.copy()
    wsum = np.zeros((H, W), np.float32)
    tiles = []
    for _ in range(4):
        tile = rng.random((h, w, C)).astype(np.float32)
        win = feather_window(h, w, *rng.integers(0, max(1, h // 2) + 1, 2), *rng.integers(0, max(1, w // 2) + 1, 2))
        y0, x0 = int(rng.integers(-H, H)), int(rng.integers(-W, W))  # also wraps around
        tiles.append((tile, win, y0, x0))
        blend_into(canvas, wsum, tile, win, y0, x0)
    ref = blend_reference((H, W, C), tiles)
    covered = wsum > 0
    np.testing.assert_allclose(canvas[covered], ref[covered], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(canvas[~covered], before[~covered])


def test_feather_windows_sum_to_one_across_a_cut():
    """Two neighbours' raised-cosine ramps over the same overlap add up to one."""
    a = feather_window(1, 40, 0, 0, 0, 16)[0]
    b = feather_window(1, 40, 0, 0, 16, 0)[0]
    np.testing.assert_allclose(a[-16:] + b[:16], 1.0, atol=1e-6)
    assert a[:24].min() == 1.0 and a[-1] < 0.05


def test_blend_of_overlapping_crops_reproduces_image(rng):
    """Blending overlapping crops of one image with feathered windows gives the image back."""
    img = rng.random((50, 70, 3)).astype(np.float32)
    canvas = np.zeros_like(img)
    wsum = np.zeros(img.shape[:2], np.float32)
    for y0, y1, ty, by in ((0, 30, 0, 8), (22, 50, 8, 0)):
        for x0, x1, lx, rx in ((0, 40, 0, 8), (32, 70, 8, 0)):
            blend_into(canvas, wsum, img[y0:y1, x0:x1], feather_window(y1 - y0, x1 - x0, ty, by, lx, rx), y0, x0)
    np.testing.assert_allclose(canvas, img, atol=1e-6)


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="already running without JIT")
def test_kernels_without_jit():
    """The same kernel tests pass as plain Python (NUMBA_DISABLE_JIT=1)."""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__,
                        "-k", "not without_jit and not 5000"], env=env, capture_output=True, text=True,
                       cwd=Path(__file__).parent)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
