"""Style regions (hires.engine.regions): per-region statistics exact across tiles, a region blind to the
others' pixels, the masks' rules (overlaps, the rest, the kept part), and bad masks refused."""
from __future__ import annotations

import os

import numpy as np
import pytest
import pyvips
import torch

import hires
from hires.core import io
from hires.fast import stylecode
from hires.core.config import Settings
from hires.engine.engine import Engine, to_tensor
from hires.core.layers import LAYERS
from hires.engine.regions import Masks, load_mask, region_key
from hires.engine.tiles import block_mean, grid

from conftest import data
from helpers import refuses, soft_maps

# odd sides (the last positions of every stride cover part blocks); a seamless canvas of sides that
# are multiples of the deepest stride (it must wrap exactly)
SIZES = {False: (171, 139), True: (176, 144)}
# the banded relu1_1 (hires.engine.bandgram) beside MobileNetV2 layers, and VGG layers from activations
LAYER_SETS = {"hybrid-fine": ("hybrid", ("relu1_1", "mb0", "mb3")),
              "random": ("random", ("relu1_1", "relu2_1"))}


def save_gray(a: np.ndarray, path) -> None:
    a = np.ascontiguousarray(a.astype(np.uint8))
    pyvips.Image.new_from_memory(a.tobytes(), a.shape[1], a.shape[0], 1, "uchar").write_to_file(str(path))


def reference_region_stats(engine: Engine, image: np.ndarray, layers, maps: np.ndarray, seamless: bool):
    """Per-region float64 (gram sum, mean sum, count) of the whole image's activations, written out
    from the loss (docs/how-it-works.md): each position weighted by its region's mean over the position's pixels."""
    engine.net.set_padding("circular" if seamless else "reflect")
    with torch.no_grad():
        feats = engine.net(to_tensor(image, "cpu", torch.float64), list(layers))
    out = {}
    for name in layers:
        f = feats[name][0].permute(1, 2, 0).numpy().reshape(-1, feats[name].shape[1])
        for r in range(maps.shape[-1]):
            w = block_mean(maps[..., r].astype(np.float32) / 255, LAYERS[name].stride).astype(np.float64).reshape(-1)
            out[region_key(name, r)] = ((f * w[:, None]).T @ f, w @ f, w.sum())
    return out


@pytest.mark.parametrize("layer_set", list(LAYER_SETS))
@pytest.mark.parametrize("seamless", [False, True], ids=["photo", "seamless"])
def test_region_grams_accumulated_over_tiles_equal_the_whole_images(content_path, layer_set, seamless):
    network, layers = LAYER_SETS[layer_set]
    W, H = SIZES[seamless]
    engine = Engine(Settings(network=network, seamless=seamless))
    engine.net.double()
    engine.dtype = torch.float64
    image = io.load_image(content_path, size=(W, H))
    maps = soft_maps(H, W)
    want = reference_region_stats(engine, image, layers, maps, seamless)
    for tile, overlap, margin in ((max(W, H), 0, 0), (48, 8, 32), (64, 16, 48)):
        tiles = grid(W, H, tile, overlap, margin, seamless)
        got = engine.stats_pass(image, layers, tiles, masks=maps)
        for key, (gram, mean, count) in want.items():
            st = got[key]
            # (to the float32 rounding of the weights, which the kernel takes in float32)
            assert st.count == pytest.approx(count, rel=1e-6), (key, tile)
            np.testing.assert_allclose(st.gram, gram, rtol=1e-6, atol=1e-6 * np.abs(gram).max(), err_msg=f"{key} {tile}")
            np.testing.assert_allclose(st.mean, mean, rtol=1e-6, atol=1e-6 * np.abs(mean).max(), err_msg=f"{key} {tile}")


def test_a_regions_statistics_do_not_see_another_regions_pixels(content_path):
    """Hard masks, left and right: the right half's pixels replaced by noise (farther from the left
    region than the network sees) leave the left region's statistics as they were."""
    W, H = 256, 128
    engine = Engine(Settings(network="hybrid"))
    layers = ("relu1_1", "mb0", "mb3")
    image = io.load_image(content_path, size=(W, H))
    maps = np.zeros((H, W, 2), np.uint8)
    maps[:, :96, 0] = 255
    maps[:, 96:, 1] = 255
    tiles = grid(W, H, 64, 8, 32)
    before = engine.stats_pass(image, layers, tiles, masks=maps)
    changed = image.copy()
    changed[:, 96 + 48:] = np.random.default_rng(0).random((H, W - 144, 3), dtype=np.float32)
    after = engine.stats_pass(changed, layers, tiles, masks=maps)
    for name in layers:
        left, right = region_key(name, 0), region_key(name, 1)
        np.testing.assert_array_equal(after[left].gram, before[left].gram)
        assert not np.allclose(after[right].gram, before[right].gram)


def test_masks_overlaps_normalise_the_rest_takes_the_unmasked_styles_and_keep_scales(tmp_path):
    W, H = 64, 40
    a, b, keep = np.zeros((H, W)), np.zeros((H, W)), np.zeros((H, W))
    a[:, :40] = 255           # a and b overlap on columns 24..39
    b[:, 24:48] = 255
    keep[:20] = 255           # the top half kept
    for name, arr in (("a", a), ("b", b), ("keep", keep)):
        save_gray(arr, tmp_path / f"{name}.png")
    masks = Masks((tmp_path / "a.png", tmp_path / "b.png"), tmp_path / "keep.png")
    regions = masks.regions(3)
    assert [r.styles for r in regions] == [(0,), (1,), (2,)]
    assert Masks((tmp_path / "a.png",)).regions(1)[-1].styles == (0,)  # every style masked: the rest takes all
    maps = masks.maps(3, W, H).astype(int)
    bottom = maps[20:]
    assert (bottom[:, 30] == [128, 128, 0]).all() or (bottom[:, 30] == [127, 127, 0]).all()  # halves
    assert (bottom[:, 10] == [255, 0, 0]).all() and (bottom[:, 44] == [0, 255, 0]).all()
    assert (bottom[:, 60] == [0, 0, 255]).all()                                       # the rest
    assert (maps[:20] == 0).all()                                                    # kept: no style
    shares = dict(masks.shares(3, W, H))
    assert shares["kept"] == pytest.approx(0.5, abs=0.01) and shares["rest"] == pytest.approx(0.125, abs=0.02)


def test_a_16_bit_mask_and_transparency_read_as_gray(tmp_path):
    a = np.zeros((20, 30), np.uint16)
    a[:, 15:] = 65535
    im = pyvips.Image.new_from_memory(a.tobytes(), 30, 20, 1, "ushort").copy(interpretation="grey16")
    im.write_to_file(str(tmp_path / "m16.png"))
    got = load_mask(tmp_path / "m16.png", 30, 20)
    assert got[:, :14].max() == 0 and got[:, 16:].min() == 255


@pytest.fixture
def tiny_masks(tmp_path):
    """Masks of chelsea's aspect: the cat's face (an ellipse) and its inverse."""
    h, w = 96, 144
    yy, xx = np.mgrid[0:h, 0:w]
    face = (np.hypot((xx - 0.62 * w) / (0.18 * w), (yy - 0.38 * h) / (0.32 * h)) < 1) * 255
    save_gray(face, tmp_path / "face.png")
    save_gray(255 - face, tmp_path / "rest.png")
    return tmp_path / "face.png", tmp_path / "rest.png"


TINY = dict(size="144x96", base_size=72, iterations=(3, 2), style_layers=("relu1_1", "relu2_1"),
            content_layer="relu2_1", memory="8GiB", init="content")


def test_a_kept_region_is_the_photo_and_regions_take_their_own_paintings(tiny_masks, tmp_path):
    face, rest = tiny_masks
    photo, starry = data("contents/chelsea.png", "chelsea.png"), data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg")
    wave = data("styles/hokusai_great_wave_c1831.jpg", "stone_bricks_ambientcg_bricks102.jpg")
    r = hires.render(photo, [starry, wave], tmp_path / "kept.png", masks=[rest], keep=face, **TINY)
    out = io.load_image(tmp_path / "kept.png")
    content = io.load_image(photo, size=(144, 96))
    inside = load_mask(face, 144, 96) == 255
    assert np.abs(out[inside] - content[inside]).max() <= 1.5 / 255  # the photo, to the 8-bit file's rounding
    assert np.abs(out[~inside] - content[~inside]).mean() > 0.02      # stylised around it
    assert any("regions:" in n and "kept photographic" in n for n in r.plan.notes)


def test_regions_through_a_batch_file_and_the_plan(tiny_masks, tmp_path, capfd):
    from hires.commands import cli
    face, rest = tiny_masks
    photo, starry = data("contents/chelsea.png", "chelsea.png"), data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg")
    wave = data("styles/hokusai_great_wave_c1831.jpg", "stone_bricks_ambientcg_bricks102.jpg")
    code = cli.main(["plan", "render", str(photo), "--style", str(starry), "--mask", str(face), "--style", str(wave),
                     "--size", "1440x960", "--no-calibrate"])
    out = capfd.readouterr().out
    assert code == 0 and "regions: face.png" in out and "rest" in out, out
    (tmp_path / "jobs.toml").write_text(f"""
[[job]]
content = "{photo}"
style = ["{starry}", "{wave}"]
mask = ["{face}"]
output = "out.png"
method = "fast"
size = "144x96"
""")
    assert cli.main(["batch", "-q", str(tmp_path / "jobs.toml")]) == 0
    assert (tmp_path / "out.png").exists()


# ---------------------------------------------------------------- bad masks: one line, exit 2, nothing made

@pytest.fixture
def bad_inputs(tmp_path):
    photo, starry = data("contents/chelsea.png", "chelsea.png"), data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg")
    folder = tmp_path / "in"
    folder.mkdir()
    save_gray(np.full((100, 100), 255), folder / "square.png")
    save_gray(np.zeros((96, 144)), folder / "black.png")
    save_gray(np.full((96, 144), 255), folder / "white.png")
    colour = np.zeros((96, 144, 3), np.uint8)
    colour[..., 0] = 255
    pyvips.Image.new_from_memory(colour.tobytes(), 144, 96, 3, "uchar").write_to_file(str(folder / "red.png"))
    save_gray(np.full((96, 144), 200), folder / "good.png")
    (folder / "cut.png").write_bytes((folder / "good.png").read_bytes()[:60])
    base = ["render", str(photo), "--style", str(starry), "--size", "144x96", "--method", "fast",
            "-o", str(tmp_path / "o.png")]
    return folder, base


@pytest.mark.parametrize("extra, match", [
    (["--mask", "square.png"], "aspect"),
    (["--mask", "good.png", "--mask", "good.png"], "2 masks for 1 style"),
    (["--mask", "red.png"], "is a colour image"),
    (["--mask", "black.png"], "black everywhere"),
    (["--keep", "black.png"], "keeps nothing"),
    (["--keep", "white.png"], "white everywhere"),
    (["--mask", "cut.png"], "cut.png"),
    (["--mask", "missing.png"], "missing.png"),
])
def test_a_bad_mask_is_refused_in_one_line_before_anything_is_made(bad_inputs, tmp_path, capfd, extra, match):
    folder, base = bad_inputs
    args = base + [str(folder / a) if a.endswith(".png") else a for a in extra]
    refuses(tmp_path, capfd, args, match)


# ---------------------------------------------------------------- the feed-forward network with regions

def test_feed_forward_regions_mix_the_styles_codes_per_pixel_tiled_as_whole(content_path, style_path, tmp_path):
    """Each region's style code mixed per pixel in the conditional instance norms: a mask covering
    the whole frame gives exactly that style's own render; soft masks give the same picture
    tiled as whole, and a picture unlike either style's own."""
    from hires.fast import fast
    W, H = 256, 192
    wave = data("styles/hokusai_great_wave_c1831.jpg", "stone_bricks_ambientcg_bricks102.jpg")
    content = io.load_image(content_path, size=(W, H))
    styles = [(style_path, 1.0), (wave, 1.0)]

    def render(masks, tile=256):
        out = np.zeros_like(content)
        groups = [[styles[i] for i in r.styles] for r in masks.regions(2)] if masks else [styles[:1]]
        codes = torch.cat([stylecode.style_bottleneck(g) for g in groups])  # (as hires.fast.stylecode.Stylist makes them)
        fast.TiledTransformer(codes, regions=(masks, 2) if masks else None)(content, out, tile)
        return out

    save_gray(np.full((H, W), 255), tmp_path / "all.png")
    save_gray(soft_maps(H, W)[..., 0], tmp_path / "left.png")
    save_gray(soft_maps(H, W)[..., 1], tmp_path / "right.png")
    alone = render(None)
    np.testing.assert_allclose(render(Masks((tmp_path / "all.png",))), alone, atol=1e-5)
    soft = Masks((tmp_path / "left.png", tmp_path / "right.png"))
    whole = render(soft)
    np.testing.assert_allclose(render(soft, tile=96), whole, atol=1e-4)
    assert np.abs(whole - alone)[:, W // 2:].mean() > 0.03  # the right side is not the first style's


# ---------------------------------------------------------------- masks' types and the batch's up-front check

class _Where(os.PathLike):
    """A path type of the caller's own (not a pathlib.Path): the API takes any os.PathLike."""
    def __init__(self, path):
        self.path = str(path)

    def __fspath__(self) -> str:
        return self.path


@pytest.mark.parametrize("bad", [5, 0, 2.5, [5], {"face.png": 1}, b"face.png"])
def test_masks_that_are_not_paths_are_one_option_error(tmp_path, content_path, style_path, bad):
    with pytest.raises(hires.core.errors.OptionError, match="masks"):
        hires.render(content_path, style_path, tmp_path / "o.png", masks=bad, method="fast", size="144x96")
    with pytest.raises(hires.core.errors.OptionError, match="masks"):
        hires.plan(content_path, style_path, masks=bad, size="144x96")
    assert not (tmp_path / "o.png").exists()


def test_the_api_functions_stay_functions_after_a_render(content_path, style_path):
    """``hires.render`` then ``hires.plan`` (the README's order): the plan function was shadowed by
    the planner module of the same name that the render imported."""
    import importlib
    importlib.import_module("hires.planning.planner")
    hires.render(content_path, style_path, method="fast", size="64x48", fast_size=0)
    assert callable(hires.plan) and callable(hires.texture) and callable(hires.render)


def test_a_mask_of_any_os_pathlike_is_taken(tiny_masks, content_path, style_path, texture_path):
    face, rest = tiny_masks
    kw = dict(method="fast", size="144x96", fast_size=0)
    by_path = hires.render(content_path, [style_path, texture_path], masks=face, keep=rest, **kw).image
    by_own = hires.render(content_path, [style_path, texture_path], masks=_Where(face), keep=_Where(rest), **kw).image
    assert np.array_equal(by_path, by_own)


def test_a_batch_job_with_more_masks_than_styles_is_refused_before_any_job_runs(tiny_masks, tmp_path, capfd,
                                                                                  content_path, style_path):
    face, rest = tiny_masks
    (tmp_path / "jobs.toml").write_text(f"""
[[job]]
content = "{content_path}"
style = ["{style_path}"]
output = "first.png"
method = "fast"
size = "144x96"

[[job]]
content = "{content_path}"
style = ["{style_path}"]
mask = ["{face}", "{rest}"]
output = "second.png"
method = "fast"
size = "144x96"
""")
    refuses(tmp_path, capfd, ["batch", tmp_path / "jobs.toml"], "2 masks for 1 style")
