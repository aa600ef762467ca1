"""The hostile passes: inputs built here, at test time, as a careless user or an attacker
would make them (broken and bomb images, crafted weights, work state and job files, files that
appear at the output while a render runs, a full disk).  Each case checks the exit code, one line
on stderr with no traceback, and that no file was created or lost; where a budget is given, the
peak memory of the process.  Every test failed on the code before its fix."""
from __future__ import annotations

import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import pyvips
import torch

import hires
from hires.commands import cli
from hires.core import io, output
from hires.engine import losses, nets
from hires.rendering import pipeline
from hires.core.errors import InputError, NumericalError, OutputError, WeightsError
from hires.core.safefiles import file_sha256

from conftest import data
from helpers import listing, one_line, peak_growth, refuses, run_cli

TINY = dict(size="128x96", base_size=64, iterations=(3, 2), style_layers=("relu1_1", "relu2_1"),
            content_layer="relu2_1", memory="8GiB", init="content")
TINY_FLAGS = ["-q", "--size", "128x96", "--base-size", "64", "--iterations", "3,2", "--style-layers", "relu1_1,relu2_1",
              "--content-layer", "relu2_1", "--init", "content"]


def content():
    return data("contents/chelsea.png", "chelsea.png")


def style():
    return data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg")


# ---------------------------------------------------------------- inputs built at test time

def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def header_only_png(path: Path, width: int, height: int, interlaced: bool) -> Path:
    """A 16-bit RGB PNG header claiming ``width`` x ``height`` with a few bytes of image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, int(interlaced))
    body = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def bomb_png(path: Path, side: int) -> Path:
    """A real 16-bit RGB PNG of ``side`` px squared that compresses to almost nothing."""
    im = pyvips.Image.black(side, side, bands=3).cast("ushort").copy(interpretation="rgb16")
    im = im + [0, 20000, 40000]
    im.cast("ushort").copy(interpretation="rgb16").pngsave(str(path), compression=9, filter="none")
    return path


def peak_rss_of(args, cwd: Path) -> tuple[int, str, int]:
    """Run ``hires args`` in a fresh process: (exit code, stderr, its peak RSS in bytes)."""
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stderr=subprocess.PIPE, "
             "text=True); print(r.returncode); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
             "sys.stderr.write(r.stderr)")
    r = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "hires.commands.cli", *map(str, args)],
                       cwd=cwd, capture_output=True, text=True, timeout=600)
    code, rss = r.stdout.split()
    return int(code), r.stderr, int(rss) * 1024


# ---------------------------------------------------------------- images

def test_a_16_bit_bomb_is_read_shrunk_inside_the_budget(tmp_path):
    """A 12000 px 16-bit PNG (1 MB, 864 MB decoded) as content of a 96x64 fast render at
    --memory 1GiB: read as a stream and shrunk as it is read, the process stays in its budget
    (before: the whole image was decoded)."""
    bomb = bomb_png(tmp_path / "bomb.png", 12000)
    out = tmp_path / "o.png"
    code, err, rss = peak_rss_of(["render", bomb, "-s", style(), "--method", "fast", "--size", "96x64",
                                  "--memory", "1GiB", "-o", out, "-q"], tmp_path)
    assert code == 0, err
    assert rss < 2**30, f"peak RSS {rss / 2**30:.2f} GiB over the 1 GiB budget"
    assert pyvips.Image.new_from_file(str(out)).width == 96


def test_a_16_bit_bomb_is_read_shrunk_inside_the_budget_quick(tmp_path):
    """The quick twin of the test above (in process, a 6000 px bomb: 216 MB decoded): read at a
    render's 96x64 it raises this process's peak by far less than its decoded size (decoded whole,
    the defect, it rose by about that)."""
    bomb = bomb_png(tmp_path / "bomb.png", 6000)
    got = []
    assert peak_growth(lambda: got.append(io.load_image(bomb, size=(96, 64), what="content"))) < 64 << 20
    assert got[0].shape == (64, 96, 3)


@pytest.mark.parametrize("interlaced", [True, False])
def test_a_header_only_bomb_is_one_line(tmp_path, capfd, interlaced):
    """A PNG claiming 100000x100000 px: interlaced (decoded whole) it is refused before
    decoding, naming its size; streamed, its missing data is a one-line error."""
    bomb = header_only_png(tmp_path / "bomb.png", 100000, 100000, interlaced)
    line = refuses(tmp_path, capfd, ["render", bomb, "-s", style(), "--method", "fast", "--memory", "2GiB",
                                     "-o", tmp_path / "o.png"], "bomb.png")
    assert ("100000x100000" in line) == interlaced, line


def test_a_truncated_jpeg_is_one_line(tmp_path, capfd):
    jpg = tmp_path / "cut.jpg"
    pyvips.Image.new_from_file(str(content())).jpegsave(str(jpg))
    jpg.write_bytes(jpg.read_bytes()[:2000])
    refuses(tmp_path, capfd, ["render", jpg, "-s", style(), "--method", "fast", "-o", tmp_path / "o.png"],
            "cut.jpg")


@pytest.mark.parametrize("kind", ["svg", "csv", "vips"])
def test_only_the_readme_formats_are_read(tmp_path, capfd, kind):
    """An SVG whose <image> pulls in a file beside it, a CSV, libvips' own format: refused
    before any pixel is read, in one line naming the formats hires reads."""
    secret = tmp_path / "secret.png"
    pyvips.Image.new_from_file(str(content())).pngsave(str(secret))
    path = tmp_path / f"input.{kind}"
    if kind == "svg":
        path.write_text('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
                        'width="96" height="64"><image xlink:href="secret.png" width="96" height="64"/></svg>')
    elif kind == "csv":
        path.write_text("\n".join(" ".join(str(v) for v in range(64)) for _ in range(48)))
    else:
        pyvips.Image.new_from_file(str(content())).write_to_file(str(path))
    refuses(tmp_path, capfd, ["render", path, "-s", style(), "--method", "fast", "--size", "96x64",
                              "-o", tmp_path / "o.png"], "is not a JPEG, PNG, TIFF, WebP image")
    with pytest.raises(InputError):
        io.load_image(path, long_side=32)


def linear_to_srgb(x):
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


@pytest.mark.parametrize("case", ["rgb", "gray", "alpha", "icc"])
def test_float_tiffs_are_read_as_linear_light(tmp_path, case):
    """Float (scRGB) TIFFs, grey or RGB, with alpha or an embedded profile: read as linear
    light, 0..1 from black to white, to sRGB (before: black, white or flat)."""
    ramp = np.linspace(0.02, 0.98, 64, dtype=np.float32)
    rgb = np.stack([np.tile(ramp, (16, 1)), np.tile(ramp[::-1], (16, 1)), np.full((16, 64), 0.3, np.float32)], -1)
    arr = {"rgb": rgb, "icc": rgb, "gray": rgb[..., :1],
           "alpha": np.concatenate([rgb, np.ones((16, 64, 1), np.float32)], -1)}[case]
    path = tmp_path / "f.tif"
    im = pyvips.Image.new_from_array(np.ascontiguousarray(arr))
    im = im.copy(interpretation="scrgb" if arr.shape[2] >= 3 else "b-w")
    im.tiffsave(str(path), **({"profile": "srgb"} if case == "icc" else {}))
    got = io.load_image(path)
    want = linear_to_srgb(np.repeat(arr[..., :1], 3, -1) if case == "gray" else arr[..., :3])
    assert np.abs(got - want).max() < 2 / 255


def test_a_float_image_of_other_bands_is_one_line(tmp_path):
    path = tmp_path / "two.tif"
    pyvips.Image.new_from_array(np.zeros((8, 8, 5), np.float32)).copy(interpretation="multiband").tiffsave(str(path))
    with pytest.raises(InputError, match="floating-point image with 5 band"):
        io.load_image(path, long_side=8)


# ---------------------------------------------------------------- the output is never lost

def _appear_during(monkeypatch, path: Path, make):
    """Make ``make(path)`` happen while the next render runs (after its checks, before its write)."""
    real = output.save_image

    def save(*a, **kw):
        make(path)
        return real(*a, **kw)
    monkeypatch.setattr(output, "save_image", save)


@pytest.mark.parametrize("method", ["optimise", "fast"])
def test_a_file_that_appears_at_the_output_during_a_render_survives(tmp_path, capfd, monkeypatch, method):
    """A file created at the output path while a render runs is left byte for byte;
    the render exits in one line, non-zero, and keeps its work for a rerun with --overwrite."""
    out = tmp_path / "o.png"
    args = ["render", content(), "-s", style(), "-o", out, *TINY_FLAGS, "--method", method]
    with monkeypatch.context() as m:
        _appear_during(m, out, lambda p: p.write_bytes(b"the user's own file"))
        line = one_line(*run_cli(args, capfd))
    assert "appeared" in line and "--overwrite" in line, line
    assert out.read_bytes() == b"the user's own file"
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    if method == "optimise":  # its finished levels are kept: the rerun resumes from them
        assert (tmp_path / ".o.hires-work" / "level1.f32").exists()
    code, err = run_cli(args + ["--overwrite"], capfd)
    assert code == 0, err
    assert out.read_bytes() != b"the user's own file" and pyvips.Image.new_from_file(str(out)).width == 128
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]


def test_a_dangling_symlink_at_the_output_is_a_file_that_exists(tmp_path, capfd, monkeypatch):
    """Refused at the start, and if it appears during the render, never replaced."""
    out = tmp_path / "o.png"
    out.symlink_to(tmp_path / "nowhere.png")
    refuses(tmp_path, capfd, ["render", content(), "-s", style(), "--method", "fast", "--size", "96x64", "-o", out],
            "exists")
    out.unlink()
    with monkeypatch.context() as m:
        _appear_during(m, out, lambda p: p.symlink_to(tmp_path / "nowhere.png"))
        with pytest.raises(OutputError, match="appeared"):
            hires.render(content(), style(), out, size="96x64", method="fast")
    assert out.is_symlink() and os.readlink(out) == str(tmp_path / "nowhere.png")


def test_publish_without_hard_links_still_never_replaces(tmp_path, monkeypatch):
    """On a file system without hard links the name is claimed with an exclusive create."""
    def no_links(*a, **kw):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(os, "link", no_links)
    arr = np.full((8, 8, 3), 0.5, np.float32)
    output.save_image(arr, tmp_path / "a.png")
    assert pyvips.Image.new_from_file(str(tmp_path / "a.png")).avg() > 100
    (tmp_path / "b.png").write_bytes(b"mine")
    real = output.check_output_path
    monkeypatch.setattr(output, "check_output_path", lambda p, overwrite=False: real(p, True))  # (it appeared late)
    with pytest.raises(OutputError, match="appeared"):
        output.save_image(arr, tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_the_work_state_cannot_make_hires_delete_a_file(tmp_path, capfd):
    """A partial_output edited in state.json to name a user's file is
    never removed, even a file of the very name hires gives its temporary outputs: what proves a
    file hires' own is the device and inode recorded when hires created it, which a planted file
    does not have."""
    out = tmp_path / "o.png"
    args = ["render", content(), "-s", style(), "-o", out, *TINY_FLAGS[1:], "--keep-work", "--overwrite"]
    assert run_cli(args, capfd)[0] == 0
    state_path = tmp_path / ".o.hires-work" / "state.json"
    planted = tmp_path / ".o.partial-77-deadbeef.png"  # hires' own pattern, beside the output
    victims = [tmp_path / "precious.txt", tmp_path / ".o.partial-12.png", planted]
    records = [str(v) for v in victims] + [
        {"path": str(planted), "dev": 1, "ino": 2},                                # a made-up proof
        {"path": str(planted), "dev": planted.stat().st_dev if planted.exists() else 0, "ino": 0}]
    for v in victims:
        v.write_text("mine")
    for record in records:
        state = json.loads(state_path.read_text())
        state["partial_output"] = record
        state_path.write_text(json.dumps(state))
        code, err = run_cli(args, capfd)
        assert code == 0 and "left as it is" in " ".join(err.split()), err
        assert all(v.read_text() == "mine" for v in victims), record


@pytest.mark.parametrize("edit", [{"level": 0, "shape": None}, {"level": 0, "shape": [1, 1, 3]}])
def test_a_state_whose_level_has_no_matching_shape_starts_afresh(tmp_path, capfd, edit):
    """An edited state.json naming a level with no shape (or the wrong one) is no checkpoint: the
    rerun starts afresh and succeeds (not a TypeError from deep inside)."""
    out = tmp_path / "o.png"
    args = ["render", content(), "-s", style(), "-o", out, *TINY_FLAGS, "--keep-work", "--overwrite"]
    assert run_cli(args, capfd)[0] == 0
    state_path = tmp_path / ".o.hires-work" / "state.json"
    state_path.write_text(json.dumps({**json.loads(state_path.read_text()), **edit}))
    code, err = run_cli(args, capfd)
    assert code == 0 and "Traceback" not in err, err
    assert pyvips.Image.new_from_file(str(out)).width == 128


def test_fast_method_killed_while_writing_leaves_nothing_after_a_rerun(tmp_path):
    """SIGKILL while --method fast writes its temporary file; the rerun removes it."""
    out = tmp_path / "o.png"
    args = ["render", str(content()), "-s", str(style()), "--method", "fast", "--size", "96x64", "-o", str(out)]
    killer = ("import os, signal, sys, pyvips\n"
              "real = pyvips.Image.pngsave\n"
              "def save(self, path, **kw):\n"
              "    real(self, path, **kw)\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n"
              "pyvips.Image.pngsave = save\n"
              "from hires.commands import cli\n"
              "sys.exit(cli.main(sys.argv[1:]))\n")
    r = subprocess.run([sys.executable, "-c", killer, *args], cwd=tmp_path, capture_output=True, timeout=300)
    assert r.returncode == -signal.SIGKILL
    assert [p for p in tmp_path.iterdir() if ".partial-" in p.name], "the kill left no partial file to clean"
    assert not out.exists()
    r = subprocess.run([sys.executable, "-m", "hires.commands.cli", *args, "-q"], cwd=tmp_path, capture_output=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_a_full_disk_is_said_as_such(full_disk, capfd, ext):
    """Libvips says 'Unknown error -1' or 'unable to write to target'; hires says the
    disk is full, how much the file needed, in one line, and leaves nothing."""
    (full_disk / "filler").write_bytes(b"\0" * (2 * 2**20 - 64 * 1024))
    out = full_disk / f"o.{ext}"
    line = one_line(*run_cli(["render", content(), "-s", style(), "--method", "fast", "--size", "1200x800",
                              "-o", out, "-q"], capfd), 2)
    assert "is full" in line and "MiB" in line, line
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


# ---------------------------------------------------------------- weights

def _state_dict(fill=None, shape_of=None) -> dict:
    state = {}
    for i in nets.CONV_INDICES:
        conv = nets.VGG19Features().features[i]
        state[f"features.{i}.weight"] = torch.zeros(conv.weight.shape)
        state[f"features.{i}.bias"] = torch.zeros(conv.bias.shape)
    if fill is not None:
        state["features.5.weight"][0, 0, 0, 0] = fill
    if shape_of is not None:
        state[shape_of] = torch.zeros(3)
    return state


def test_weights_are_not_verified_by_their_own_name(tmp_path, capsys):
    """A file named with its own hash prefix is reported unverified."""
    tmp = tmp_path / "w.pth"
    torch.save(_state_dict(), tmp)
    evil = tmp_path / f"evil-{file_sha256(tmp)[:8]}.pth"
    tmp.rename(evil)
    assert cli.main(["weights", "status", "--weights", str(evil)]) == 0
    said = capsys.readouterr().out
    assert "unverified" in said and " verified" not in said.replace("unverified", ""), said
    assert nets.check_weights(evil)[1] is False


@pytest.mark.parametrize("case", ["nan", "inf", "shape"])
def test_weights_with_bad_values_are_refused_in_one_line(tmp_path, capfd, case):
    """A state dict with NaN or infinite values, or a wrong shape (before: an all-black
    render, exit 0)."""
    path = tmp_path / "w.pth"
    torch.save(_state_dict(fill=float(case) if case != "shape" else None,
                           shape_of="features.7.bias" if case == "shape" else None), path)
    line = refuses(tmp_path, capfd, ["render", content(), "-s", style(), "--network", "vgg19", "--weights", path,
                                     "-o", tmp_path / "o.png", *TINY_FLAGS], "--weights")
    assert ("NaN or infinite" in line) == (case != "shape"), line


def test_a_crafted_pickle_is_one_line_of_hires_own(tmp_path, capfd):
    """A pickle that would create a file if executed: refused in one line of hires'
    own, without torch's warning or its advice to retry with weights_only=False."""
    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))
    path = tmp_path / "crafted.pth"
    path.write_bytes(pickle.dumps({"features.0.weight": Evil()}))
    line = refuses(tmp_path, capfd, ["render", content(), "-s", style(), "--network", "vgg19", "--weights", path,
                                     "-o", tmp_path / "o.png", *TINY_FLAGS], "not a plain state dict")
    assert "weights_only" not in line
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(WeightsError):
        nets.load_vgg19(path)


# ---------------------------------------------------------------- values out of range

@pytest.mark.parametrize("flags, match", [
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**64)], "--seed"),
    (["--content-weight", "inf"], "--content-weight"),
    (["--style-weight", "1e400"], "--style-weight"),
    (["--builtin-style", "3:nan", "--method", "fast"], "--builtin-style"),
    (["--style-scale", "1e9"], "--style-scale"),
    (["--memory", "1"], "--memory"),
    (["--memory", "1", "--method", "fast"], "--memory"),
    (["--size", "0x0cm", "--method", "fast"], "--size"),
    (["--size", "3x2cm", "--dpi", "0.001", "--method", "fast"], "--dpi"),
    (["--dpi", "1e308"], "--dpi"),
    (["--work-dir", "new/deep"], "--work-dir"),
])
def test_values_out_of_range_are_one_line_before_any_folder(tmp_path, capfd, monkeypatch, flags, match):
    monkeypatch.chdir(tmp_path)
    line = refuses(tmp_path, capfd, ["render", content(), "-s", style(), "-o", tmp_path / "o.png", *flags], match)
    assert "GLib" not in line


@pytest.mark.parametrize("styles", [[":1e999"], [":1e308", ":1e308"]])
def test_style_weights_that_overflow_are_one_line(tmp_path, capfd, styles):
    """-s painting.jpg:1e999, two styles at 1e308 each."""
    args = ["render", content(), "-o", tmp_path / "o.png", *TINY_FLAGS]
    for suffix in styles:
        args += ["-s", f"{style()}{suffix}"]
    refuses(tmp_path, capfd, args, "--style")


def test_a_loss_that_stops_being_finite_stops_the_render(tmp_path, capfd, monkeypatch):
    """If a loss ever becomes non-finite, the render stops in one line naming the level and
    tile and the likely setting, exit non-zero, nothing written."""
    real = losses.TileObjective.__call__
    monkeypatch.setattr(losses.TileObjective, "__call__", lambda self, x: real(self, x) * float("inf"))
    out = tmp_path / "o.png"
    line = refuses(tmp_path, capfd, ["render", content(), "-s", style(), "-o", out, *TINY_FLAGS],
                   "level 1 (64x48), tile 1/1", code=NumericalError.exit_code)
    assert "--style-weight" in line


def test_interrupt_with_json_progress_is_json_only(tmp_path, capfd, monkeypatch):
    """Ctrl-C with --json-progress: every stderr line is JSON, the last an error event."""
    def interrupted(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(pipeline, "refine_pass", interrupted)
    code, err = run_cli(["render", content(), "-s", style(), "-o", tmp_path / "o.png", *TINY_FLAGS[1:],
                         "--json-progress"], capfd)
    assert code == 130
    events = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert events[-1]["event"] == "error" and sum(e["event"] == "error" for e in events) == 1


# ---------------------------------------------------------------- batch job files

def write_job(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "jobs.toml"
    path.write_text(body)
    return path


def job_text(extra: str = "") -> str:
    return (f'[[job]]\nname = "a"\ncontent = "{content()}"\nstyle = "{style()}"\noutput = "o.png"\n'
            f'method = "fast"\nsize = "96x64"\n{extra}\n')


@pytest.mark.parametrize("body, match", [
    ("job = [1, 2]\n", "'job'"),
    ('defaults = "x"\n' + job_text(), "'defaults'"),
])
def test_a_malformed_job_file_is_one_line_naming_the_key(tmp_path, capfd, body, match):
    line = refuses(tmp_path, capfd, ["batch", write_job(tmp_path, body)], match)
    assert "jobs.toml" in line


@pytest.mark.parametrize("extra, key", [
    ('overwrite = "false"', "overwrite"),
    ('fresh = "false"', "fresh"),
    ('snapshot_size = "big"\nsnapshots = "snaps"', "snapshot_size"),
    ("seed = -1", "seed"),
    ("scheduler = 3", "scheduler"),
    ("overwrite = 1", "overwrite"),
    ("bogus = 1", "unknown setting 'bogus'"),
    ('scheduler = "garbage"', "scheduler"),
])
def test_a_batch_job_value_of_the_wrong_kind_fails_before_it_starts(tmp_path, capfd, extra, key):
    """`overwrite = "false"` used to overwrite the user's file (bool("false") is true);
    a bad snapshot_size gave a raw TypeError and an empty snaps/ folder; a non-boolean overwrite: one
    line, exit 2, in the rich mode as in the quiet one (it was a line per job and a table, exit 1)."""
    (tmp_path / "o.png").write_bytes(b"the user's own file")
    jobs = write_job(tmp_path, job_text(extra))
    for quiet in (["-q"], []):
        before = listing(tmp_path)
        line = one_line(*run_cli(["batch", jobs, *quiet], capfd))
        assert f"jobs.toml: a: {key}" in line and "Error" not in line, line
        assert listing(tmp_path) == before


def test_batch_report_path_is_checked_before_the_first_job(tmp_path, capfd):
    """A report into a folder that does not exist: refused before any job runs."""
    jobs = write_job(tmp_path, job_text())
    refuses(tmp_path, capfd, ["batch", jobs, "--report", tmp_path / "nope" / "r.json"], "--report")


def test_a_file_at_the_temporary_name_is_not_hires_to_remove(tmp_path):
    """The temporary output is created exclusively: a file already at its name (whoever put it
    there) makes the write fail in one line and stays."""
    theirs = tmp_path / ".o.partial-1-abcdef12.png"
    theirs.write_bytes(b"not hires'")
    with pytest.raises(OutputError, match="could not write"):
        output.save_image(np.full((8, 8, 3), 0.5, np.float32), tmp_path / "o.png", tmp=theirs)
    assert theirs.read_bytes() == b"not hires'" and not (tmp_path / "o.png").exists()


def test_disk_buffers_with_no_room_are_said_as_such_before_anything_is_written(full_disk):
    """A memmap written on a full disk would die of SIGBUS: the buffer's blocks are allocated when it
    is made, and no room is a one-line error that leaves nothing behind."""
    from hires.core.canvas import Buffers
    from hires.core.errors import OutputError
    buffers = Buffers(full_disk / "level4", True)
    small = buffers.zeros("weights", (256, 256))           # 256 KiB: fits
    assert small.shape == (256, 256) and not small.any()
    with pytest.raises(OutputError, match="no room for a 3 MiB level buffer"):
        buffers.empty("canvas", (512, 512, 3))              # 3 MiB on a 2 MiB file system
    assert [p.name for p in (full_disk / "level4").iterdir()] == ["weights.f32"]
    del small
    buffers.cleanup()
    assert list(full_disk.iterdir()) == []


# ---------------------------------------------------------------- links, FIFOs, job files, arguments

VICTIM = b"the user's own file, not hires'"


def _victims(tmp_path: Path, n: int) -> list[Path]:
    folder = tmp_path / "mine"
    folder.mkdir(exist_ok=True)
    out = []
    for i in range(n):
        v = folder / f"precious{i}.dat"
        v.write_bytes(VICTIM)
        out.append(v)
    return out


def _plant(work: Path, names: list[str], victims: list[Path]) -> None:
    for name, victim in zip(names, victims):
        (work / name).unlink(missing_ok=True)
        (work / name).symlink_to(victim)


PLANTED = {  # every kind of file hires writes in its work folder, at its final and its temporary names
    "state": ["state.json", "state.json.partial"],
    "lock": ["lock", f"lock.{os.getpid()}.partial"],    # (the render runs in this process)
    "level": [f"level{i}.f32{x}" for i in range(2) for x in ("", ".partial")],
    "tile": [f"tile-L1-P0-T{t:05d}.npz{x}" for t in range(8) for x in ("", ".partial")],
}
KEPT_WORK = ["--size", "192x128", "--base-size", "64", "--init", "content", "--iterations", "3,2", "--tile-size",
             "64", "--style-layers", "relu1_1,relu2_1", "--content-layer", "relu2_1", "-q", "--keep-work", "--overwrite"]


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_links_planted_in_a_kept_work_folder_are_never_written_through(tmp_path, capfd, kind):
    """Symbolic links to a user's files planted at the names hires writes in a kept work
    folder (the state, the lock, a level, a tile, each final and temporary): a rerun of another
    render into the same output (so every file is written anew) succeeds and leaves the user's
    files byte for byte (before: the state's, a level's or a tile's bytes went into them)."""
    out = tmp_path / "o.png"
    args = ["render", content(), "-s", style(), "-o", out, *KEPT_WORK]
    assert run_cli(args, capfd)[0] == 0
    work = tmp_path / ".o.hires-work"
    victims = _victims(tmp_path, len(PLANTED[kind]))
    _plant(work, PLANTED[kind], victims)
    code, err = run_cli([*args, "--seed", "3"], capfd)
    assert code == 0, err
    assert all(v.read_bytes() == VICTIM for v in victims)
    assert pyvips.Image.new_from_file(str(out)).width == 192


def test_a_work_folder_that_is_a_link_is_refused_and_what_it_points_to_kept(tmp_path, capfd):
    """`.o.hires-work` a link to another folder that holds a marker and files of hires'
    names: one line, exit 2, and nothing in that folder is touched (before: all deleted)."""
    other = tmp_path / "other"
    other.mkdir()
    for name in ("HIRES-WORK-FOLDER", "state.json", "level0.f32"):
        (other / name).write_bytes(VICTIM)
    (tmp_path / ".o.hires-work").symlink_to(other)
    for method in ("fast", "optimise"):
        line = refuses(tmp_path, capfd, ["render", content(), "-s", style(), "--method", method, "--size", "96x64",
                                         "-o", tmp_path / "o.png"], "symbolic link")
        assert ".o.hires-work" in line
    # refused before any work: not even the plan is printed first
    line = one_line(*run_cli(["render", content(), "-s", style(), "--method", "fast", "--size", "96x64",
                              "-o", tmp_path / "o.png"], capfd))
    assert "symbolic link" in line
    assert sorted(p.name for p in other.iterdir()) == ["HIRES-WORK-FOLDER", "level0.f32", "state.json"]
    assert all(p.read_bytes() == VICTIM for p in other.iterdir())


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="making another user's folder needs root")
def test_a_work_folder_of_another_user_is_refused(tmp_path, capfd):
    work = tmp_path / ".o.hires-work"
    work.mkdir()
    (work / "HIRES-WORK-FOLDER").write_bytes(VICTIM)
    (work / "state.json").write_bytes(VICTIM)
    os.chown(work, 4242, 4242)
    refuses(tmp_path, capfd, ["render", content(), "-s", style(), "--method", "fast", "--size", "96x64",
                              "-o", tmp_path / "o.png"], "not this user's folder")
    assert (work / "state.json").read_bytes() == VICTIM


def _run_with_timeout(args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hires.commands.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("role", ["content", "style", "config", "batch", "weights"])
def test_a_fifo_is_refused_in_one_line_not_waited_on(tmp_path, role):
    """A FIFO given as an input (an image, a TOML file, a job file, weights) is refused
    before any read, in one line (before: hires waited on it forever, silently)."""
    fifo = tmp_path / ("fifo.toml" if role in ("config", "batch") else "fifo.pth" if role == "weights" else "fifo.png")
    os.mkfifo(fifo)
    c, st = (fifo if role == "content" else content()), (fifo if role == "style" else style())
    args = {"batch": ["batch", fifo, "-q"],
            "config": ["render", c, "-s", st, "--config", fifo, "-o", tmp_path / "o.png", "-q"],
            "weights": ["render", c, "-s", st, "--network", "vgg19", "--weights", fifo, "--size", "96x64",
                        "-o", tmp_path / "o.png", "-q"],
            }.get(role, ["render", c, "-s", st, "--method", "fast", "--size", "96x64", "-o", tmp_path / "o.png", "-q"])
    r = _run_with_timeout(args, tmp_path, timeout=60)
    line = one_line(r.returncode, r.stderr)
    assert "fifo" in line and ("FIFO" in line or "regular file" in line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == [fifo.name]


def test_a_bad_last_job_of_a_thousand_stops_the_batch_before_any_runs(tmp_path, capfd):
    """A file of 1,000 jobs whose last has a bad key: one line naming the file, the job and
    the key, exit 2, and not one output made (before: the first jobs rendered)."""
    jobs = "".join(f'[[job]]\nname = "j{i}"\ncontent = "{content()}"\nstyle = "{style()}"\noutput = "o{i}.png"\n'
                   f'method = "fast"\nsize = "64x48"\n' for i in range(1000))
    path = write_job(tmp_path, jobs + "bogus_key = 1\n")
    line = refuses(tmp_path, capfd, ["batch", path], "j999")
    assert "jobs.toml" in line and "bogus_key" in line


@pytest.mark.parametrize("body, match", [
    ('[defaults]\nseed = "x"\n' + "{job}", "seed"),
    ("{job}" + "{job2}", "also the output of"),
    ("{job}" + '[[job]]\nname = "b"\ncontent = "missing.png"\nstyle = "s.jpg"\n', "missing.png"),
])
def test_every_job_is_checked_before_the_first_runs(tmp_path, capfd, body, match):
    """A default of the wrong kind, two jobs writing one output, a job's missing input:
    each one line, exit 2, nothing made."""
    job2 = job_text().replace('name = "a"', 'name = "b"')
    line = refuses(tmp_path, capfd, ["batch", write_job(tmp_path, body.format(job=job_text(), job2=job2))], match)
    assert "jobs.toml" in line


@pytest.mark.parametrize("call, match", [
    (lambda c, s: hires.render(None, s), "content"),
    (lambda c, s: hires.render(123, s), "content"),
    (lambda c, s: hires.render([str(c)], s), "content"),
    (lambda c, s: hires.render(c, 5), "--style"),
    (lambda c, s: hires.render(c, s, 7), "-o"),
    (lambda c, s: hires.render(c, s, progress=5, method="fast", size="64x48"), "progress"),
    (lambda c, s: hires.render(c, s, settings="fast"), "settings"),
    (lambda c, s: hires.texture(s, progress="x"), "progress"),
    (lambda c, s: hires.Settings(bogus=1), "bogus"),
])
def test_the_api_names_a_bad_argument_before_any_work(tmp_path, monkeypatch, call, match):
    """Each wrong kind of argument is a HiresError naming it, raised before a render starts
    (before: TypeErrors from pathlib and dataclasses, a progress callback failing 4.5 s in)."""
    monkeypatch.chdir(tmp_path)
    from hires.rendering import pipeline
    monkeypatch.setattr(pipeline, "run", lambda *a, **k: pytest.fail("a render started"))
    with pytest.raises(hires.HiresError, match=match):
        call(content(), style())


@pytest.mark.parametrize("flags, match", [
    (["--method", "fast", "--scheduler", "garbage"], "--scheduler"),
    (["--method", "fast", "--scheduler", "local:2"], "--scheduler"),
    (["--scheduler", "garbage"], "--scheduler"),
    (["--method", "fast", "-o", ""], "-o"),
    (["--method", "fast", "--snapshots", "snap"], "--snapshots"),
    (["--snapshots", "snap"], "--snapshots"),
])
def test_meaningless_options_are_refused(tmp_path, capfd, monkeypatch, flags, match):
    """A scheduler a fast render cannot use (or that is no scheduler), an empty output name,
    previews into a file or of a fast render: one line each (before: exit 0, no word)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "snap").write_bytes(VICTIM)
    args = ["render", content(), "-s", style(), "--size", "96x64", *flags]
    if "-o" not in flags:
        args += ["-o", tmp_path / "o.png"]
    refuses(tmp_path, capfd, args, match)


def test_weights_fetch_that_cannot_start_is_one_line(tmp_path, capfd):
    """An offline fetch printed a progress bar's line before its error."""
    line = refuses(tmp_path, capfd, ["weights", "fetch", "--dest", tmp_path, "--url",
                                     "http://127.0.0.1:9/vgg19-dcbb9e9d.pth"], "cannot reach")
    assert "vgg19" in line


def test_a_decode_refused_for_the_budget_says_the_rule(tmp_path, capfd):
    """0.72 GiB "more than --memory 1.00 GiB allows" read as a contradiction; the line says
    that one input's decoding may take half the budget."""
    bomb = header_only_png(tmp_path / "bomb.png", 12000, 12000, interlaced=True)
    line = refuses(tmp_path, capfd, ["render", bomb, "-s", style(), "--method", "fast", "--memory", "1GiB",
                                     "-o", tmp_path / "o.png"], "at most half of --memory")
    assert "0.80 GiB at once" in line and "(0.50 of 1.00 GiB)" in line, line


def test_fast_keep_work_keeps_the_work_folder(tmp_path, capfd):
    """--method fast --keep-work kept no work folder, though every method has one."""
    out = tmp_path / "o.png"
    code, err = run_cli(["render", content(), "-s", style(), "--method", "fast", "--size", "96x64", "-o", out,
                         "-q", "--keep-work"], capfd)
    assert code == 0, err
    work = tmp_path / ".o.hires-work"
    assert work.is_dir() and (work / "HIRES-WORK-FOLDER").is_file() and (work / "state.json").is_file()
    code, err = run_cli(["render", content(), "-s", style(), "--method", "fast", "--size", "96x64", "-o", out,
                         "-q", "--overwrite"], capfd)
    assert code == 0 and not work.exists(), err



def test_a_damaged_level_checkpoint_starts_the_render_again(tmp_path, capfd):
    """A kept work folder whose saved level holds a NaN (a disk, a crash, a sync tool): one line says
    so and the render starts from the beginning, giving what an undamaged rerun gives (it resumed
    from the NaN, and wrote it)."""
    out = tmp_path / "o.png"
    args = ["render", content(), "-s", style(), "-o", out, *TINY_FLAGS[1:], "--keep-work", "--overwrite",
            "--json-progress"]
    assert run_cli(args, capfd)[0] == 0
    first = pyvips.Image.new_from_file(str(out)).write_to_memory()
    saved = tmp_path / ".o.hires-work" / "level1.f32"
    level = np.fromfile(saved, np.float32)
    level[len(level) // 2] = np.nan
    level.tofile(saved)
    code, err = run_cli(args, capfd)
    assert code == 0, err
    notes = [json.loads(ln)["text"] for ln in err.splitlines() if '"note"' in ln]
    assert [n for n in notes if "was damaged" in n] == [
        "the saved level 1 in the work folder was damaged; the render starts again from the beginning"], notes
    assert pyvips.Image.new_from_file(str(out)).write_to_memory() == first
