"""Settings that change what a render does: each one shown to have its effect."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import hires
from hires.core import io
from hires.core.config import parse_size, print_sizes
from hires.engine.nets import random_network
from hires.core.progress import Step

from conftest import FAST


def features(image, layer="relu1_1"):
    net = random_network(0)
    with torch.no_grad():
        f = net(torch.from_numpy(image).permute(2, 0, 1)[None].contiguous(), [layer])[layer]
    return f[0].reshape(f.shape[1], -1)


def test_second_pass_refines_every_tile_again_on_a_shifted_grid(content_path, style_path):
    kw = dict(size="192x128", tile_size=64, **{**FAST, "iterations": (4, 3)})
    steps_one, steps_two = [], []
    one = hires.render(content_path, style_path, progress=steps_one.append, **kw)
    two = hires.render(content_path, style_path, second_pass=True, progress=steps_two.append, **kw)
    lp = two.plan.levels[-1]
    assert len(lp.passes) == 2 and len(one.plan.levels[-1].passes) == 1
    assert {t.core for t in lp.passes[0]} != {t.core for t in lp.passes[1]}

    def evals(steps):
        return sum(1 for e in steps if isinstance(e, Step) and e.level == lp.level.index)
    iters = lp.level.iterations
    assert evals(steps_one) == iters * len(lp.passes[0]) > 0
    assert evals(steps_two) == iters * (len(lp.passes[0]) + len(lp.passes[1]))
    assert two.plan.levels[-1].flop > 1.8 * one.plan.levels[-1].flop
    assert np.abs(two.image - one.image).mean() > 1e-3


def test_mean_weight_pulls_feature_means_to_the_style(content_path, style_path):
    kw = dict(FAST, size="96x64", init="noise", iterations=(20,))
    style = io.load_image(style_path, long_side=96)
    target = features(style).mean(1)
    dist = {}
    for w in (0.0, 20.0):
        img = hires.render(content_path, style_path, mean_weight=w, **kw).image
        dist[w] = float(((features(img).mean(1) - target) ** 2).sum())
    assert dist[20.0] < 0.8 * dist[0.0], dist


def test_tv_weight_smooths(content_path, style_path):
    kw = dict(size="96x64", **{**FAST, "iterations": (15,)})

    def tv(img):
        return np.abs(np.diff(img, axis=0)).mean() + np.abs(np.diff(img, axis=1)).mean()
    plain = hires.render(content_path, style_path, **kw).image
    smooth = hires.render(content_path, style_path, tv_weight=50.0, **kw).image
    assert tv(smooth) < 0.8 * tv(plain)


def test_max_pooling_is_used(content_path, style_path):
    net = random_network(0, pooling="max")
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in net.features)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in random_network(0).features)
    kw = dict(size="96x64", **FAST)
    a = hires.render(content_path, style_path, pooling="max", **kw).image
    b = hires.render(content_path, style_path, **kw).image
    assert a.shape == b.shape and np.abs(a - b).mean() > 1e-3


@pytest.mark.parametrize("name,size", [("a4", (3508, 2480)), ("A3", (4961, 3508)), ("print-38x51", (6000, 4500)),
                                       ("texture-8k", (8192, 8192))])
def test_named_print_sizes(name, size):
    assert parse_size(name) == size
    assert name.lower() in print_sizes()


def test_named_size_in_a_plan(content_path, style_path, capsys):
    from hires.commands import cli
    assert cli.main(["plan", "render", str(content_path), "--style", str(style_path), "--size", "a4", "--json",
                     "--no-calibrate"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["width"], plan["height"]) == (3508, 2480)


def test_old_spellings_are_accepted_everywhere(tmp_path):
    from hires.core.config import Settings
    from hires.core.presets import load_toml
    assert Settings().replace(match_colours=False).match_colors is False
    toml = tmp_path / "s.toml"
    toml.write_text("match_colours = false\n")
    assert load_toml(toml).match_colors is False


def test_render_help_groups_its_options_with_meaningful_metavars():
    import contextlib
    import dataclasses
    import io

    from hires.commands.cli import build_parser
    from hires.core.config import Settings
    from hires.core.flags import GROUPS
    from hires.core.presets import preset_names
    assert sorted(n for names in GROUPS.values() for n in names) == sorted(f.name for f in dataclasses.fields(Settings))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        build_parser().parse_args(["render", "--help"])
    helptext = out.getvalue()
    for group in ("output:", "style:", "schedule:", "memory and tiles:", "production:", "presets:"):
        assert group in helptext
    assert "--base-size PX" in helptext and "--memory SIZE" in helptext and "BASE_SIZE" not in helptext
    assert all(name in helptext for name in preset_names())  # the --preset help lists every preset


def test_init_auto_is_accepted_as_its_new_name():
    from hires.core.config import Settings
    assert Settings(init="auto").init == "fast" == Settings().init


def test_the_api_takes_preset_and_config_as_the_command_line_does(tmp_path, monkeypatch):
    """`--preset` and `--config` from Python: the preset's settings and size, then the file, then
    keywords (before: "unknown setting 'preset'")."""
    from hires.core import presets
    from hires.rendering import pipeline
    seen = {}
    monkeypatch.setattr(pipeline, "run", lambda job, settings, progress, options: seen.update(job=job, s=settings))
    config = tmp_path / "c.toml"
    config.write_text("seed = 7\nstyle_weight = 2.0\n")
    table = presets.preset_table("texture-8k-seamless")
    example = Path(__file__).resolve().parents[1] / "hires" / "data" / "stone_bricks_ambientcg_bricks102.jpg"
    hires.texture(example, preset="texture-8k-seamless", config=config, style_weight=3.0)
    want = presets.load_preset("texture-8k-seamless")
    assert seen["s"] == want.replace(seed=7, style_weight=3.0)
    assert f"{seen['job'].width}x{seen['job'].height}" == table["size"]
    with pytest.raises(hires.HiresError, match="preset"):
        hires.texture(example, preset="no-such-preset")
