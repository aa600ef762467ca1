"""The patch start's kernels against brute force in float64, and the start itself: it tiles, it is
seeded, it draws from every example, it refuses an example smaller than a patch."""
import numpy as np
import pytest

from hires.engine import patchstart
from hires.core.errors import InputError
from hires.kernels import patchmatch, vote


def brute_force(target, source, valid, p, wrap):
    """Every target patch's nearest source patch (the lowest corner among equals) and its distance,
    in float64."""
    H, W = target.shape[:2]
    positions = [(y, x) for y in range(H if wrap else H - p + 1) for x in range(W if wrap else W - p + 1)]
    corners = np.argwhere(valid)
    src = source.astype(np.float64)
    stacks = np.stack([src[sy:sy + p, sx:sx + p] for sy, sx in corners])
    best = np.empty((H if wrap else H - p + 1, W if wrap else W - p + 1, 2), np.int64)
    cost = np.empty(best.shape[:2])
    for y, x in positions:
        patch = target.astype(np.float64)[np.arange(y, y + p) % H][:, np.arange(x, x + p) % W]
        d = ((stacks - patch) ** 2).sum((1, 2, 3))
        best[y, x], cost[y, x] = corners[np.argmin(d)], d.min()
    return best, cost


@pytest.mark.parametrize("wrap", [False, True], ids=["plain", "wrap"])
@pytest.mark.parametrize("kind", ["cut-from-the-source", "noise"])
def test_patchmatch_finds_the_nearest_patches_brute_force_finds(wrap, kind):
    """PatchMatch's costs are the float64 distances of the corners it chose, all valid, and (an
    approximate search, given sweeps enough for its random search to cover a small source) almost
    all are brute force's minimum, the rest close to it.  A target cut from the source has a
    zero-distance match for every patch that does not wrap (propagation finds them in a few sweeps)."""
    rng = np.random.default_rng(3)
    p = 4
    source = rng.random((14, 15, 3)).astype(np.float32)
    valid = np.zeros(source.shape[:2], bool)
    valid[:14 - p + 1, :15 - p + 1] = True
    valid[5, 6] = False    # (a corner the source does not allow: another example's edge, say)
    target = np.ascontiguousarray(np.tile(source[1:9, 2:10], (2, 2, 1))) if kind != "noise" else \
        rng.random((16, 16, 3)).astype(np.float32)
    want, want_cost = brute_force(target, source, valid, p, wrap)
    shape = want.shape[:2]
    field = np.stack([rng.integers(0, 11, shape), rng.integers(0, 12, shape)], -1).astype(np.int64)
    field[valid[field[..., 0], field[..., 1]] == 0] = (0, 0)
    field, cost = patchmatch(target, source, valid, field, p, wrap, sweeps=60 if kind == "noise" else 12, seed=1)
    again = np.array([((target.astype(np.float64)[np.arange(y, y + p) % 16][:, np.arange(x, x + p) % 16]
                        - source[sy:sy + p, sx:sx + p].astype(np.float64)) ** 2).sum()
                      for (y, x), (sy, sx) in zip(np.ndindex(shape), field.reshape(-1, 2))]).reshape(shape)
    np.testing.assert_allclose(cost, again, rtol=1e-5, atol=1e-9)
    assert valid[field[..., 0], field[..., 1]].all()
    if kind == "noise":
        assert np.mean(np.isclose(cost, want_cost, rtol=1e-5, atol=1e-9)) > 0.8
        assert cost.mean() <= 1.03 * want_cost.mean()
    else:   # every patch inside one of the four copies of the cut is the source's own (at an allowed corner)
        inside = np.zeros(shape, bool)
        for y0 in (0, 8):
            for x0 in (0, 8):
                for y in range(8 - p + 1):
                    for x in range(8 - p + 1):
                        inside[y0 + y, x0 + x] = valid[1 + y, 2 + x]
        assert inside.sum() == 4 * 24
        assert np.allclose(cost[inside], 0, atol=1e-9) and np.allclose(want_cost[inside], 0, atol=1e-9)


@pytest.mark.parametrize("wrap", [False, True], ids=["plain", "wrap"])
def test_the_vote_is_each_pixels_weighted_mean_of_the_patches_over_it(wrap):
    rng = np.random.default_rng(5)
    p, H, W = 3, 7, 9
    source = rng.random((10, 12, 2)).astype(np.float32)
    shape = (H, W) if wrap else (H - p + 1, W - p + 1)
    field = np.stack([rng.integers(0, 8, shape), rng.integers(0, 10, shape)], -1).astype(np.int64)
    cost = rng.random(shape) * 4
    got = vote(source, field, cost, (H, W), p, wrap, power=-1.2)
    sums, weights = np.zeros((H, W, 2)), np.zeros((H, W))
    for (y, x) in np.ndindex(shape):
        w = (np.sqrt(cost[y, x] / p ** 2) + 1e-3) ** -1.2
        sy, sx = field[y, x]
        for dy in range(p):
            for dx in range(p):
                sums[(y + dy) % H, (x + dx) % W] += w * source[sy + dy, sx + dx]
                weights[(y + dy) % H, (x + dx) % W] += w
    np.testing.assert_allclose(got, sums / weights[..., None], rtol=1e-5)


def stripes(h=96, w=96, period=16, phase=0):
    """Dark mortar lines every ``period`` px on a light ground, with grain."""
    rng = np.random.default_rng(phase)
    img = np.full((h, w, 3), 0.75, np.float32) + rng.normal(0, 0.03, (h, w, 3)).astype(np.float32)
    img[(np.arange(h) + phase) % period < 3] = 0.15
    return np.clip(img, 0, 1)


def bricks(h=96, w=128, bh=16, bw=32, seed=0):
    """Staggered courses of bricks, each its own colour, bounded by dark mortar."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.float32)
    for r in range(0, h, bh):
        off = (bw // 2) * ((r // bh) % 2)
        for c in range(-off, w, bw):
            img[r:r + bh, max(0, c):c + bw] = rng.uniform(0.35, 0.8, 3)
            img[r:r + bh, max(0, c):max(0, c + 2)] = 0.15
        img[r:r + 2] = 0.15
    return np.clip(img + rng.normal(0, 0.03, img.shape).astype(np.float32), 0, 1)


def wrap_cost_ratio(image, example):
    """The mean distance to the example of the image's patches that cross its edges (read wrapped)
    over that of the rest: about 1 when the image continues across its edges as it does inside."""
    p = patchstart.PATCH
    valid = np.zeros(example.shape[:2], bool)
    valid[:example.shape[0] - p + 1, :example.shape[1] - p + 1] = True
    H, W = image.shape[:2]
    rng = np.random.default_rng(0)
    field = np.stack([rng.integers(0, example.shape[0] - p + 1, (H, W)),
                      rng.integers(0, example.shape[1] - p + 1, (H, W))], -1).astype(np.int64)
    _, cost = patchmatch(image, example, valid, field, p, True, sweeps=8, seed=0)
    across = np.zeros((H, W), bool)
    across[H - p + 1:] = across[:, W - p + 1:] = True
    return cost[across].mean() / cost[~across].mean()


@pytest.mark.parametrize("seed", [0, 1])
def test_a_seamless_patch_start_continues_across_its_edges(seed):
    """Its patches that cross the edges are as close to the example as the rest (measured 0.6-1.2);
    the same start made without the wrap is not (4.6-6.0)."""
    seamless = patchstart.synthesise([bricks()], [1.0], 128, 128, seamless=True, seed=seed)
    plain = patchstart.synthesise([bricks()], [1.0], 128, 128, seamless=False, seed=seed)
    assert seamless.shape == (128, 128, 3) and seamless.dtype == np.float32
    assert wrap_cost_ratio(seamless, bricks()) < 2 < 3 < wrap_cost_ratio(plain, bricks())


def test_the_patch_start_keeps_long_lines_whole():
    """Mortar lines every 16 px of the example stay lines across the whole start (3 dark rows in 16),
    not the segments a start drawn from random patches settles on."""
    out = patchstart.synthesise([stripes()], [1.0], 128, 128, seamless=True, seed=0)
    dark = (out.mean(2) < 0.4).mean(1)
    assert (dark > 0.9).mean() == pytest.approx(3 / 16, abs=0.02), np.round(dark, 2)


def test_the_same_seed_gives_the_same_start_and_another_another():
    a = patchstart.synthesise([stripes()], [1.0], 96, 64, seamless=False, seed=4)
    b = patchstart.synthesise([stripes()], [1.0], 96, 64, seamless=False, seed=4)
    c = patchstart.synthesise([stripes()], [1.0], 96, 64, seamless=False, seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_two_examples_are_both_drawn_from():
    red = np.zeros((64, 64, 3), np.float32)
    red[..., 0] = 0.8 + np.random.default_rng(0).normal(0, 0.05, (64, 64))
    blue = np.zeros((64, 64, 3), np.float32)
    blue[..., 2] = 0.8 + np.random.default_rng(1).normal(0, 0.05, (64, 64))
    out = patchstart.synthesise([np.clip(red, 0, 1), np.clip(blue, 0, 1)], [0.5, 0.5], 128, 128, seamless=True)
    redness = (out[..., 0] > out[..., 2] + 0.3).mean()
    assert 0.2 < redness < 0.8, redness


def test_an_example_smaller_than_a_patch_is_refused():
    with pytest.raises(InputError, match="too small for the patch start"):
        patchstart.synthesise([np.zeros((6, 40, 3), np.float32)], [1.0], 64, 64, seamless=False)
