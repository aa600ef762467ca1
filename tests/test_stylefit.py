"""Fitted styles: ``hires style fit`` lowers the loss, resumes, and writes a ``.hstyle`` that every
style option reads exactly, or refuses in one line."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import pyvips
import torch

import hires
import hires.commands.cli
import hires.fit.stylefit
from hires.engine import magenta
from hires.fast import hstyle, stylecode
from hires.core.errors import InputError
from hires.fit.fitjob import FitRequest, fit_style
from hires.fit.fitoptions import FitOptions
from hires.fit.stylefit import split

import crafted
from conftest import data
from helpers import listing, measured_cli, one_line, peak_growth, refuses, run_cli

TINY = FitOptions(size=96, crop=64, batch=1, lr=0.05, max_steps=4)


@pytest.fixture
def photos(tmp_path, content_path, texture_path):
    """Three training photos and one held out (every 4th by name)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for k, src in enumerate([content_path, texture_path, content_path, texture_path]):
        (folder / f"p{k}{src.suffix}").write_bytes(src.read_bytes())
    (folder / "notes.txt").write_text("not a photo: passed over")
    return folder


def guess_style(style_path) -> hstyle.FittedStyle:
    """A fitted style whose numbers are the predictor's own for ``style_path``."""
    with torch.no_grad():
        norms = magenta.networks()[1].style_params(stylecode.style_bottleneck([(style_path, 1.0)]))
    arrays = tuple((g.reshape(-1).numpy().copy(), b.reshape(-1).numpy().copy()) for g, b in norms)
    painting = hstyle.Painting("starry.jpg", "0" * 64, 1.0, hires.fit.stylefit.embed(style_path))
    return hstyle.FittedStyle(arrays, (painting,), {"fitted": "norms"})


def test_a_fit_lowers_the_held_out_loss_and_resumes_where_it_stopped(tmp_path, style_path, photos):
    whole = fit_style(FitRequest([style_path], tmp_path / "whole.hstyle", photos, TINY))
    assert whole.steps == 4 and whole.ratio < 0.95, (whole.guess, whole.fitted)
    back = hstyle.load(whole.path)
    assert back.info["heldout"]["style_fit"] == pytest.approx(whole.fitted["style"])
    assert back.info["fit"]["photos"] == 3 and back.info["fit"]["held_out"] == 1
    assert len(back.paintings) == 1 and back.paintings[0].name == style_path.name

    def stop_at_2(event):
        if getattr(event, "iteration", 0) == 2:
            raise KeyboardInterrupt
    out = tmp_path / "cut.hstyle"
    with pytest.raises(KeyboardInterrupt):
        fit_style(FitRequest([style_path], out, photos, TINY), stop_at_2)
    assert not out.exists() and (tmp_path / ".cut.hstyle.hires-work" / "fit-state.npz").is_file()
    resumed = fit_style(FitRequest([style_path], out, photos, TINY))
    assert resumed.resumed_at == 2 and resumed.steps == 4
    for (g1, b1), (g2, b2) in zip(back.norms, hstyle.load(out).norms):
        assert np.array_equal(g1, g2) and np.array_equal(b1, b2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.hstyle", "photos", "whole.hstyle"]  # no work folder


def test_a_fitted_style_renders_with_its_own_numbers_after_a_reload(tmp_path, content_path, style_path):
    """A file holding the predictor's numbers renders exactly as the painting does; other numbers
    in the file render otherwise: the file's numbers are what the network takes."""
    path = hstyle.save(guess_style(style_path), tmp_path / "guess.hstyle")
    kw = dict(method="fast", size="160x120", fast_size=0)
    by_painting = hires.render(content_path, style_path, **kw).image
    by_file = hires.render(content_path, str(path), **kw).image
    assert np.array_equal(by_painting, by_file)
    g = guess_style(style_path)
    shifted = hstyle.FittedStyle(tuple((a * 1.5, b) for a, b in g.norms), g.paintings, g.info)
    other = hires.render(content_path, str(hstyle.save(shifted, tmp_path / "other.hstyle")), **kw).image
    assert np.abs(other - by_file).mean() > 0.01


def test_the_optimised_method_takes_its_targets_from_the_embedded_painting(tmp_path, content_path, style_path):
    path = hstyle.save(guess_style(style_path), tmp_path / "guess.hstyle")
    kw = dict(size="96x64", base_size=48, iterations=(4, 2), memory="4GiB")
    by_painting = hires.render(content_path, style_path, **kw).image
    by_file = hires.render(content_path, str(path), **kw).image
    # the same start and the painting re-encoded at 1280 px: near, not equal
    assert np.abs(by_painting - by_file).mean() < 0.02
    assert hires.render(content_path, [str(path), style_path], **kw).image.shape == by_file.shape


def _future(m):
    header = json.loads(bytes(m["header"]).decode())
    m["header"] = np.frombuffer(json.dumps({**header, "version": hstyle.VERSION + 1}).encode(), np.uint8)
    return crafted.with_checksum(m)


BAD_FILES = {
    "truncated": (lambda data, m: data[: len(data) // 2], "cut short"),
    "edited bytes": (lambda data, m: data.replace(m["gamma_00"].tobytes()[:8], m["gamma_00"].tobytes()[:8][::-1], 1),
                     "damaged"),
    "edited values": (lambda data, m: crafted.npz({**m, "gamma_00": m["gamma_00"] * 1.01}), "checksum"),
    "future": (lambda data, m: _future(m), "newer hires"),
    "not finite": (lambda data, m: crafted.with_checksum({**m, "beta_03": np.full_like(m["beta_03"], np.nan)}),
                   "not finite"),
    "wrong shape": (lambda data, m: crafted.with_checksum({**m, "gamma_01": m["gamma_01"][:-1]}), "'gamma_01'"),
    "text": (lambda data, m: b"painting = 'starry.jpg'\n", "not a hires fitted style"),
    # a crafted file's painting larger than hires embeds (a decoder's memory the budget never saw)
    "huge painting": (lambda data, m: crafted.with_checksum({**m, "painting_0": np.frombuffer(
        pyvips.Image.black(20000, 8).jpegsave_buffer(), np.uint8)}), "20000x8 px"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_fitted_style_is_refused_in_one_line(tmp_path, capfd, content_path, style_path, kind):
    good = guess_style(style_path)
    make, match = BAD_FILES[kind]
    bad = tmp_path / "bad.hstyle"
    bad.write_bytes(make(hstyle.to_bytes(good), crafted.members(good)))
    refuses(tmp_path, capfd, ["render", content_path, "--style", bad, "--method", "fast", "-o", tmp_path / "o.png"],
            match)
    refuses(tmp_path, capfd, ["style", "show", bad], match)


@pytest.fixture(scope="module")
def crafted_files(tmp_path_factory):
    """Every crafted file of tests/crafted.py, written once: name -> (path, what its refusal says)."""
    style = data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg")
    folder = tmp_path_factory.mktemp("crafted")
    good = crafted.members(guess_style(style))
    out = {}
    for k, (name, (make, match)) in enumerate(crafted.CRAFTED.items()):
        path = folder / f"crafted{k}.hstyle"
        path.write_bytes(make(dict(good)))
        out[name] = (path, match)
    return out


@pytest.mark.parametrize("kind", list(crafted.CRAFTED))
def test_a_crafted_fitted_style_is_refused_in_one_line(tmp_path, capfd, content_path, crafted_files, kind):
    path, match = crafted_files[kind]
    refuses(tmp_path, capfd, ["render", content_path, "--style", path, "--method", "fast", "-o", tmp_path / "o.png"],
            match)
    line = refuses(tmp_path, capfd, ["style", "show", path], match)
    assert "\x1b" not in line and all(c.isprintable() for c in line)    # (a name's escapes never reach the terminal)


def test_crafted_fitted_styles_are_refused_inside_the_memory_budget(tmp_path, content_path, crafted_files):
    """Render, batch and ``style show`` in one fresh process over every crafted file: each refused
    in one line (exit 2), the process's peak resident memory under the 1 GiB budget given (a zip
    bomb's member inflating to 768 MiB took the reader to 6.4 GiB before its members were checked
    before they were inflated)."""
    budget = 1 << 30
    runs = []
    for k, (kind, (path, match)) in enumerate(crafted_files.items()):
        jobs = tmp_path / f"jobs{k}.toml"
        jobs.write_text(f'[[job]]\ncontent = "{content_path}"\nstyle = ["{path}"]\nmethod = "fast"\n'
                        f'output = "{tmp_path / f"out{k}.png"}"\nmemory = "1GiB"\n')
        runs += [(kind, match, ["render", "-q", str(content_path), "--style", str(path), "--method", "fast",
                                "--memory", "1GiB", "-o", str(tmp_path / "o.png")]),
                 (kind, match, ["batch", "-q", str(jobs)]),
                 (kind, match, ["style", "show", str(path)])]
    said = measured_cli([args for _, _, args in runs])
    for (kind, match, args), r in zip(runs, said["results"]):
        line = one_line(r["code"], r["err"])
        assert match in line, (kind, args[0], line)
    assert said["peak_rss_bytes"] < budget, f"peak {said['peak_rss_bytes'] / 2**30:.2f} GiB"
    assert not list(tmp_path.glob("*.png"))


def test_style_show_prints_what_the_file_holds(tmp_path, capfd, style_path):
    path = hstyle.save(guess_style(style_path), tmp_path / "g.hstyle")
    capfd.readouterr()
    assert hires.commands.cli.main(["style", "show", str(path)]) == 0
    out = capfd.readouterr().out
    assert "starry.jpg" in out and "fitted: norms (694 numbers over 13 norms)" in out


@pytest.mark.parametrize("args, match", [
    (["missing.jpg"], "does not exist"),
    (["{notes}"], "is not a JPEG, PNG, TIFF, WebP image"),
    (["{style}", "--photos", "{empty}"], "holds 0 image(s)"),
    (["{style}", "--photos", "{one}"], "at least 2"),
    (["{style}", "--minutes", "0"], "--minutes"),
    (["{style}", "--minutes", "soon"], "--minutes"),
    (["{style}", "-o", "{there}"], "exists"),
    (["{style}", "-o", "{png}"], "not a .hstyle name"),
    (["{hstyle}"], "is a fitted style"),
])
def test_bad_fit_input_is_refused_in_one_line(tmp_path, capfd, style_path, content_path, args, match):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("no image")
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.png").write_bytes(content_path.read_bytes())
    (tmp_path / "there.hstyle").write_text("the user's own file")
    (tmp_path / "notes.jpg").write_text("a text file with a painting's name")
    hstyle.save(guess_style(style_path), tmp_path / "g.hstyle")
    names = dict(style=style_path, empty=tmp_path / "empty", one=tmp_path / "one", there=tmp_path / "there.hstyle",
                 png=tmp_path / "x.png", hstyle=tmp_path / "g.hstyle", notes=tmp_path / "notes.jpg")
    args = [a.format(**names) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "new.hstyle")]
    before = listing(tmp_path)
    line = one_line(*run_cli(["style", "fit", "-q", *args], capfd))
    assert match in line, line
    assert listing(tmp_path) == before


def test_a_fit_holds_its_budget_beside_a_huge_sparse_photo(tmp_path, style_path, photos):
    """A photo whose file is 2.7 GB (a small TIFF followed by a sparse hole) among the photos: the
    fit hashes every file as a stream and decodes each shrunk, so it stays under ``--memory 1GiB``
    (it peaked at 2.9 GiB when each photo was read whole to hash it)."""
    big = photos / "p9.tif"
    pyvips.Image.new_from_file(str(photos / "p0.png")).tiffsave(str(big))
    os.truncate(big, 2_700_000_000)
    out = tmp_path / "fit.hstyle"
    said = measured_cli([["style", "fit", "-q", str(style_path), "--photos", str(photos), "--memory", "1GiB",
                          "--minutes", "0.02", "--size", "96", "--crop", "64", "-o", str(out)]])
    assert said["results"][0]["code"] == 0, said["results"][0]["err"]
    assert said["peak_rss_bytes"] < 1 << 30, f"peak {said['peak_rss_bytes'] / 2**30:.2f} GiB"
    assert hstyle.load(out).info["fit"]["photos"] == 4


def test_a_fits_key_hashes_its_photos_as_streams_quick(tmp_path, style_path, photos):
    """The quick twin of the test above: the fit's key (every input's SHA-256) over a 1 GB sparse
    photo raises this process's peak memory by far less than the file (read whole to hash it, the
    defect, it rose by the file's size)."""
    from hires.fit.stylefit import Inputs, fit_key
    big = photos / "p9.tif"
    pyvips.Image.new_from_file(str(photos / "p0.png")).tiffsave(str(big))
    os.truncate(big, 1_000_000_000)
    inputs = Inputs([(style_path, 1.0)], [photos / "p0.png", big], [photos / "p1.jpg"])
    assert peak_growth(lambda: fit_key(inputs, TINY)) < 100 << 20


def test_the_bundled_photos_are_enough_to_fit_from_a_fresh_install():
    from hires.fit.stylefit import DEFAULT_PHOTOS
    fit_on, held = split(list(DEFAULT_PHOTOS))
    assert len(fit_on) >= 3 and len(held) == 1 and all(p.is_file() for p in DEFAULT_PHOTOS)


def test_a_texture_refuses_a_fitted_style_as_its_example(tmp_path, style_path):
    path = hstyle.save(guess_style(style_path), tmp_path / "g.hstyle")
    with pytest.raises(hires.core.errors.OptionError, match="fitted style"):
        hires.texture(str(path), size="64x64")
    with pytest.raises(InputError, match="not a hires fitted style"):
        hstyle.load(Path(__file__))
