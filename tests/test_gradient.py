"""The correctness test of the engine: tiled gradients are the whole image's gradient.

At a start image x0, every tile's loss (whole-image statistics with the tile's own part live,
ownership weights, context margins, zero padding inside and the frame's padding at its edges)
is differentiated with respect to its region; scattered back into the image and summed, these
gradients equal the gradient of the whole-image loss (docs/how-it-works.md), computed here independently
in plain torch, in float64.  Where only one tile's region covers a pixel, that tile's gradient
alone equals the whole image's.
"""
import numpy as np
import pytest
import torch

from hires.core import io
from hires.core.config import Settings
from hires.engine.engine import Engine, RefineJob, to_tensor
from hires.engine.losses import flat
from hires.planning.planner import auto_margin
from hires.engine.pyramid import Level
from hires.engine.stats import make_target
from hires.engine.nets import LAYER_STRIDE
from hires.engine.regions import region_key
from hires.engine.tiles import block_mean, grid, take

from helpers import soft_maps

# a photo of odd sides (the last positions of every stride cover a part block), a seamless texture
# of sides that are multiples of the deepest stride (it must wrap exactly)
SIZES = {False: (171, 139), True: (176, 144)}
# (style layers, content layer) per network: the hybrid's MobileNetV2 layers down to stride 8
# (mb6: a 36 px receptive radius, 48 px margins, so the tiles' context is really exercised)
# "hybrid-fine": a print's fine levels' layers, relu1_1 the only VGG layer: its Gram is made band
# by band without its activation (hires.engine.bandgram)
NETWORKS = {"random": ("random", ("relu1_1", "relu2_1", "relu3_1"), "relu3_1"),
            "hybrid": ("hybrid", ("relu1_1", "relu2_1", "mb0", "mb3", "mb6"), "mb6"),
            "hybrid-fine": ("hybrid", ("relu1_1", "mb0", "mb3"), "mb3")}


def reference_loss(net, x, targets, s: Settings, content_feat, content_layer, LAYERS, maps=None):
    """The whole-image loss written out from docs/how-it-works.md: per layer ||G - G_s||^2 / ||G_s||^2 with
    G = F^T F / N, plus the mean term, averaged over layers; plus the content term.  With style
    region ``maps`` (H, W, regions) each region's term, its G and mean weighted by the region's mean
    over each position's pixels w_r (G_r = sum w_r F F^T / N_r, N_r = sum w_r) against its own
    target, times its share N_r / N of the positions."""
    feats = net(x, (*LAYERS, content_layer))
    style = 0.0
    for name in LAYERS:
        f = flat(feats[name])
        regions = [(None, None)] if maps is None else [
            (region_key(name, r), torch.from_numpy(block_mean(maps[..., r] / 255, LAYER_STRIDE[name]).astype(np.float64)))
            for r in range(maps.shape[-1])]
        for key, w in regions:
            w = torch.ones(len(f), dtype=f.dtype) if w is None else w.reshape(-1)
            t, n = targets[key or name], w.sum()
            term = (((f * w[:, None]).T @ f / n - t.gram) ** 2).sum() / t.gram_norm
            term = term + s.mean_weight * ((w @ f / n - t.mean) ** 2).sum() / t.mean_norm
            style = style + term * n / len(f)
    loss = s.style_weight * style / len(LAYERS)
    if content_feat is not None:
        f = flat(feats[content_layer])
        loss = loss + s.content_weight * ((f - content_feat) ** 2).sum() / (len(f) * targets[content_layer].energy)
    return loss


@pytest.mark.parametrize("layers", list(NETWORKS))
@pytest.mark.parametrize("seamless", [False, True], ids=["photo", "seamless-texture"])
def test_tile_gradients_sum_to_the_whole_image_gradient(content_path, style_path, texture_path, seamless, layers):
    check_tile_gradients(content_path, style_path, texture_path, seamless, layers, masked=False)


@pytest.mark.parametrize("seamless, layers", [(False, "hybrid"), (True, "hybrid-fine")],
                         ids=["photo-hybrid", "seamless-texture-hybrid-fine"])
def test_tile_gradients_with_style_regions_sum_to_the_whole_image_gradient(content_path, style_path, texture_path,
                                                                           seamless, layers):
    """Three soft style regions, each against its own painting: the same exactness, per region (the
    hybrid's layers from activations on a photo; its banded relu1_1, one Gram per region from one
    band pass, on a wrapping canvas)."""
    check_tile_gradients(content_path, style_path, texture_path, seamless, layers, masked=True)


# the quick twins' sizes (tests/twins.py): the same claim, the same layer sets, on fewer pixels, in
# tiles of 32 px (still nine or more, the hybrid's 48 px context still reaching across tiles)
QUICK_SIZES = {False: (99, 75), True: (96, 96)}


@pytest.mark.parametrize("layers", ["random", "hybrid"])
@pytest.mark.parametrize("seamless", [False, True], ids=["photo", "seamless-texture"])
def test_tile_gradients_sum_to_the_whole_image_gradient_quick(content_path, style_path, texture_path, seamless,
                                                              layers):
    """The quick twin of the test above for the full layer sets (10-22 s each at its sizes)."""
    check_tile_gradients(content_path, style_path, texture_path, seamless, layers, masked=False,
                         size=QUICK_SIZES[seamless], tile=32)


def test_tile_gradients_with_style_regions_sum_to_the_whole_image_gradient_quick(content_path, style_path,
                                                                                 texture_path):
    """The quick twin of the full hybrid's regions on a photo (20 s at its size)."""
    check_tile_gradients(content_path, style_path, texture_path, False, "hybrid", masked=True,
                         size=QUICK_SIZES[False], tile=32)


def check_tile_gradients(content_path, style_path, texture_path, seamless, layers, masked, size=None, tile=48):
    network, LAYERS, cl = NETWORKS[layers]
    W, H = size or SIZES[seamless]
    s = Settings(network=network, seamless=seamless, mean_weight=0.5, content_weight=0.0 if seamless else 0.4,
                 style_layers=LAYERS, content_layer=cl)
    engine = Engine(s)
    engine.net.double()
    engine.dtype = torch.float64
    level = Level(0, W, H, 1, LAYERS, cl)
    rng = np.random.default_rng(3)
    if seamless:
        content = None
        x0 = io.load_image(texture_path, size=(W, H))
        style = io.load_image(texture_path, long_side=200)
    else:
        content = io.load_image(content_path, size=(W, H))
        x0 = np.clip(content + 0.1 * rng.standard_normal(content.shape), 0, 1).astype(np.float32)
        style = io.load_image(style_path, long_side=200)
    assert x0.std() > 0.05 and style.std() > 0.05

    def targets_of(image):
        return {n: make_target(*st.gram_mean(), dtype=torch.float64)
                for n, st in engine.stats_pass(image, level.layers,
                                               grid(image.shape[1], image.shape[0], 512, 0, 0)).items()}
    targets = targets_of(style)
    maps = None
    if masked:  # each region its own painting: the style, the content photo, the style's left half
        maps = soft_maps(H, W, seed=5)
        paintings = [targets, targets_of(io.load_image(content_path, long_side=180)),
                     targets_of(np.ascontiguousarray(style[:, :style.shape[1] // 2]))]
        targets = {**targets, **{region_key(n, r): t[n] for r, t in enumerate(paintings) for n in t}}

    # the whole image, independently of the tile machinery
    engine.net.set_padding("circular" if seamless else "reflect")
    x = to_tensor(x0, "cpu", torch.float64).requires_grad_(True)
    content_feat = None
    if content is not None:
        with torch.no_grad():
            content_feat = flat(engine.net(to_tensor(content, "cpu", torch.float64), [cl])[cl])
    reference_loss(engine.net, x, targets, s, content_feat, cl, LAYERS, maps).backward()
    want = x.grad[0].permute(1, 2, 0).numpy()
    assert np.abs(want).max() > 0

    # the same through the engine's single whole-frame tile, and through many tiles
    whole = grid(W, H, max(W, H), 0, 0, seamless)
    tiles = grid(W, H, tile, 4, auto_margin(level), seamless)
    assert len(tiles) >= 9 and auto_margin(level) >= level.radius
    for grid_ in (whole, tiles):
        glob = engine.stats_pass(x0, level.style_layers, grid_, masks=maps)
        total = np.zeros_like(want)
        cover = np.zeros((H, W), int)
        per_tile = []
        for tile in grid_:
            part = None if content is None else take(content, tile.region)
            crop = None if maps is None else take(maps, tile.region)
            objective = engine.objective(tile, RefineJob(level, glob, targets, (H, W), len(grid_)), part, crop)
            xr = to_tensor(take(x0, tile.region), "cpu", torch.float64).requires_grad_(True)
            objective(xr).backward()
            g = xr.grad[0].permute(1, 2, 0).numpy()
            ys = np.arange(tile.region[0], tile.region[1]) % H
            xs = np.arange(tile.region[2], tile.region[3]) % W
            np.add.at(total, (ys[:, None], xs[None, :]), g)
            np.add.at(cover, (ys[:, None], xs[None, :]), 1)
            per_tile.append((ys, xs, g))
        err = np.abs(total - want).max() / np.abs(want).max()
        assert err <= 1e-4, (len(grid_), err)
        for ys, xs, g in per_tile:  # pixels only this tile sees: its gradient alone is the whole one
            alone = cover[ys[:, None], xs[None, :]] == 1
            if alone.any():
                sub = want[ys[:, None], xs[None, :]]
                assert np.abs(g[alone] - sub[alone]).max() <= 1e-4 * np.abs(want).max()
        assert len(grid_) == 1 or (cover > 1).any()  # overlaps and context really were exercised


def test_a_fine_level_makes_relu1_1s_gram_without_its_activation(monkeypatch):
    """At the hybrid's fine levels (relu1_1 and MobileNetV2 layers) the objective asks the VGG part
    for no activation: relu1_1's Gram is made band by band (hires.engine.bandgram).  The loss and gradient
    are the activation path's, and an evaluation's memory is about half of it."""
    from helpers import peak_growth
    from hires.core.canvas import trim
    from hires.engine.nets import VGG19Features

    side = 512
    engine = Engine(Settings(network="hybrid", mean_weight=0.5))
    level = Level(0, side, side, 1, ("relu1_1", "mb3"), "mb3")
    assert level.banded == "relu1_1"
    rng = np.random.default_rng(0)
    x0 = rng.random((side, side, 3), dtype=np.float32)
    tile = grid(side, side, side, 0, 0)[0]
    glob = engine.stats_pass(x0, level.style_layers, [tile])
    targets = {n: make_target(st.gram * 2 / st.count, st.mean / st.count) for n, st in glob.items()}
    asked = []
    forward = VGG19Features.forward
    monkeypatch.setattr(VGG19Features, "forward", lambda net, x, names: asked.extend(names) or forward(net, x, names))

    def evaluate():
        objective = engine.objective(tile, RefineJob(level, glob, targets, (side, side), 1), x0)
        x = to_tensor(x0, "cpu", torch.float32).requires_grad_(True)
        loss = objective(x)
        loss.backward()
        return float(loss.detach()), x.grad

    results, growth = {}, {}
    for banded in (True, False):  # banded first: memory its run left to the heap can only help the other
        if not banded:
            monkeypatch.setattr(Level, "banded", property(lambda self: None))
        trim()
        growth[banded] = peak_growth(lambda: results.__setitem__(banded, evaluate()))
        if banded:
            assert "relu1_1" not in asked
    assert "relu1_1" in asked
    (loss_b, grad_b), (loss_w, grad_w) = results[True], results[False]
    assert abs(loss_b - loss_w) <= 1e-5 * abs(loss_w) and loss_w > 0
    assert float((grad_b - grad_w).abs().max()) <= 1e-4 * float(grad_w.abs().max())
    assert growth[True] < 0.7 * growth[False], (growth[True] / 2**20, growth[False] / 2**20)


def test_a_statistics_pass_makes_relu1_1_a_band_at_a_time(monkeypatch):
    """A statistics pass of relu1_1 and MobileNetV2 layers makes relu1_1 a band of rows at a time:
    the same float64 sums as from its whole activation, over tiles with context and ramps (the
    bands start at a tile's first owned row), with less memory."""
    from helpers import peak_growth
    from hires.engine import engine as engine_module
    from hires.core.canvas import trim
    from hires.core.layers import LAYERS

    side = 512
    engine = Engine(Settings(network="hybrid"))
    rng = np.random.default_rng(1)
    image = rng.random((side, side, 3), dtype=np.float32)
    layers = ("relu1_1", "mb3")
    whole, tiles = grid(side, side, side, 0, 0), grid(side, side, 192, 16, 32)
    sums, growth = {}, {}
    for banded in (True, False):  # banded first: memory its run left to the heap can only help the other
        if not banded:
            monkeypatch.setattr(engine_module, "banded", lambda *args: None)
        for name, grid_ in (("tiles", tiles), ("whole", whole)):
            trim()
            growth[banded, name] = peak_growth(
                lambda: sums.__setitem__((banded, name), engine.stats_pass(image, layers, grid_)))
    for name in ("tiles", "whole"):
        for layer in layers:
            b, w = sums[True, name][layer], sums[False, name][layer]
            positions = (side // LAYERS[layer].stride) ** 2  # every position counted once
            assert b.count == pytest.approx(w.count, rel=1e-12) and b.count == pytest.approx(positions, rel=1e-6)
            np.testing.assert_allclose(b.gram, w.gram, rtol=1e-9, atol=1e-9 * np.abs(w.gram).max())
            np.testing.assert_allclose(b.mean, w.mean, rtol=1e-9, atol=1e-9 * np.abs(w.mean).max())
    assert growth[True, "whole"] < 0.7 * growth[False, "whole"], {k: v / 2**20 for k, v in growth.items()}
