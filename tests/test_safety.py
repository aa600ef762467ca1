"""Regression tests of the issue-7 review: no path loses a user's file, crashes on a GPU machine,
or ends in a traceback.  Each test failed on the code before its fix."""
import os
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
import pyvips
import torch

import hires
from hires.commands import cli
from hires.core import io, output
from hires.rendering import pipeline
from hires.core.config import Settings, parse_memory
from hires.engine.engine import Engine, RefineJob
from hires.core.errors import OptionError, OutputError
from hires.engine.nets import random_network
from hires.engine.stats import make_target

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(size="128x96", base_size=64, iterations=(5, 3), style_layers=("relu1_1", "relu2_1"),
            content_layer="relu2_1", memory="8GiB", init="content")


def cli_exit(args, capfd):
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    return code, capfd.readouterr().err


class Crash(Exception):
    """Stands for a kill or a power cut in the middle of a render."""


def crash_at(monkeypatch, where: str):
    """Make the next render fail at level 1's refinement or in the final write."""
    if where == "level1":
        real = pipeline.refine_pass

        def refine(self, canvas, content, targets, level, *a, **kw):
            if level.index == 1:
                raise Crash
            return real(self, canvas, content, targets, level, *a, **kw)
        monkeypatch.setattr(pipeline, "refine_pass", refine)
    else:
        def save(*a, **kw):
            raise Crash
        monkeypatch.setattr(output, "save_image", save)


# ---------------------------------------------------------------- 1. the work folder

def test_user_files_in_work_dir_survive_render_resume_and_failure(tmp_path, content_path, style_path, monkeypatch):
    work = tmp_path / "mywork"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    (work / "level0.f32").write_bytes(b"also mine")  # named like a checkpoint, still not hires'
    kw = dict(TINY, work_dir=str(work))
    with monkeypatch.context() as m:
        crash_at(m, "level1")
        with pytest.raises(Crash):  # a failed render
            hires.render(content_path, style_path, tmp_path / "r.png", **kw)
    own = work / "r.hires-work"
    assert (own / "level0.f32").exists() and (own / "HIRES-WORK-FOLDER").exists()
    hires.render(content_path, style_path, tmp_path / "r.png", **kw)  # a resume that succeeds
    hires.render(content_path, style_path, tmp_path / "s.png", **kw)  # a plain render
    assert sorted(p.name for p in work.iterdir()) == ["level0.f32", "notes.txt"]
    assert (work / "notes.txt").read_text() == "mine" and (work / "level0.f32").read_bytes() == b"also mine"


def test_a_folder_hires_did_not_make_is_never_used(tmp_path, content_path, style_path):
    work = tmp_path / "w"
    (work / "r.hires-work").mkdir(parents=True)  # same name as hires would use, but no marker
    (work / "r.hires-work" / "state.json").write_text("{}")
    with pytest.raises(OutputError, match="not made by hires"):
        hires.render(content_path, style_path, tmp_path / "r.png", work_dir=str(work), **TINY)
    assert (work / "r.hires-work" / "state.json").read_text() == "{}"


def test_user_file_inside_the_work_folder_keeps_the_folder(tmp_path, content_path, style_path, monkeypatch):
    with monkeypatch.context() as m:
        crash_at(m, "level1")
        with pytest.raises(Crash):
            hires.render(content_path, style_path, tmp_path / "r.png", **TINY)
    own = tmp_path / ".r.hires-work"
    (own / "keep.txt").write_text("x")
    hires.render(content_path, style_path, tmp_path / "r.png", **TINY)
    assert sorted(p.name for p in own.iterdir()) == ["keep.txt"]


def test_existing_output_is_not_overwritten_without_asking(tmp_path, content_path, style_path, capfd):
    out = tmp_path / "o.png"
    out.write_bytes(b"a user's file")
    with pytest.raises(OutputError, match="--overwrite"):
        hires.render(content_path, style_path, out, **TINY)
    assert out.read_bytes() == b"a user's file"
    hires.render(content_path, style_path, out, overwrite=True, **TINY)
    assert pyvips.Image.new_from_file(str(out)).width == 128


# ---------------------------------------------------------------- 2. the device

def test_targets_and_loss_tensors_live_on_the_engine_device():
    """Built for a non-CPU device, every tensor a tile's loss touches is on that device ('meta'
    stands for CUDA here: any tensor left on the CPU shows up as a CPU buffer)."""
    from hires.engine.pyramid import Level
    from hires.engine.stats import Stats
    from hires.engine.tiles import grid
    engine = Engine(Settings(network="random", mean_weight=1.0, tv_weight=0.1))
    engine.device = torch.device("meta")
    engine.net.to(engine.device)
    rng = np.random.default_rng(0)
    level = Level(0, 64, 64, 1, ("relu1_1", "relu2_1"), "relu2_1")
    glob, targets = {}, {}
    for name, c in (("relu1_1", 64), ("relu2_1", 128)):
        f = rng.random((100, c))
        glob[name] = Stats(f.T @ f, f.sum(0), 100.0)
        targets[name] = make_target(f.T @ f / 100, f.mean(0), engine.device)
        assert targets[name].gram.device.type == "meta"
    content = rng.random((64, 64, 3), dtype=np.float32)
    tile = grid(64, 64, 32, 4, 16)[0]
    objective = engine.objective(tile, RefineJob(level, glob, targets, (64, 64), 4), content)
    tensors = list(objective.buffers())
    assert len(tensors) >= 10
    assert {t.device.type for t in tensors} == {"meta"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tiled_render_on_cuda(content_path, style_path):
    res = hires.render(content_path, style_path, device="cuda", tile_size=64, **TINY)
    assert res.image.shape == (96, 128, 3)


# ---------------------------------------------------------------- 3. resume, every level, every colour option

# every pair of options meets in some case (6 cases, not the 12 of every combination)
@pytest.mark.parametrize("canvas,colour,init", [("ram", "none", "content"), ("disk", "none", "auto"),
                                                ("disk", "luminance", "content"), ("ram", "luminance", "auto"),
                                                ("ram", "histogram", "content"), ("disk", "histogram", "auto")])
def test_resume_from_every_level_equals_an_uninterrupted_render(tmp_path, content_path, style_path, monkeypatch,
                                                                 colour, canvas, init):
    # init fast with the fast network at 64 px: level 0 is its stylisation, level 1 refines it
    kw = dict(TINY, preserve_color=colour, canvas=canvas, tile_size=64, bit_depth=16, init=init, fast_size=64)
    clean = tmp_path / "clean.tif"
    hires.render(content_path, style_path, clean, **kw)
    want = io.load_image(clean)
    for where in ("level1", "final write"):
        out = tmp_path / f"{where.replace(' ', '-')}.tif"
        with monkeypatch.context() as m:
            crash_at(m, where)
            with pytest.raises(Crash):
                hires.render(content_path, style_path, out, **kw)
        notes = []
        hires.render(content_path, style_path, out, progress=notes.append, **kw)
        resumed_from = 0 if where == "level1" else 1
        assert any(f"resuming after level {resumed_from}" in getattr(n, "text", "") for n in notes)
        np.testing.assert_allclose(io.load_image(out), want, atol=1.5 / 65535)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.tif", "final-write.tif", "level1.tif"]


# ---------------------------------------------------------------- 4. layer names

def test_conv_layers_are_the_convolutions_own_output():
    net = random_network(0)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        f = net(x, ["conv1_1", "relu1_1", "conv2_2", "relu2_2"])
    assert (f["conv1_1"] < 0).any() and (f["conv2_2"] < 0).any()
    torch.testing.assert_close(f["relu1_1"], torch.relu(f["conv1_1"]))
    torch.testing.assert_close(f["relu2_2"], torch.relu(f["conv2_2"]))


# ---------------------------------------------------------------- 5. thin and tiny images

def test_thin_style_image_is_one_line_naming_it(tmp_path, content_path, capfd):
    thin = tmp_path / "tall_thin.jpg"
    pyvips.Image.black(2000, 60).draw_rect(200, 100, 0, 50, 60, fill=True).cast("uchar").jpegsave(str(thin))
    code, err = cli_exit(["render", content_path, "--style", thin, "--size", "640x480", "-o", tmp_path / "o.png"],
                         capfd)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "tall_thin.jpg" in err and "mb13" in err and re.search(r"\d+x\d+ px at level 0", err)
    assert "--style-scale" in err and not (tmp_path / "o.png").exists()


def test_tiny_texture_example_is_one_line(tmp_path, capfd):
    tiny = tmp_path / "tiny.png"
    pyvips.Image.black(20, 20).cast("uchar").pngsave(str(tiny))
    code, err = cli_exit(["texture", tiny, "--size", "256x256", "-o", tmp_path / "t.png"], capfd)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "tiny.png" in err and "2x2" in err, err


def test_output_too_small_for_the_network_is_one_line(tmp_path, content_path, style_path, capfd):
    code, err = cli_exit(["render", content_path, "--style", style_path, "--size", "600x20",
                          "-o", tmp_path / "o.png"], capfd)
    assert code == 2 and "--size" in err and "2x2" in err, err


# ---------------------------------------------------------------- 6. memory units

@pytest.mark.parametrize("text,value", [
    ("1500", 1500), ("2KB", 2000), ("2kB", 2000), ("2KiB", 2048), ("2k", 2048),
    ("3MB", 3 * 10**6), ("3MiB", 3 * 2**20), ("3M", 3 * 2**20), ("3m", 3 * 2**20),
    ("4GB", 4 * 10**9), ("4GiB", 4 * 2**30), ("4G", 4 * 2**30), ("4g", 4 * 2**30), ("1.5GiB", 3 * 2**29),
    ("1TB", 10**12), ("1TiB", 2**40), ("1T", 2**40)])
def test_memory_units(text, value):
    assert parse_memory(text) == value


# ---------------------------------------------------------------- 7. scratch files known by record, not by name

def test_output_folder_named_like_scratch_keeps_its_checkpoint(tmp_path, content_path, style_path, monkeypatch):
    folder = tmp_path / "hires-prints"
    folder.mkdir()
    out = folder / "r.png"
    for _ in range(2):  # crash in level 1 twice: the second run resumes, and must not lose level 0
        with monkeypatch.context() as m:
            crash_at(m, "level1")
            with pytest.raises(Crash):
                hires.render(content_path, style_path, out, **TINY)
        assert (folder / ".r.hires-work" / "level0.f32").exists()
    notes = []
    hires.render(content_path, style_path, out, progress=notes.append, **TINY)
    assert any("resuming after level 0" in getattr(n, "text", "") for n in notes)


# ---------------------------------------------------------------- 8. one coercion path

def test_toml_values_are_coerced_by_field_type(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('base_size = "512"\niterations = "40,10"\ntv_weight = 1\nsecond_pass = true\nmemory = 2000000000\n')
    args = cli.build_parser().parse_args(["render", "c.png", "--style", "s.png", "--config", str(cfg),
                                          "--base-size", "300"])
    s = cli.settings_from_args(args)
    assert (s.base_size, s.iterations, s.tv_weight, s.second_pass) == (300, (40, 10), 1.0, True)
    assert parse_memory(s.memory) == 2 * 10**9


@pytest.mark.parametrize("line,needles", [
    ('base_size = "big"', ["base_size", "'big'", "whole number"]),
    ("base_size = [1, 2]", ["base_size", "whole number"]),
    ('second_pass = "true"', ["second_pass", "'true'", "true or false"]),  # a real boolean only
    ('optimizer = "sgd"', ["optimizer", "lbfgs, adam"]),
    ("colour = 1", ["unknown setting 'colour'", "preserve_color"]),
    ("quality = 500", ["quality", "between 1 and 100"]),
    ("style_layers = ['relu9_9']", ["style_layers", "layer names"])])
def test_bad_toml_is_one_line_naming_file_key_and_allowed_values(tmp_path, content_path, style_path, capfd,
                                                                  line, needles):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(line + "\n")
    code, err = cli_exit(["render", content_path, "--style", style_path, "--preset", cfg, "-o",
                          tmp_path / "o.png"], capfd)
    assert code == 2 and len(err.strip().splitlines()) == 1 and str(cfg) in err, err
    for needle in needles:
        assert needle in err


def test_python_api_goes_through_the_same_coercion(content_path, style_path):
    s = Settings(base_size="64", iterations=[3], dpi="150")
    assert (s.base_size, s.iterations, s.dpi) == (64, (3,), 150.0)
    with pytest.raises(OptionError, match="base_size: 'x' is not a whole number"):
        hires.render(content_path, style_path, size="64x48", base_size="x")
    with pytest.raises(OptionError, match="unknown setting 'iteration'"):
        hires.render(content_path, style_path, size="64x48", iteration=3)
    with pytest.raises(OptionError, match="overlap"):
        Settings(overlap=-1)


# ---------------------------------------------------------------- 9. a failed rename

def test_failed_rename_is_one_line_and_leaves_nothing(tmp_path, content_path, style_path, capfd, monkeypatch):
    def refusing(real):
        def refuse(src, dst, **kw):  # only publishing the output fails (a read-only target, say)
            if str(dst).endswith("o.png"):
                raise PermissionError(13, "Permission denied")
            return real(src, dst, **kw)
        return refuse
    monkeypatch.setattr(os, "replace", refusing(os.replace))
    monkeypatch.setattr(os, "link", refusing(os.link))
    code, err = cli_exit(["render", content_path, "--style", style_path, "--size", "64x48",
                          "--base-size", "64", "--iterations", "2", "--quiet", "-o", tmp_path / "o.png"], capfd)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Permission denied" in err, err
    # the checkpoint stays for a rerun; no output and no partial file
    assert [p.name for p in tmp_path.iterdir()] == [".o.hires-work"]


# ---------------------------------------------------------------- 10. declared dependencies are used

def test_every_declared_dependency_is_imported():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.match(r"[A-Za-z0-9_-]+", d).group(0).lower() for d in deps}
    source = "\n".join(p.read_text() for folder in ("hires", "kernels") for p in (ROOT / folder).rglob("*.py"))
    for name in names:
        assert re.search(rf"^\s*(import|from) {name}\b", source, re.M), f"{name} is declared but never imported"
