"""Production use: resume inside a level after SIGKILL, batch files, JSON progress,
snapshots, print sizes, presets, pyramid TIFF, the work folder's lock."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

import hires
import pytest
import pyvips

from hires.engine.workfolder import WorkFolder
from hires.core.config import parse_size
from hires.core.presets import presets
from hires.core.errors import OutputError

from conftest import data
from helpers import batch_file, peak_growth

# a small tiled render: 2 tiles at the base level, 6 at the next, shallow layers so it is quick
RENDER = ["--size", "192x128", "--base-size", "96", "--tile-size", "64", "--iterations", "4,3",
          "--style-layers", "relu1_1,relu2_1,relu3_1", "--content-layer", "relu3_1", "--init", "content",
          "--memory", "4GiB", "--json-progress", "--overwrite"]


def _cmd(out: Path, *extra) -> list[str]:
    content = data("contents/chelsea.png", "chelsea.png")
    style = data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg")
    return [sys.executable, "-m", "hires.commands.cli", "render", str(content), "-s", str(style), "-o", str(out),
            *RENDER, *extra]


def _events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _run(cmd, kill_when=None) -> tuple[int, list[dict]]:
    """Run ``cmd`` reading its JSON progress; SIGKILL it as soon as ``kill_when(event)`` holds."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    events = []
    for line in iter(proc.stderr.readline, ""):
        ev = json.loads(line)  # every line is JSON
        events.append(ev)
        if kill_when is not None and kill_when(ev):
            proc.send_signal(signal.SIGKILL)
            break
    proc.stderr.close()
    return proc.wait(), events


def _read(path: Path) -> np.ndarray:
    im = pyvips.Image.new_from_file(str(path))
    return np.ndarray(buffer=im.write_to_memory(), dtype=np.uint8, shape=(im.height, im.width, im.bands))


def _tiles(events, kind) -> set:
    return {(e["level"], e["pass_index"], e["tile"]) for e in events if e["event"] == kind}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted render with snapshots, and its events."""
    folder = tmp_path_factory.mktemp("reference")
    out = folder / "ref.png"
    code, events = _run(_cmd(out, "--snapshots", str(folder / "snaps"), "--snapshot-every", "2"))
    assert code == 0, events[-1]
    return out, events, folder


def test_json_progress_and_snapshots(reference):
    out, events, folder = reference
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "done" and kinds[0] != "done"
    for k in ("plan", "level_start", "tile_start", "tile_end", "iteration", "snapshot", "write"):
        assert k in kinds, k
    assert all("elapsed_s" in e and "eta_s" in e for e in events)
    assert events[-1]["output"] == str(out)
    snaps = sorted((folder / "snaps").iterdir())
    levels = {e["level"] for e in events if e["event"] == "level_start"}
    for level in levels:  # at least one per level, each a valid image no larger than asked
        mine = [p for p in snaps if f"-L{level:02d}-" in p.name]
        assert mine, level
        for p in mine:
            im = pyvips.Image.new_from_file(str(p))
            assert max(im.width, im.height) <= 1024 and im.avg() > 0
    # named so they sort in the order they were written
    written = [Path(e["path"]).name for e in events if e["event"] == "snapshot"]
    assert written == sorted(written) == [p.name for p in snaps]
    # the work folder is gone after success
    assert not (out.parent / f".{out.stem}.hires-work").exists()


@pytest.mark.parametrize("point", ["base level", "tiled level", "final write"])
def test_sigkill_then_rerun_equals_uninterrupted(reference, tmp_path, point):
    ref_out, _, _ = reference
    out = tmp_path / "out.png"
    when = {
        # level 0 has two tiles: killed in the second one's optimisation
        "base level": lambda e: e["event"] == "iteration" and e["level"] == 0 and e["tile"] == 2,
        "tiled level": lambda e: e["event"] == "tile_end" and e["level"] == 1 and e["tile"] == 3,
        "final write": lambda e: e["event"] == "write",
    }[point]
    code, first = _run(_cmd(out), kill_when=when)
    assert code == -signal.SIGKILL
    work = tmp_path / ".out.hires-work"
    assert work.is_dir()  # the checkpoints survive the kill
    code, second = _run(_cmd(out))
    assert code == 0 and second[-1]["event"] == "done"
    diff = np.abs(_read(out).astype(int) - _read(ref_out).astype(int)).max()
    assert diff <= 1, f"resumed render differs from the uninterrupted one by {diff}/255"
    finished = _tiles(first, "tile_end")
    assert finished and not finished & _tiles(second, "tile_start"), "a finished tile was refined again"
    if point != "final write":
        restored = [e for e in second if e["event"] == "tiles_restored"]
        assert restored and restored[0]["tiles"][0] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no partial output, no work folder


def _nan_tile(path: Path) -> None:
    with np.load(path) as z:
        parts = {k: z[k] for k in z.files}
    parts["canvas"][0, 0, 0] = np.nan
    with open(path, "wb") as fh:
        np.savez(fh, **parts)


@pytest.mark.parametrize("damage", ["garbage", "nan"])
def test_a_damaged_tile_checkpoint_is_rendered_again(reference, tmp_path, damage):
    """A kept work folder whose saved tile is garbage, or holds a NaN: one line says so, that tile
    and those after it are refined again, and the render equals an uninterrupted one (it stopped
    on a BadZipFile traceback, or on a NaN loss blamed on the user's settings, on every rerun)."""
    ref_out, _, _ = reference
    out = tmp_path / "out.png"
    code, first = _run(_cmd(out), kill_when=lambda e: e["event"] == "tile_end" and e["level"] == 1 and e["tile"] == 3)
    assert code == -signal.SIGKILL
    first_tile = next(e["tile"] for e in first if e["event"] == "tile_end" and e["level"] == 1)  # (1-based)
    victim = tmp_path / ".out.hires-work" / f"tile-L1-P0-T{first_tile - 1:05d}.npz"
    if damage == "garbage":
        victim.write_bytes(b"not a checkpoint" * 64)
    else:
        _nan_tile(victim)
    code, second = _run(_cmd(out))
    assert code == 0 and second[-1]["event"] == "done", second[-1]
    said = [e["text"] for e in second if e["event"] == "note" and "was damaged" in e["text"]]
    assert said == [f"tile {first_tile} of level 1 was damaged in the work folder; it is rendered again"], said
    assert first_tile in {e["tile"] for e in second if e["event"] == "tile_start" and e["level"] == 1}
    assert np.abs(_read(out).astype(int) - _read(ref_out).astype(int)).max() <= 1


def test_changed_settings_start_fresh_and_fresh_flag(tmp_path):
    out = tmp_path / "out.png"
    in_level_1 = lambda e: e["event"] == "tile_end" and e["level"] == 1  # noqa: E731
    code, first = _run(_cmd(out), kill_when=in_level_1)
    assert code == -signal.SIGKILL
    # another render: its state is not resumed (killed in its turn, leaving its own state)
    code, second = _run(_cmd(out, "--seed", "7"), kill_when=in_level_1)
    assert code == -signal.SIGKILL
    assert not [e for e in second if e["event"] == "tiles_restored"]
    assert any(e["event"] == "note" and "starting fresh" in e["text"] for e in second)
    code, third = _run(_cmd(out, "--seed", "7", "--fresh", "--keep-work"))
    assert code == 0 and not [e for e in third if e["event"] == "tiles_restored"]
    assert (tmp_path / ".out.hires-work").is_dir()  # --keep-work


def test_work_folder_lock(tmp_path):
    work = WorkFolder.open(tmp_path / "w.hires-work")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (work.path / "lock").write_text(f"{other.pid}\n")
        with pytest.raises(OutputError, match=f"pid {other.pid}"):
            work.lock()
    finally:
        other.kill()
        other.wait()
    work.lock()  # the owner is gone: its lock is taken over
    assert (work.path / "lock").read_text().strip() == str(os.getpid())
    work.unlock()
    assert not (work.path / "lock").exists()


def test_json_progress_reports_an_error_as_json(tmp_path):
    code, events = _run(_cmd(tmp_path / "out.png", "--bit-depth", "16", "-o", str(tmp_path / "out.jpg")))
    assert code != 0 and events[-1]["event"] == "error" and "8 bits" in events[-1]["message"]
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- batch

def test_batch_runs_the_rest_reports_and_skips_on_rerun(tmp_path):
    jobs = batch_file(tmp_path)
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "hires.commands.cli", "batch", str(jobs), "--report", str(report), "--quiet"]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 1
    assert "broken" in first.stderr and "truncated.png" in first.stderr
    r = json.loads(report.read_text())
    by_name = {j["name"]: j for j in r["jobs"]}
    assert [j["name"] for j in r["jobs"]] == ["first", "broken", "third"]
    assert (r["done"], r["failed"], r["skipped"]) == (2, 1, 0)
    for name, ext in (("first", "png"), ("third", "jpg")):
        j = by_name[name]
        assert j["status"] == "done" and j["peak_rss_bytes"] > 0 and j["wall_s"] > 0
        assert j["output"] == str(tmp_path / "out" / f"{name}.{ext}")
        im = pyvips.Image.new_from_file(j["output"])
        assert (im.width, im.height) == (160, 120)
    assert by_name["broken"]["status"] == "failed" and not (tmp_path / "out" / "broken.png").exists()
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    second = subprocess.run(cmd, capture_output=True, text=True)
    assert second.returncode == 1
    r2 = json.loads(report.read_text())
    assert [j["status"] for j in r2["jobs"]] == ["skipped", "failed", "skipped"]
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()} == mtimes


def test_batch_changed_job_is_not_skipped_and_never_overwrites(tmp_path):
    jobs = batch_file(tmp_path)
    cmd = [sys.executable, "-m", "hires.commands.cli", "batch", str(jobs), "--quiet"]
    subprocess.run(cmd, capture_output=True, text=True)
    jobs.write_text(jobs.read_text().replace("strength = 0.5", "strength = 0.25"))
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert "third" in res.stderr and "exists" in res.stderr  # changed: not skipped, and not replaced


def test_readme_batch_example_loads(tmp_path):
    """The job file of docs/production.md: every key known, every input found and decodable."""
    import re

    from hires.rendering.batch import BatchJob, fingerprint, load_jobs
    readme = (Path(__file__).resolve().parents[1] / "docs" / "production.md").read_text()
    block = re.search(r"```toml\n# jobs.toml\n(.*?)```", readme, re.S).group(1)
    (tmp_path / "hires").symlink_to(Path(__file__).resolve().parents[1] / "hires")
    (tmp_path / "jobs.toml").write_text(block)
    jobs = load_jobs(tmp_path / "jobs.toml")
    assert len(jobs) == 3 and all(isinstance(j, BatchJob) for j in jobs), jobs
    assert [j.texture for j in jobs] == [False, False, True]
    assert all(fingerprint(j) for j in jobs)
    assert parse_size(jobs[1].size, dpi=jobs[1].settings.dpi) == (874, 620)  # 148x105 mm at 150 dpi


# ---------------------------------------------------------------- sizes, presets, TIFF

def test_print_size_pixels_and_physical_size_in_the_tiff(tmp_path):
    assert parse_size("30x40cm") == (3543, 4724)   # 30 cm at 300 dpi = 3543.3 px, rounded to nearest
    assert parse_size("12x16in", dpi=300) == (3600, 4800)
    assert parse_size("210x297mm", dpi=150) == (1240, 1754)
    out = tmp_path / "print.tif"
    content = data("contents/chelsea.png", "chelsea.png")
    style = data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg")
    res = subprocess.run([sys.executable, "-m", "hires.commands.cli", "render", str(content), "-s", str(style),
                          "--print-size", "30x40cm", "--method", "fast", "--fast-size", "128", "--no-multiscale", "--quiet",
                          "-o", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    im = pyvips.Image.new_from_file(str(out))
    assert (im.width, im.height) == (3543, 4724)
    half_px_mm = 25.4 / 300 / 2
    assert abs(im.width / im.xres - 300.0) <= half_px_mm and abs(im.height / im.yres - 400.0) <= half_px_mm
    assert im.get("resolution-unit") == "in"


def test_every_preset_plans(tmp_path):
    from hires.commands.cli import main
    content = data("contents/chelsea.png", "chelsea.png")
    style = data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg")
    names = presets()
    assert {"print-6000x4500", "print-a3-300dpi", "display-533x400", "texture-8k-seamless"} <= set(names)
    for name, table in names.items():
        kind = "texture" if name.startswith("texture") else "render"
        args = ["plan", kind, str(content if kind == "render" else style), "--preset", name, "--no-calibrate",
                "--json"]
        if kind == "render":
            args += ["-s", str(style)]
        assert main(args) == 0, name


def test_presets_command_lists_them(capsys):
    from hires.commands.cli import main
    assert main(["presets"]) == 0
    text = capsys.readouterr().out
    assert "print-a3-300dpi [4961x3508]" in text and "texture-8k-seamless" in text


def test_pyramid_tiff(tmp_path):
    from hires.core.output import save_image
    img = np.random.default_rng(0).random((600, 800, 3), dtype=np.float32)
    save_image(img, tmp_path / "p.tif", pyramid=True)
    save_image(img, tmp_path / "flat.tif")
    assert pyvips.Image.new_from_file(str(tmp_path / "p.tif")).get("n-pages") >= 3
    assert pyvips.Image.new_from_file(str(tmp_path / "flat.tif")).get("n-pages") == 1
    from hires.core.errors import OptionError
    with pytest.raises(OptionError, match="pyramid"):
        save_image(img, tmp_path / "p.png", pyramid=True)


def test_seamless_size_that_cannot_wrap_is_one_line_with_a_size_that_can(tmp_path, capfd):
    """A seamless size whose levels are not multiples of their deepest stride is refused
    before any work, exit 2, naming a size that works (and that size plans)."""
    import re

    from hires.commands.cli import main
    example = data("textures/stone_bricks_ambientcg_bricks102.jpg", "stone_bricks_ambientcg_bricks102.jpg")
    code = main(["texture", str(example), "--size", "1000x1000", "--seamless", "-o", str(tmp_path / "t.png")])
    err = capfd.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot wrap" in err, err
    assert not list(tmp_path.iterdir())
    suggested = re.search(r"use (\d+x\d+)", err).group(1)
    assert main(["plan", "texture", str(example), "--size", suggested, "--seamless", "--no-calibrate"]) == 0
    # the same size without --seamless needs no wrap and is fine
    assert main(["plan", "texture", str(example), "--size", "1000x1000", "--no-calibrate"]) == 0


def test_batch_report_never_replaces_a_file_hires_did_not_write(tmp_path):
    jobs = batch_file(tmp_path)
    report = tmp_path / "notes.json"
    report.write_text('{"mine": true}\n')
    res = subprocess.run([sys.executable, "-m", "hires.commands.cli", "batch", str(jobs), "--report", str(report), "--quiet"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "--report" in res.stderr
    assert report.read_text() == '{"mine": true}\n' and not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("damage", ["garbage", "nan", "wrong shape", "object key", "zip bomb"])
def test_restoring_tiles_stops_at_a_damaged_one_and_names_it(tmp_path, damage):
    """The quick twin of the render above: saved tiles restored in order up to a damaged one
    (unreadable, NaN, another shape, a pickled key, a member that inflates to 256 MiB), which is
    reported, and it and those after it removed to be refined again; the bomb is refused by its
    declared size, before it is inflated."""
    from hires.engine.checkpoints import Checkpoints
    from hires.engine.workfolder import WorkFolder
    from hires.engine.tiles import grid
    tiles = grid(96, 64, 32, 8, 8)
    rng = np.random.default_rng(0)
    canvas = rng.random((64, 96, 3), dtype=np.float32)
    wsum = rng.random((64, 96), dtype=np.float32) + 0.5
    work = WorkFolder.open(tmp_path / "w.hires-work")
    saver = Checkpoints(work, "render")
    saver.begin()
    for t in tiles[:4]:
        saver.save_tile(1, 0, t, "stats", canvas, wsum)
    victim = tmp_path / "w.hires-work" / "tile-L1-P0-T00002.npz"
    if damage == "garbage":
        victim.write_bytes(b"PK\x03\x04 not a zip" * 8)
    elif damage == "zip bomb":
        import zipfile
        import io as bytes_io
        key = bytes_io.BytesIO()
        np.save(key, np.array("render:stats"))   # (this pass's: the reader goes on to the canvas)
        with zipfile.ZipFile(victim, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            z.writestr("key.npy", key.getvalue())
            with z.open("canvas.npy", "w", force_zip64=True) as member:
                for _ in range(16):
                    member.write(bytes(16 << 20))
    else:
        with np.load(victim) as z:
            parts = {k: z[k] for k in z.files}
        if damage == "nan":
            parts["wsum"][-1, -1] = np.nan
        elif damage == "wrong shape":
            parts["canvas"] = parts["canvas"][:-1]
        else:
            parts["key"] = np.array([{"render": 1}], dtype=object)
        with open(victim, "wb") as fh:
            np.savez(fh, **parts)
    into, wsum_into = np.zeros_like(canvas), np.zeros_like(wsum)
    got = []
    grew = peak_growth(lambda: got.append(Checkpoints(work, "render").restore_tiles(1, 0, tiles, "stats", into,
                                                                                     wsum_into)))
    restored = got[0]
    assert restored.tiles == [0, 1] and restored.damaged == 2 and grew < 64 << 20
    y0, y1, x0, x1 = tiles[1].blend
    assert np.array_equal(into[y0:y1, x0:x1], canvas[y0:y1, x0:x1])
    assert sorted(p.name for p in (tmp_path / "w.hires-work").glob("tile-*")) == [
        "tile-L1-P0-T00000.npz", "tile-L1-P0-T00001.npz"]
    work.close()


# ---------------------------------------------------------------- quick twins (tests/twins.py)

QUICK = dict(size="192x128", base_size=96, tile_size=64, iterations=(3, 2), style_layers=("relu1_1", "relu2_1"),
             content_layer="relu2_1", init="content", memory="4GiB")


def test_an_interrupted_tiled_level_resumes_from_its_saved_tiles_quick(tmp_path, content_path, style_path):
    """The quick twin of ``test_sigkill_then_rerun_equals_uninterrupted`` (in process, interrupted as
    a tile ends instead of killed): the rerun puts the finished tiles back, refines none of them
    again, and equals the uninterrupted render (pixels written as 8-bit PNG)."""
    from hires.core.progress import TileFinished, TilesRestored, TileStarted
    reference = hires.render(content_path, style_path, tmp_path / "ref.png", **QUICK)
    out = tmp_path / "out.png"
    finished = []

    def stop_after_3(event):
        if isinstance(event, TileFinished) and event.level == 1:
            finished.append(event.tile)
            if len(finished) == 3:
                raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        hires.render(content_path, style_path, out, progress=stop_after_3, **QUICK)
    events = []
    hires.render(content_path, style_path, out, progress=events.append, **QUICK)
    restored = [e for e in events if isinstance(e, TilesRestored)]
    again = {e.tile for e in events if isinstance(e, TileStarted) and e.level == 1}
    assert restored and set(restored[0].tiles) == set(finished) and not again & set(finished), (restored, again)
    assert np.abs(_read(out).astype(int) - _read(tmp_path / "ref.png").astype(int)).max() <= 1
    assert reference.output == tmp_path / "ref.png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "ref.png"]


def test_changed_settings_start_fresh_and_fresh_flag_quick(tmp_path, content_path, style_path):
    """The quick twin of ``test_changed_settings_start_fresh_and_fresh_flag`` (in process, interrupted
    as a tile ends): another seed does not resume the first render's tiles and says it starts fresh;
    ``fresh`` ignores even the render's own state; ``keep_work`` keeps the folder."""
    from hires.core.progress import Note, TileFinished, TilesRestored
    out = tmp_path / "out.png"

    def stop_in_level_1(event):
        if isinstance(event, TileFinished) and event.level == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        hires.render(content_path, style_path, out, progress=stop_in_level_1, **QUICK)
    events = []

    def record_then_stop(event):
        events.append(event)
        stop_in_level_1(event)
    with pytest.raises(KeyboardInterrupt):
        hires.render(content_path, style_path, out, progress=record_then_stop, seed=7, **QUICK)
    assert not [e for e in events if isinstance(e, TilesRestored)]
    assert any(isinstance(e, Note) and "starting fresh" in e.text for e in events)
    events.clear()
    hires.render(content_path, style_path, out, progress=events.append, seed=7, fresh=True, keep_work=True, **QUICK)
    assert not [e for e in events if isinstance(e, TilesRestored)]
    assert out.is_file() and (tmp_path / ".out.hires-work").is_dir()


def test_json_progress_and_snapshots_quick(tmp_path, capfd, content_path, style_path):
    """The quick twin of ``test_json_progress_and_snapshots`` (the command in process, a render of
    two small levels): every stderr line is a JSON event with elapsed and ETA, from the plan to done;
    at least one snapshot per level, each an image no larger than asked, named in the order written;
    the work folder gone after success."""
    from hires.commands import cli
    out, snaps = tmp_path / "q.png", tmp_path / "snaps"
    args = ["render", str(content_path), "-s", str(style_path), "-o", str(out), "--size", "192x128",
            "--base-size", "96", "--tile-size", "64", "--iterations", "3,2", "--style-layers", "relu1_1,relu2_1",
            "--content-layer", "relu2_1", "--init", "content", "--json-progress", "--snapshots", str(snaps),
            "--snapshot-every", "2"]
    capfd.readouterr()
    assert cli.main(args) == 0
    events = _events(capfd.readouterr().err)
    kinds = [e["event"] for e in events]
    assert "plan" in kinds[:3] and kinds[-1] == "done" and events[-1]["output"] == str(out)
    for k in ("level_start", "tile_start", "tile_end", "iteration", "snapshot", "write"):
        assert k in kinds, k
    assert all("elapsed_s" in e and "eta_s" in e for e in events)
    written = [Path(e["path"]).name for e in events if e["event"] == "snapshot"]
    assert written == sorted(written) == sorted(p.name for p in snaps.iterdir())
    for level in {e["level"] for e in events if e["event"] == "level_start"}:
        mine = [p for p in snaps.iterdir() if f"-L{level:02d}-" in p.name]
        assert mine and all(pyvips.Image.new_from_file(str(p)).avg() > 0 for p in mine), level
    assert not (tmp_path / ".q.hires-work").exists()


def _in_process(monkeypatch):
    """Batch jobs run in this process (``run_here``) instead of one spawned process each: the batch's
    own decisions (run the rest after a failure, record, skip, never overwrite) are what is tested."""
    from hires.rendering import batch

    def run_job(job, progress_kind):
        fp, outcome = batch._before_running(job)
        return outcome if outcome is not None else batch._outcome(job, fp, batch.run_here(job, "quiet"))
    monkeypatch.setattr(batch, "run_job", run_job)


def test_batch_runs_the_rest_skips_on_rerun_and_never_overwrites_quick(tmp_path, monkeypatch):
    """The quick twin of the two batch tests above (the jobs in process): the job after a failing one
    runs, a rerun skips the finished jobs without touching their files, and a changed job is not
    skipped and does not replace the output it finds."""
    from hires.rendering.batch import run_batch
    _in_process(monkeypatch)
    jobs = batch_file(tmp_path)
    first = run_batch([jobs], "quiet")
    assert [(o.name, o.status) for o in first.outcomes] == [("first", "done"), ("broken", "failed"), ("third", "done")]
    assert "truncated.png" in first.outcomes[1].error
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    assert sorted(mtimes) == ["first.png", "third.jpg"]
    second = run_batch([jobs], "quiet")
    assert [o.status for o in second.outcomes] == ["skipped", "failed", "skipped"]
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()} == mtimes
    jobs.write_text(jobs.read_text().replace("strength = 0.5", "strength = 0.25"))
    third = run_batch([jobs], "quiet")
    assert [o.status for o in third.outcomes] == ["skipped", "failed", "failed"]
    assert "exists" in third.outcomes[2].error
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()} == mtimes
