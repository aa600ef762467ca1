"""Full-frame optimisation and texture synthesis (small, fast, on the random network)."""
import numpy as np
import pytest
import pyvips
import torch

import hires
from hires.core import colour
from hires.engine import losses
from hires.core.canvas import Buffers
from hires.core.config import Settings
from hires.engine.engine import Engine
from hires.core.errors import OptionError
from hires.rendering.pipeline import level_targets
from hires.rendering.request import make_job
from hires.planning.planner import make_plan

from conftest import FAST, data


def gram_distance(image, example, layers=("relu1_1", "relu2_1", "relu3_1")):
    """Style loss between two images on the seeded random network."""
    net = hires.engine.nets.random_network(0)
    with torch.no_grad():
        fa = net(torch.from_numpy(image).permute(2, 0, 1)[None].contiguous(), layers)
        fb = net(torch.from_numpy(example).permute(2, 0, 1)[None].contiguous(), layers)
    total = 0.0
    for name in layers:
        a, b = losses.flat(fa[name]), losses.flat(fb[name])
        ga, gb = a.T @ a / len(a), b.T @ b / len(b)
        total += float(((ga - gb) ** 2).sum() / (gb ** 2).sum())
    return total


def test_render_moves_toward_the_style(tmp_path, content_path, style_path):
    out = tmp_path / "r.png"
    res = hires.render(content_path, style_path, out, size="96x64", **FAST)
    img = res.image
    assert img.shape == (64, 96, 3) and res.network == "hybrid"
    content = hires.core.io.load_image(content_path, size=(96, 64))
    style = hires.core.io.load_image(style_path, long_side=96)
    assert gram_distance(img, style) < 0.7 * gram_distance(content, style)
    # colours come from the painting: mean colour closer to the style's than the photo was
    assert np.abs(img.mean((0, 1)) - style.mean((0, 1))).sum() < np.abs(content.mean((0, 1)) - style.mean((0, 1))).sum()
    back = pyvips.Image.new_from_file(str(out))
    assert (back.width, back.height) == (96, 64)


def test_same_seed_same_output_and_seed_matters(content_path, style_path):
    kw = dict(FAST, size="64x48", init="noise")
    a = hires.render(content_path, style_path, **kw).image
    b = hires.render(content_path, style_path, **kw).image
    c = hires.render(content_path, style_path, seed=7, **kw).image
    assert np.array_equal(a, b)
    assert np.abs(a - c).mean() > 1e-3


def test_init_content_versus_noise(content_path, style_path):
    kw = {k: v for k, v in FAST.items() if k != "init"}
    kw.update(size="64x48", iterations=(0,))
    content = hires.core.io.load_image(content_path, size=(64, 48))
    assert np.allclose(hires.render(content_path, style_path, init="content", **kw).image, content, atol=1e-6)
    noise = hires.render(content_path, style_path, init="noise", **kw).image
    assert np.abs(noise - content).mean() > 0.05


def test_content_weight_keeps_the_photo(content_path, style_path):
    kw = dict(FAST, size="64x48", init="noise", iterations=(25,))
    content = hires.core.io.load_image(content_path, size=(64, 48))
    strong = hires.render(content_path, style_path, content_weight=5.0, **kw).image
    none = hires.render(content_path, style_path, content_weight=0.0, **kw).image
    assert np.abs(strong - content).mean() < np.abs(none - content).mean()


def test_adam_optimiser_reduces_the_loss(content_path, style_path):
    kw = dict(size="64x48", **FAST)
    content = hires.core.io.load_image(content_path, size=(64, 48))
    style = hires.core.io.load_image(style_path, long_side=64)
    img = hires.render(content_path, style_path, optimizer="adam", lr=0.05, **{**kw, "iterations": (20,)}).image
    assert gram_distance(img, style) < gram_distance(content, style)


def test_several_styles_mix_their_statistics(content_path, style_path):
    other = data("styles/hokusai_great_wave_c1831.jpg", "stone_bricks_ambientcg_bricks102.jpg")
    s = Settings(**FAST)
    engine = Engine(s)
    job_a = make_job(content_path, [f"{style_path}:1"], None, "64x48", False)
    job_b = make_job(content_path, [f"{other}:1"], None, "64x48", False)
    job_ab = make_job(content_path, [f"{style_path}:3", f"{other}:1"], None, "64x48", False)
    lp = make_plan(64, 48, s).levels[0]
    ta, tb, tab = (level_targets(engine, j, s, lp, Buffers(None, False)) for j in (job_a, job_b, job_ab))
    for name in ta:
        np.testing.assert_allclose(tab[name].gram.numpy(), 0.75 * ta[name].gram.numpy() + 0.25 * tb[name].gram.numpy(),
                                   rtol=1e-4, atol=1e-6)


def test_style_scale_sets_style_image_size(content_path, style_path):
    from hires.rendering.jobplan import style_size
    job = make_job(content_path, style_path, None, "600x400", False)
    assert style_size(job, (1280, 1014), 600, 400, Settings()) == (600, 475)
    assert style_size(job, (1280, 1014), 600, 400, Settings(style_scale=0.5)) == (300, 238)
    tex = make_job(None, style_path, None, "2000x2000", True)
    # a texture example keeps its own scale at the finest level and shrinks with coarser levels
    assert style_size(tex, (1280, 1014), 2000, 2000, Settings()) == (1280, 1014)
    assert style_size(tex, (1280, 1014), 500, 500, Settings()) == (320, 254)


def test_preserve_colour_luminance_keeps_content_chroma(content_path, style_path):
    kw = dict(FAST, size="64x48", init="noise")  # from noise, a plain render's chroma is far off
    img = hires.render(content_path, style_path, preserve_color="luminance", **kw).image
    content = hires.core.io.load_image(content_path, size=(64, 48))
    m = colour.rgb_to_yuv_matrix()
    uv_img, uv_content = (img @ m.T)[..., 1:], (content @ m.T)[..., 1:]
    # chroma of the result equals the content's, except where clipping to [0, 1] changed it
    preserved = np.median(np.abs(uv_img - uv_content))
    plain = hires.render(content_path, style_path, **kw).image
    assert preserved < 0.01
    assert np.median(np.abs((plain @ m.T)[..., 1:] - uv_content)) > 3 * preserved


def test_histogram_matching_gives_style_the_content_colours(content_path, style_path):
    content = hires.core.io.load_image(content_path, long_side=128)
    style = hires.core.io.load_image(style_path, long_side=128)
    matched = colour.match_histogram(style, colour.colour_stats(content))
    mu_c, cov_c = colour.colour_stats(content)
    mu_m, cov_m = colour.colour_stats(matched)
    np.testing.assert_allclose(mu_m, mu_c, atol=0.02)
    np.testing.assert_allclose(cov_m, cov_c, atol=0.004)
    a = hires.render(content_path, style_path, size="64x48", preserve_color="histogram", **FAST).image
    b = hires.render(content_path, style_path, size="64x48", **FAST).image
    c = hires.core.io.load_image(content_path, size=(64, 48))
    assert np.abs(a.mean((0, 1)) - c.mean((0, 1))).sum() < np.abs(b.mean((0, 1)) - c.mean((0, 1))).sum()


def test_texture_resembles_example(tmp_path, texture_path):
    out = tmp_path / "t.png"
    res = hires.texture(texture_path, out, size="64x64", **{**FAST, "iterations": (30,)})
    example = hires.core.io.load_image(texture_path, long_side=64)
    noise = np.clip(example.mean((0, 1)) + np.random.default_rng(0).standard_normal((64, 64, 3)) * 0.15, 0, 1)
    assert gram_distance(res.image, example) < 0.5 * gram_distance(noise.astype(np.float32), example)
    assert pyvips.Image.new_from_file(str(out)).width == 64


def test_seamless_texture_wraps(texture_path):
    """With circular padding the wrap-around seam is no stronger than the texture's inner edges."""
    kw = dict(size="64x64", **{**FAST, "iterations": (30,)})
    t = hires.texture(texture_path, seamless=True, **kw).image
    inner = np.abs(np.diff(t, axis=1)).mean()
    seam = np.abs(t[:, 0] - t[:, -1]).mean()
    assert seam < 1.5 * inner


def test_device_option(content_path, style_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(OptionError, match="cuda"):
        hires.render(content_path, style_path, size="32x32", device="cuda", **FAST)
    assert hires.render(content_path, style_path, size="32x32", device="cpu", **FAST).image.shape == (32, 32, 3)


def test_mmap_threshold_is_set_unless_glibc_tunable_is_given(monkeypatch):
    from hires.core import canvas
    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))

    monkeypatch.setattr(canvas, "_LIBC", FakeLibc())
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    canvas.return_memory_promptly()
    assert calls == [(canvas._M_MMAP_THRESHOLD, 1 << 20)]
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", str(16 << 20))  # the user's (or a benchmark's) choice stands
    canvas.return_memory_promptly()
    assert len(calls) == 1


HUGE_PAGES = r"""
import os, sys
import hires
hires.render  # the API's first use: torch loads here
import torch
x = torch.empty(64 << 18)  # 64 MiB, every page touched
x.fill_(1.0)
try:
    with open("/proc/self/smaps_rollup") as fh:
        kib = [int(l.split()[1]) for l in fh if l.startswith("AnonHugePages")]
except OSError:  # not Linux: only the variable is checked
    kib = []
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), kib[0] if kib else -1)
"""


@pytest.mark.parametrize("given", [None, "0"])
def test_a_render_asks_torch_for_huge_pages_before_torch_loads_unless_told_not_to(given):
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if given is not None:
        env["THP_MEM_ALLOC_ENABLE"] = given
    value, huge_kib = subprocess.run([sys.executable, "-c", HUGE_PAGES], env=env, capture_output=True, text=True,
                                     check=True).stdout.split()
    assert value == (given or "1")
    from pathlib import Path
    try:
        mode = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        mode = ""
    if "[madvise]" in mode:  # huge pages only where asked for: so they are torch's, as asked
        assert (int(huge_kib) >= 32 << 10) == (given is None)


def test_evaluations_reuse_freed_memory_and_give_it_back_after_the_tile(monkeypatch):
    from hires.core import canvas
    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append(("mallopt", param, value))

        def malloc_trim(self, pad):
            calls.append(("trim",))

    monkeypatch.setattr(canvas, "_LIBC", FakeLibc())
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    with canvas.reuse_memory(give_back=False):
        assert calls[0] == ("mallopt", canvas._M_MMAP_THRESHOLD, 1 << 30)
    assert calls[-1] == ("mallopt", canvas._M_MMAP_THRESHOLD, canvas.PROMPT_THRESHOLD)
    assert ("trim",) not in calls  # kept for the next evaluation
    canvas.give_back_memory()
    assert calls[-1] == ("trim",)


@pytest.mark.parametrize("reuse", [True, False])
def test_the_engine_reuses_memory_only_where_the_plan_says(monkeypatch, reuse):
    import contextlib

    from hires.engine import engine as eng
    entered = []

    @contextlib.contextmanager
    def counting(**kw):
        entered.append(kw)
        yield

    monkeypatch.setattr(eng, "reuse_memory", counting)
    e = eng.Engine(Settings(network="random", iterations=(3,)))
    x0 = torch.rand(1, 3, 16, 16)
    out = e.optimise(lambda x: (x ** 2).sum(), x0, torch.ones_like(x0), 3, lambda *a: None, reuse)
    assert out.shape == x0.shape and float(out.sum()) < float(x0.sum())
    assert (len(entered) >= 3) if reuse else not entered  # once per evaluation (L-BFGS adds its first)


def test_a_level_allocates_the_canvas_bytes_the_plan_counts(monkeypatch, content_path, style_path):
    """The memory model's full-size buffers per level pixel (hires.planning.memory.CANVAS_BYTES_PER_PX) are what a
    level allocates: its canvas, weight map and content target."""
    from hires.planning import planner as plan
    made = []
    real = Buffers.empty

    def spy(self, name, shape):
        a = real(self, name, shape)
        made.append((name, shape[:2], a.nbytes))
        return a
    monkeypatch.setattr(Buffers, "empty", spy)
    hires.render(content_path, style_path, size="128x96", **dict(FAST, iterations=(4, 2)))
    level = [(name, nbytes) for name, hw, nbytes in made if hw == (96, 128) and name != "style"]
    assert sorted(name for name, _ in level) == ["canvas", "content", "weights"]
    assert sum(nbytes for _, nbytes in level) == plan.CANVAS_BYTES_PER_PX * 96 * 128
