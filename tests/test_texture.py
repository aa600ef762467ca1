"""Large seamless textures: the wrap, tiles across it, the example's scale, several
examples, gray examples and one-band output."""
import numpy as np
import pytest
import pyvips

import hires
from hires.core import io
from hires.rendering import pipeline
from hires.core.config import Settings
from hires.core.progress import PlanReady
from hires.rendering.request import make_job
from hires.rendering.jobplan import EXAMPLE_AT_BASE, PATCH_START_SCALE, plan_job
from hires.engine.seams import wrap_seam_ratio

SMALL = dict(iterations=(30, 10), style_layers=("relu1_1", "relu2_1", "relu3_1"), memory="8GiB")


def test_seamless_texture_shows_no_seam_where_it_wraps(texture_path):
    """Rolled by half its size, a seamless texture's wrapped edges meet in the middle: the gradient
    in bands across them is that of the rest within 5%; the same measure finds the seam of a
    texture made without --seamless."""
    kw = dict(size="256x256", base_size=128, example_scale=0.25, **SMALL)
    seamless = hires.texture(texture_path, seamless=True, **kw).image
    # without the detail noise: it raises the gradient everywhere, and the plain texture's seam
    # stands out of it less (1.12 instead of 1.5), though no less visibly
    plain = hires.texture(texture_path, seamless=False, detail=0, **kw).image
    # measured: seamless 1.03 (1.08 while levels were upsampled edge-extended), plain 1.5
    assert abs(wrap_seam_ratio(seamless, band=4) - 1) < 0.05
    assert wrap_seam_ratio(plain, band=4) > 1.15


def _edges_and_inside_change(texture_path, monkeypatch, size: int, tile: int, iterations) -> tuple[int, float, float]:
    """A seamless texture's last level: its tiles, and the mean change of the pixels along its edges
    (refined by the tiles that wrap around) and inside, from its upsampled start to its end."""
    starts, ends = {}, {}
    real = pipeline.refine_pass

    def refine(self, canvas, content, targets, level, tiles, ctx):
        starts[level.index] = np.array(canvas)
        out = real(self, canvas, content, targets, level, tiles, ctx)
        ends[level.index] = np.array(out)
        return out
    monkeypatch.setattr(pipeline, "refine_pass", refine)
    res = hires.texture(texture_path, size=f"{size}x{size}", base_size=size // 2, seamless=True, tile_size=tile,
                        example_scale=0.25, **dict(SMALL, iterations=iterations))
    change = np.abs(ends[1] - starts[1]).mean(2)
    border = np.concatenate([change[:2].ravel(), change[-2:].ravel(), change[:, :2].ravel(), change[:, -2:].ravel()])
    return len(res.plan.levels[-1].tiles), float(border.mean()), float(change[8:-8, 8:-8].mean())


def test_wrap_around_tiles_are_refined(texture_path, monkeypatch):
    """With several tiles per level, the pixels along the texture's edges (refined by the tiles
    that wrap around) change between the upsampled start of a level and its end as much as
    the pixels inside."""
    tiles, border, inside = _edges_and_inside_change(texture_path, monkeypatch, 192, 64, SMALL["iterations"])
    assert tiles >= 9
    assert border > 0.5 * inside > 0


def test_wrap_around_tiles_are_refined_quick(texture_path, monkeypatch):
    """The quick twin of ``test_wrap_around_tiles_are_refined``: a 128 px texture of 4 tiles, each
    wrapping around an edge, 4 iterations at its last level."""
    tiles, border, inside = _edges_and_inside_change(texture_path, monkeypatch, 128, 64, (30, 4))
    assert tiles == 4
    assert border > 0.5 * inside > 0, (border, inside)


def test_example_scale_sets_the_size_of_the_features(texture_path):
    """--example-scale 2 draws the example's features twice as large: the texture has fewer,
    larger structures, so smaller gradients than at 0.5."""
    kw = dict(size="128x128", base_size=64, **SMALL)
    fine = hires.texture(texture_path, example_scale=0.5, **kw).image
    coarse = hires.texture(texture_path, example_scale=2.0, **kw).image

    def gradient(t):
        return np.abs(np.diff(t, axis=0)).mean() + np.abs(np.diff(t, axis=1)).mean()
    assert gradient(coarse) < 0.75 * gradient(fine)


# ---------------------------------------------------------------- quick twins (tests/twins.py)

QUICK = dict(iterations=(16, 6), style_layers=("relu1_1", "relu2_1", "relu3_1"), memory="8GiB")


@pytest.mark.parametrize("seamless", [True, False], ids=["seamless", "without-the-wrap"])
def test_seamless_texture_shows_no_seam_where_it_wraps_quick(texture_path, seamless):
    """The quick twin of the test above (192 px, 16 and 6 iterations; measured 1.006 against 1.206
    without the wrap): the wrapped edges' gradient that of the rest within 5%, and the same measure
    finds the seam when the texture is made without the wrap (the defect: no circular padding, no
    wrapping tiles)."""
    kw = dict(size="192x192", base_size=96, example_scale=0.25, **QUICK)
    image = hires.texture(texture_path, seamless=seamless, **(kw if seamless else dict(kw, detail=0))).image
    ratio = wrap_seam_ratio(image, band=4)
    assert (abs(ratio - 1) < 0.05) if seamless else ratio > 1.15, ratio


@pytest.mark.parametrize("coarse_scale", [2.0, 0.5], ids=["scaled", "scale-ignored"])
def test_example_scale_sets_the_size_of_the_features_quick(texture_path, coarse_scale):
    """The quick twin of ``test_example_scale_sets_the_size_of_the_features`` (96 px; measured 0.55):
    at example scale 2 the texture's gradients are under 0.75 of those at 0.5; with the scale
    ignored (both renders at 0.5, the defect) they are not."""
    kw = dict(size="96x96", base_size=48, **QUICK)
    fine = hires.texture(texture_path, example_scale=0.5, **kw).image
    coarse = hires.texture(texture_path, example_scale=coarse_scale, **kw).image

    def gradient(t):
        return np.abs(np.diff(t, axis=0)).mean() + np.abs(np.diff(t, axis=1)).mean()
    assert (gradient(coarse) < 0.75 * gradient(fine)) == (coarse_scale == 2.0)


def test_whole_frame_level_shows_the_example_at_its_working_size(texture_path):
    """The base level is as coarse as shows the example at about EXAMPLE_AT_BASE px (twice that for
    the patch start), never above --base-size (4x for the patch start); a note says when the example will hardly repeat or
    is too small at the base."""
    w, h = io.image_size(texture_path)  # 1024x512
    job = make_job(None, texture_path, None, "1024x1024", True)
    base = plan_job(job, Settings(start="noise")).levels[0].level
    assert max(base.width, base.height) * max(w, h) / 1024 == EXAMPLE_AT_BASE   # the example at 256 px there
    base = plan_job(job, Settings(start="patch")).levels[0].level
    assert max(base.width, base.height) * max(w, h) / 1024 == EXAMPLE_AT_BASE * PATCH_START_SCALE
    quarter = Settings(start="noise", example_scale=0.25)
    assert plan_job(job, quarter).levels[0].level.width == 512   # capped by --base-size
    assert plan_job(job, quarter.replace(base_size=384)).levels[0].level.width == 256
    wide = make_job(None, texture_path, None, "2048x2048", True)   # (the patch start: up to 4x --base-size)
    assert plan_job(wide, quarter.replace(base_size=256, start="patch")).levels[0].level.width == 1024
    assert "hardly repeat" in plan_job(job, Settings()).notes[0]
    big = make_job(None, texture_path, None, "8192x8192", True)
    assert "too small there" in plan_job(big, Settings(seamless=True, start="noise")).notes[0]
    assert plan_job(big, Settings(seamless=True, start="noise", example_scale=4)).notes == []
    # the patch start costs seconds, not an optimised level's minutes: it may be made at up to 4x
    # --base-size, where the example has the room to show its shapes
    levels = plan_job(big, Settings(seamless=True)).levels
    assert levels[0].level.width == 4 * Settings().base_size and levels[0].level.iterations == 0
    assert plan_job(big, Settings(seamless=True)).notes == []


class _Planned(Exception):
    pass


def test_a_texture_follows_the_plan_that_hires_plan_shows(tmp_path, texture_path):
    """A texture's settings are settled once: the levels a render runs are those ``hires plan``
    shows.  (Settled twice, the patch start's cap of 4x --base-size applied to its own result: the
    plan said a 256 px start, the render made it at 512.)"""
    square = tmp_path / "square.png"
    pyvips.Image.new_from_file(str(texture_path)).crop(0, 0, 512, 512).pngsave(str(square))
    kw = dict(size="1024x1024", base_size=64, example_scale=0.5, seamless=True)
    planned = [lp.level.width for lp in hires.plan(square, texture=True, **kw).levels]
    rendered = []

    def progress(e):
        if isinstance(e, PlanReady):   # (the plan the render follows: enough, stop before the work)
            rendered.extend(lv["width"] for lv in e.plan["levels"])
            raise _Planned
    with pytest.raises(_Planned):
        hires.texture(square, progress=progress, **kw)
    assert planned == rendered == [256, 512, 1024]


def test_several_examples_mix_by_weight(tmp_path, texture_path):
    """Two examples of different colours: the texture's mean colour is nearer the heavier one."""
    other = tmp_path / "blue.png"
    pyvips.Image.new_from_file(str(texture_path)).bandjoin([]).extract_band(0, n=3)[::-1].pngsave(str(other))
    a, b = (io.load_image(p, long_side=128).reshape(-1, 3).mean(0) for p in (texture_path, other))
    assert np.abs(a - b).sum() > 0.1
    kw = dict(size="64x64", base_size=64, example_scale=0.25, **SMALL)  # (the examples' statistics at 256 px)
    for wa, nearer in ((0.8, a), (0.2, b)):
        mean = hires.texture([f"{texture_path}:{wa}", f"{other}:{1 - wa}"], **kw).image.reshape(-1, 3).mean(0)
        far = b if nearer is a else a
        assert np.abs(mean - nearer).sum() < np.abs(mean - far).sum()


@pytest.fixture
def gray_example(tmp_path, texture_path):
    path = tmp_path / "gray.png"
    pyvips.Image.new_from_file(str(texture_path)).colourspace("b-w").pngsave(str(path))
    return path


def test_gray_example_gives_a_gray_one_band_texture(tmp_path, gray_example):
    out = tmp_path / "t.png"
    res = hires.texture(gray_example, out, size="64x64", base_size=64, example_scale=0.25, **SMALL)
    im = pyvips.Image.new_from_file(str(out))
    assert im.bands == 1 and im.interpretation == "b-w"
    assert np.ptp(res.image, axis=2).max() == 0   # every level kept gray
    pixels = np.ndarray(buffer=im.write_to_memory(), dtype=np.uint8, shape=(64, 64))
    np.testing.assert_allclose(pixels / 255, res.image[..., 0], atol=1 / 255)
    # asked for colour, the same example comes out in three bands
    colour_out = tmp_path / "c.png"
    hires.texture(gray_example, colour_out, size="64x64", base_size=64, mode="color", example_scale=0.25, **SMALL)
    assert pyvips.Image.new_from_file(str(colour_out)).bands == 3


def test_mode_gray_writes_one_band_16_bit(tmp_path, texture_path):
    out = tmp_path / "t.tif"
    hires.texture(texture_path, out, size="64x64", base_size=64, mode="gray", bit_depth=16, example_scale=0.25,
                  **SMALL)
    im = pyvips.Image.new_from_file(str(out))
    assert (im.bands, im.interpretation, im.format) == (1, "grey16", "ushort")
    assert im.get_typeof("icc-profile-data") == 0   # the sRGB profile is for three bands


def test_gray_needs_every_input_gray(texture_path, gray_example):
    assert io.is_gray(gray_example) and not io.is_gray(texture_path)
    from hires.rendering.jobplan import output_mode
    both = make_job(None, [gray_example, texture_path], None, "64x64", True)
    assert output_mode(both, Settings()) == "color"
    assert output_mode(make_job(None, gray_example, None, "64x64", True), Settings()) == "gray"


def test_line_ratio_finds_a_faint_line_along_a_cut():
    """A 10% darker row across a noisy image (each pixel +-60%) is invisible to the gradient bands but is the line
    the first 8192 px texture had; the line measure gives about 1 without it, well over 2 with it."""
    from hires.engine.seams import band_ratio, line_ratio
    rng = np.random.default_rng(3)
    img = rng.uniform(0.2, 0.8, (512, 384, 3)).astype(np.float32)
    assert line_ratio(img, [200], [150]) < 1.6
    img[203] *= 0.9
    assert line_ratio(img, [200], [150]) > 2
    assert line_ratio(img, [], [150]) < 1.6  # only along the lines asked about
    assert abs(band_ratio(img, [200], [150]) - 1) < 0.02


def test_mixed_colour_statistics_are_those_of_the_pooled_pixels(rng):
    from hires.core.colour import colour_stats, mix_stats
    a = rng.uniform(0.0, 0.6, (40, 30, 3)).astype(np.float32)
    b = rng.uniform(0.3, 1.0, (20, 30, 3)).astype(np.float32) * np.array([1.0, 0.5, 0.8], np.float32)
    mu, cov = mix_stats([colour_stats(a), colour_stats(b)], [2, 1])  # in proportion to their pixels
    pooled_mu, pooled_cov = colour_stats(np.concatenate([a, b]))
    np.testing.assert_allclose(mu, pooled_mu, rtol=1e-6)
    np.testing.assert_allclose(cov, pooled_cov, rtol=0.01, atol=1e-4)


def test_texture_takes_the_examples_colour_statistics(texture_path):
    """The finished texture has the colour mean and covariance of its example as the example
    appears in it (resized to the finest level's scale).  Without that last step the fine levels
    leave it with less contrast: 2-3% here, 20-30% on the first 8192 px texture (washed out)."""
    from hires.core.colour import colour_stats
    kw = dict(size="128x128", base_size=64, example_scale=0.25, **SMALL)
    w, h = io.image_size(texture_path, "example")
    mu, cov = colour_stats(io.load_image(texture_path, size=(round(w * 0.25), round(h * 0.25))))
    for match in (True, False):
        t_mu, t_cov = colour_stats(hires.texture(texture_path, match_colours=match, **kw).image)
        off = max(np.abs(t_mu - mu).max() / np.sqrt(np.diag(cov)).min(),
                  np.abs(np.sqrt(np.diag(t_cov)) / np.sqrt(np.diag(cov)) - 1).max())
        assert (off < 0.003) if match else (off > 0.01), (match, off)


def test_detail_noise_has_the_asked_colour_covariance_and_repeats_per_level():
    from hires.engine.detail import add_noise
    cov = np.array([[4.0, 2.0, 1.0], [2.0, 3.0, 0.5], [1.0, 0.5, 2.0]]) * 1e-4
    a = np.full((256, 256, 3), 0.5, np.float32)
    add_noise(a, cov, 2.0, seed=7, level=2)
    np.testing.assert_allclose(np.cov(a.reshape(-1, 3).astype(np.float64), rowvar=False), 4 * cov, rtol=0.05, atol=2e-6)
    b = np.full((256, 256, 3), 0.5, np.float32)
    add_noise(b, cov, 2.0, seed=7, level=2)
    np.testing.assert_array_equal(a, b)  # a resumed render adds the same noise
    c = np.full((256, 256, 3), 0.5, np.float32)
    add_noise(c, cov, 2.0, seed=7, level=3)
    assert not np.array_equal(a, c)


def test_top_octave_is_what_halving_loses(rng):
    from hires.engine.detail import top_octave
    y, x = np.mgrid[0:128, 0:128] / 128.0
    smooth = np.repeat((0.5 + 0.3 * np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y))[..., None], 3, 2).astype(np.float32)
    fine = rng.uniform(0, 1, (128, 128, 3)).astype(np.float32)
    assert np.abs(top_octave(smooth)).mean() < 0.01 < 0.1 < np.abs(top_octave(fine)).mean()


def test_detail_noise_brings_back_the_examples_fine_contrast(texture_path):
    """Finer levels started from a bare upsampling come out soft (pixel-to-pixel contrast well
    under the example's); with the missing octave added as noise they come nearer it (a little
    over: the last level shapes its noise in ten evaluations)."""
    kw = dict(size="256x256", base_size=64, example_scale=0.5, iterations=(30, 10, 10), optimizer="lbfgs", **{
        k: v for k, v in SMALL.items() if k != "iterations"})  # (Adam's steps regain the contrast by themselves)
    w, h = io.image_size(texture_path, "example")
    example = io.load_image(texture_path, size=(round(w * 0.5), round(h * 0.5)))

    def gradient(t):
        return np.abs(np.diff(t, axis=0)).mean() + np.abs(np.diff(t, axis=1)).mean()
    soft = gradient(hires.texture(texture_path, detail=0, **kw).image) / gradient(example)
    detailed = gradient(hires.texture(texture_path, **kw).image) / gradient(example)
    # measured 0.68 and 1.19 (1024 px from mossy rock: 0.55 and 1.15, 1.09 at --detail 0.7)
    assert soft < 0.8 and abs(detailed - 1) < 0.75 * abs(soft - 1)


def test_soft_band_finds_a_band_without_a_step():
    """A darker band about 20 px across (Gaussian, 6% of the mean at its centre) along one row of
    a noisy image: no step for the line measure, but over 4 standard deviations of the row-mean
    wobble for the band measure; under 3.5 without it and along other rows."""
    from hires.engine.seams import line_ratio, soft_band
    rng = np.random.default_rng(5)
    img = rng.uniform(0.2, 0.8, (512, 384, 3)).astype(np.float32)
    assert soft_band(img, [300], [200]) < 3.5
    y = np.arange(512)[:, None, None]
    img *= (1 - 0.06 * np.exp(-0.5 * ((y - 300) / 6.0) ** 2)).astype(np.float32)
    assert soft_band(img, [300], [200]) > 4
    assert soft_band(img, [100], [200]) < 3.5  # only along the lines asked about
    assert line_ratio(img, [300], [200]) < 1.6


def test_the_patch_start_lays_out_the_whole_frame_level_and_noise_is_a_choice(texture_path, monkeypatch):
    """--start patch (the default) makes the whole-frame level from the example's patches and does not
    optimise it; the finer levels refine it with its shapes as their content target.  --start noise
    optimises the whole-frame level from noise, with no content.  The plan says which, and counts the
    patch start's time."""
    contents = {}
    real = pipeline.refine_pass

    def refine(self, canvas, content, targets, level, tiles, ctx):
        contents[level.index] = None if content is None else np.array(content)
        return real(self, canvas, content, targets, level, tiles, ctx)
    monkeypatch.setattr(pipeline, "refine_pass", refine)
    kw = dict(size="128x128", base_size=64, seamless=True, iterations=(30, 4),
              style_layers=("relu1_1", "relu2_1", "relu3_1"), memory="8GiB")
    patch = hires.texture(texture_path, **kw)
    first = patch.plan.levels[0]
    assert first.patch and first.level.iterations == 0 and patch.plan.levels[1].level.iterations == 4
    assert list(contents) == [1] and contents[1].shape == (128, 128, 3)   # (level 0 not optimised)
    assert "patch start" in "\n".join(patch.plan.describe()) and patch.plan.as_dict()["levels"][0]["patch_start"]
    assert patch.plan.patch_seconds(first) > 0
    job = make_job(None, texture_path, None, "128x128", True)
    settings = {k: v for k, v in kw.items() if k != "size"}
    noise = plan_job(job, Settings(**settings, start="noise"))
    assert not noise.levels[0].patch and noise.levels[0].level.iterations == 30


def test_a_bad_start_or_an_example_smaller_than_a_patch_is_one_line(tmp_path, capfd, texture_path):
    from helpers import one_line, run_cli
    out = tmp_path / "t.png"
    line = one_line(*run_cli(["texture", texture_path, "--size", "64x64", "-o", out, "--start", "quilt"], capfd))
    assert "--start" in line and "patch" in line and not out.exists()
    tiny = tmp_path / "tiny.png"
    pyvips.Image.black(6, 6, bands=3).pngsave(str(tiny))
    line = one_line(*run_cli(["texture", tiny, "--size", "64x64", "-o", out], capfd))
    assert "too small for the patch start" in line and "--start noise" in line and not out.exists()


def test_a_patch_start_larger_than_the_budget_is_refused_before_any_work(texture_path):
    """A --base-size that puts a 16384 px texture's patch start at 8192 px (64 bytes a px) does not
    fit 4 GiB: refused by the plan, with the way out, not found out by the render."""
    from hires.core.errors import BudgetError
    job = make_job(None, texture_path, None, "16384x16384", True)
    big = Settings(base_size=8192, example_scale=0.5, memory="4GiB")
    with pytest.raises(BudgetError, match="patch start.*--start noise"):
        plan_job(job, big)
    assert plan_job(job, big.replace(start="noise")).levels
