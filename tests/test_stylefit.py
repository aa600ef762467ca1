"""Fitted styles: ``hires style fit`` lowers the loss, resumes, and writes a ``.hstyle`` that every
style option reads exactly, or refuses in one line."""
import io as bytes_io
import json
from pathlib import Path

import numpy as np
import pytest
import pyvips
import torch

import hires
import hires.cli
import hires.stylefit
from hires import hstyle, magenta, stylecode
from hires.errors import InputError
from hires.fitjob import FitRequest, fit_style
from hires.fitoptions import FitOptions
from hires.stylefit import split

from helpers import listing, one_line, refuses, run_cli

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
    painting = hstyle.Painting("starry.jpg", "0" * 64, 1.0, hires.stylefit.embed(style_path))
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


def _members(style: hstyle.FittedStyle) -> dict:
    with np.load(bytes_io.BytesIO(hstyle.to_bytes(style)), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _saved(members: dict) -> bytes:
    buf = bytes_io.BytesIO()
    np.savez(buf, **members)
    return buf.getvalue()


def _with_checksum(members: dict) -> bytes:
    """``members`` with a checksum made for them: past the checksum, to the checks behind it."""
    members = {k: v for k, v in members.items() if k != "checksum"}
    return _saved({**members, "checksum": np.frombuffer(hstyle._checksum(members).encode(), np.uint8)})


def _future(m):
    header = json.loads(bytes(m["header"]).decode())
    m["header"] = np.frombuffer(json.dumps({**header, "version": hstyle.VERSION + 1}).encode(), np.uint8)
    return _with_checksum(m)


BAD_FILES = {
    "truncated": (lambda data, m: data[: len(data) // 2], "cut short"),
    "edited bytes": (lambda data, m: data.replace(m["gamma_00"].tobytes()[:8], m["gamma_00"].tobytes()[:8][::-1], 1),
                     "damaged"),
    "edited values": (lambda data, m: _saved({**m, "gamma_00": m["gamma_00"] * 1.01}), "checksum"),
    "future": (lambda data, m: _future(m), "newer hires"),
    "not finite": (lambda data, m: _with_checksum({**m, "beta_03": np.full_like(m["beta_03"], np.nan)}),
                   "not finite"),
    "wrong shape": (lambda data, m: _with_checksum({**m, "gamma_01": m["gamma_01"][:-1]}), "norm 1"),
    "text": (lambda data, m: b"painting = 'starry.jpg'\n", "not a hires fitted style"),
    # a crafted file's painting larger than hires embeds (a decoder's memory the budget never saw)
    "huge painting": (lambda data, m: _with_checksum({**m, "painting_0": np.frombuffer(
        pyvips.Image.black(20000, 8).jpegsave_buffer(), np.uint8)}), "20000x8 px"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_fitted_style_is_refused_in_one_line(tmp_path, capfd, content_path, style_path, kind):
    good = guess_style(style_path)
    make, match = BAD_FILES[kind]
    bad = tmp_path / "bad.hstyle"
    bad.write_bytes(make(hstyle.to_bytes(good), _members(good)))
    refuses(tmp_path, capfd, ["render", content_path, "--style", bad, "--method", "fast", "-o", tmp_path / "o.png"],
            match)
    refuses(tmp_path, capfd, ["style", "show", bad], match)


def test_style_show_prints_what_the_file_holds(tmp_path, capfd, style_path):
    path = hstyle.save(guess_style(style_path), tmp_path / "g.hstyle")
    capfd.readouterr()
    assert hires.cli.main(["style", "show", str(path)]) == 0
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


def test_the_bundled_photos_are_enough_to_fit_from_a_fresh_install():
    from hires.stylefit import DEFAULT_PHOTOS
    fit_on, held = split(list(DEFAULT_PHOTOS))
    assert len(fit_on) >= 3 and len(held) == 1 and all(p.is_file() for p in DEFAULT_PHOTOS)


def test_a_texture_refuses_a_fitted_style_as_its_example(tmp_path, style_path):
    path = hstyle.save(guess_style(style_path), tmp_path / "g.hstyle")
    with pytest.raises(hires.errors.OptionError, match="fitted style"):
        hires.texture(str(path), size="64x64")
    with pytest.raises(InputError, match="not a hires fitted style"):
        hstyle.load(Path(__file__))
