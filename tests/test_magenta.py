"""The bundled Magenta network: verified weights, and torch modules that reproduce the reference
outputs the conversion stored (the de-quantised ONNX graphs run by onnxruntime)."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hires.engine import magenta
from hires.core.errors import WeightsError

ROOT = Path(__file__).resolve().parents[1]


def test_a_norm_mixed_per_position_is_each_styles_norm_weighted_there():
    """MixedParams against the norm written out in float64: at each position the sum over styles
    of weight x (gamma_r x_hat + beta_r), with x_hat normalised by the given statistics."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 5, 6, 7, generator=g)
    gammas, betas = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    w = torch.rand(3, 42, generator=g)
    w /= w.sum(0)
    mean, var = torch.randn(1, 5, 1, 1, generator=g), torch.rand(1, 5, 1, 1, generator=g) + 0.5
    x_hat = ((x.double() - mean.double()) / torch.sqrt(var.double() + magenta.CIN_EPS)).reshape(5, 42)
    want = sum(w[r].double() * (gammas[:, r, None].double() * x_hat + betas[:, r, None].double()) for r in range(3))
    for layout in (torch.contiguous_format, torch.channels_last):  # (the networks' own is channels-last)
        got = magenta.instance_norm(x.contiguous(memory_format=layout), magenta.MixedParams(gammas, betas, w),
                                    (mean, var))
        assert got.is_contiguous(memory_format=layout)
        torch.testing.assert_close(got.reshape(5, 42).double(), want, rtol=1e-5, atol=1e-5)


def test_predictor_and_transformer_match_the_converted_graphs():
    a = magenta.load_arrays()
    predictor, transformer = magenta.networks()
    with torch.no_grad():
        b = predictor(torch.from_numpy(a["reference/style_image"]).permute(0, 3, 1, 2))
        out = transformer(torch.from_numpy(a["reference/content_image"]).permute(0, 3, 1, 2),
                          torch.from_numpy(a["reference/bottleneck"]).reshape(1, -1))
    np.testing.assert_allclose(b.numpy(), a["reference/bottleneck"].reshape(1, -1), atol=1e-4)
    ref = a["reference/stylised"]
    assert ref.std() > 0.05  # a real picture, not a constant
    np.testing.assert_allclose(out.permute(0, 2, 3, 1).numpy(), ref, atol=1e-4)


def test_weights_are_verified_before_loading(tmp_path):
    bad = tmp_path / "magenta.npz"
    bad.write_bytes(magenta.WEIGHTS.read_bytes()[:-10] + b"0123456789")
    (tmp_path / "magenta.sha256").write_text(magenta.WEIGHTS.with_suffix(".sha256").read_text())
    with pytest.raises(WeightsError, match="fails verification"):
        magenta.load_arrays.__wrapped__(bad)


def test_the_wheel_carries_the_weights_and_the_licence(tmp_path):
    src = tmp_path / "src"  # build from a copy: setuptools writes build/ into the tree it builds
    for name in ("hires", "kernels", "configs"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
                        str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next(tmp_path.glob("hires-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for want in ("hires/models/magenta.npz", "hires/models/magenta.sha256", "hires/models/LICENSE-magenta.txt",
                 "hires/models/NOTICE.md", "hires/engine/magenta.py"):
        assert want in names, want


# ---------------------------------------------------------------- the fast method

import hires  # noqa: E402
from hires.core import io
from hires.fast import fast, stylecode  # noqa: E402
from hires.rendering.fastrender import fast_start  # noqa: E402
from hires.rendering.request import make_job  # noqa: E402
from hires.core.config import Settings  # noqa: E402
from hires.engine.pyramid import Level  # noqa: E402


def test_tiled_instance_norm_equals_the_whole_frame(content_path, style_path):
    """Many tiles, each CIN layer's statistics gathered over the whole image first: the tiled
    output equals the whole-frame output."""
    b = stylecode.style_bottleneck([(style_path, 1.0)])
    content = io.load_image(content_path, size=(256, 192))
    whole, tiled = np.zeros_like(content), np.zeros_like(content)
    assert fast.TiledTransformer(b)(content, whole, 256).tiles == 1
    report = fast.TiledTransformer(b)(content, tiled, 96)
    assert report.tiles >= 6 and report.passes == 14
    assert whole.std() > 0.05
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
    # and without the gathered statistics (each tile its own) the tiles would not match
    per_tile = np.zeros_like(content)
    runner = fast.TiledTransformer(b)
    for t in fast.grid(256, 192, 96, 0, fast.MARGIN, False):
        with torch.no_grad():
            y = runner.net(fast.to_nchw(fast.take(content, t.region), "cpu"), params=runner.params)
        y = y[0].permute(1, 2, 0).numpy()
        cy0, cy1, cx0, cx1 = t.core
        per_tile[cy0:cy1, cx0:cx1] = y[cy0 - t.region[0]:cy1 - t.region[0], cx0 - t.region[2]:cx1 - t.region[2]]
    assert np.abs(per_tile - whole).max() > 1e-2


def test_tiles_resume_where_they_stopped_in_ram_on_disk_or_from_their_input(tmp_path, content_path, style_path):
    """Each tile's state is kept between the statistics passes, so the network runs once per tile
    (work 1.0) instead of once per layer; kept on disk when RAM has no room (the files go with the
    run), or, with neither, each tile runs again from its input: every way equals the whole frame."""
    from hires.core.canvas import Buffers
    b = stylecode.style_bottleneck([(style_path, 1.0)])
    content = io.load_image(content_path, size=(256, 192))
    whole = np.zeros_like(content)
    fast.TiledTransformer(b)(content, whole, 256)
    outs = {name: np.zeros_like(content) for name in ("ram", "disk", "none")}
    ram = fast.TiledTransformer(b)(content, outs["ram"], 96)
    buffers = Buffers(tmp_path / "states", False)
    disk = fast.TiledTransformer(b)(content, outs["disk"], 96, room=0, buffers=buffers)
    none = fast.TiledTransformer(b)(content, outs["none"], 96, room=0)
    assert ram.work == 1.0 and ram.spilled == 0
    assert disk.work == 1.0 and disk.spilled >= 13 * disk.tiles and buffers.files == []
    assert none.work > 5 and none.spilled == 0
    assert list((tmp_path / "states").iterdir()) == []
    for out in outs.values():
        np.testing.assert_allclose(out, whole, atol=1e-4)


def test_strength_interpolates_in_bottleneck_space(content_path, style_path):
    b0, b5, b1 = (stylecode.style_bottleneck([(style_path, 1.0)], content_path, s) for s in (0.0, 0.5, 1.0))
    assert (b1 - b0).abs().max() > 0.1
    torch.testing.assert_close(b5, (b0 + b1) / 2, atol=1e-5, rtol=1e-5)
    own = stylecode.bottleneck(io.load_image(content_path, size=(256, 256)))
    torch.testing.assert_close(b0, own)


def test_several_styles_mix_their_bottlenecks(style_path, texture_path):
    a, b = stylecode.style_bottleneck([(style_path, 1.0)]), stylecode.style_bottleneck([(texture_path, 1.0)])
    mixed = stylecode.style_bottleneck([(style_path, 3.0), (texture_path, 1.0)])
    torch.testing.assert_close(mixed, 0.75 * a + 0.25 * b, atol=1e-5, rtol=1e-5)


def test_fast_method_renders_a_stylised_file(tmp_path, content_path, style_path):
    out = tmp_path / "f.tif"
    res = hires.render(content_path, style_path, out, size="300x220", method="fast", fast_size=160, bit_depth=16)
    back = io.load_image(out)
    assert back.shape == (220, 300, 3) and res.network == "magenta"
    assert res.plan.as_dict()["method"] == "fast" and res.plan.as_dict()["peak_bytes"] > 0  # a plan for every method
    assert "300x220" in repr(res) and "array" not in repr(res) and len(repr(res)) < 200  # no pixels in the repr
    content = io.load_image(content_path, size=(300, 220))
    assert np.abs(back - content).mean() > 0.05  # stylised, not a copy
    weak = hires.render(content_path, style_path, size="300x220", method="fast", fast_size=160, strength=0.2).image
    assert np.abs(weak - content).mean() < np.abs(back - content).mean()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.tif"]


def test_fast_method_is_for_renders_only(tmp_path, texture_path):
    from hires.core.errors import OptionError
    with pytest.raises(OptionError, match="--method fast"):
        hires.texture(texture_path, size="64x64", method="fast")


def test_render_starts_from_the_fast_stylisation(content_path, style_path):
    kw = dict(size="96x64", base_size=96, iterations=(0,), style_layers=("relu1_1", "relu2_1"), content_layer="relu2_1")
    auto = hires.render(content_path, style_path, **kw).image
    content = hires.render(content_path, style_path, init="content", **kw).image
    job = make_job(content_path, style_path, None, "96x64", False)
    want = fast_start(Level(0, 96, 64, 0, ("relu1_1",), "relu1_1"), job, Settings())
    np.testing.assert_allclose(auto, want, atol=1e-6)
    assert np.abs(auto - content).mean() > 0.05


@pytest.mark.parametrize("multiscale", [True, False])
def test_the_level_that_paints_the_multiscale_start_reports_its_seconds(content_path, style_path, multiscale):
    # 48 and 96 px are the fast network's, 192 px is optimised on the start painted at 96 then 192 px;
    # the benchmarks set the plan's estimate of that start beside this figure
    res = hires.render(content_path, style_path, size="192x128", base_size=48, fast_size=96, iterations=(1, 1, 1),
                       style_layers=("relu1_1",), content_layer="relu1_1", multiscale=multiscale)
    painted = [lv.paint_s > 0 for lv in res.levels]
    assert painted == [False, False, multiscale]
    assert all(lv.paint_s <= lv.wall_s for lv in res.levels)


def test_the_plan_counts_the_pixels_each_level_start_resamples(content_path, style_path, monkeypatch):
    """The plan prices a level's start by the px libvips resamples there (LevelPlan.resample: written
    by upsampling, read by downsampling); a spy on the pipeline's resampling counts them in a
    multi-scale render, each start's own (the painting's stages are the paint's)."""
    from hires.core import io
    from hires.rendering import pipeline
    from hires.core.progress import LevelStarted
    counted, level = {}, [None]

    def spy(fn):
        def resampled(arr, width, height, *args, **kw):
            if sys._getframe(1).f_code.co_name in ("level_start", "painted_content"):
                up = width * height > arr.shape[0] * arr.shape[1]
                px = counted.setdefault(level[0], [0, 0])
                px[0 if up else 1] += width * height if up else arr.shape[0] * arr.shape[1]
            return fn(arr, width, height, *args, **kw)
        return resampled

    monkeypatch.setattr(io, "resize", spy(io.resize))
    monkeypatch.setattr(io, "resized_strips", spy(io.resized_strips))

    def progress(e):
        if isinstance(e, LevelStarted):
            level[0] = e.level

    res = hires.render(content_path, style_path, size="384x256", base_size=48, fast_size=96, iterations=(1,) * 4,
                       style_layers=("relu1_1",), content_layer="relu1_1", progress=progress)
    planned = {lp.level.index: list(lp.resample) for lp in res.plan.levels if any(lp.resample)}
    assert sorted(planned) == [2, 3] and planned == counted


# ---------------------------------------------------------------- the 26-style network

def test_multistyle_network_matches_the_converted_graph():
    a = magenta.load_arrays()
    net = magenta.multistyle()
    x = torch.from_numpy(a["reference/content_image"]).permute(0, 3, 1, 2)
    from hires.fast.magenta_convert import MULTISTYLE_MIXES
    for tag, mix in MULTISTYLE_MIXES.items():
        with torch.no_grad():
            y = net(x, magenta.builtin_weights(mix))
        ref = a[f"reference/multistyle26_{tag}"]
        assert ref.std() > 0.05
        np.testing.assert_allclose(y.numpy(), ref, atol=1e-4)


def test_multistyle_tiled_equals_whole(content_path):
    code = magenta.builtin_weights({19: 1.0})
    content = io.load_image(content_path, size=(256, 192))
    whole, tiled = np.zeros_like(content), np.zeros_like(content)
    net = magenta.multistyle()
    fast.TiledTransformer(code, network=net)(content, whole, 256)
    report = fast.TiledTransformer(code, network=net)(content, tiled, 96)
    assert report.tiles >= 6 and report.passes == 19 and whole.std() > 0.05
    np.testing.assert_allclose(tiled, whole, atol=1e-4)


def test_builtin_style_needs_no_style_image_and_blends(tmp_path, content_path):
    from hires.commands.cli import main
    out = tmp_path / "b.png"
    assert main(["render", str(content_path), "--method", "fast", "--builtin-style", "3:0.5,19:0.5",
                 "--size", "160x108", "-o", str(out), "--quiet"]) == 0
    blend = io.load_image(out)
    one = hires.render(content_path, None, size=(160, 108), method="fast", builtin_style="19").image
    three = hires.render(content_path, None, size=(160, 108), method="fast", builtin_style="3").image
    assert np.abs(blend - one).mean() > 0.02 and np.abs(blend - three).mean() > 0.02
    with pytest.raises(Exception, match="must be a style 0-25"):
        Settings(builtin_style="26")
    with pytest.raises(Exception, match="strength"):
        hires.render(content_path, None, size=(160, 108), method="fast", builtin_style="19", strength=0.5)
    with pytest.raises(Exception, match="--builtin-style"):  # optimisation still needs a painting
        hires.render(content_path, None, size=(160, 108), builtin_style="19")
