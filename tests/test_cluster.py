"""A render's tiles on a Dask cluster, and the colour schedule that makes it exact."""
import os
import threading
import time

import numba
import numpy as np
import pytest
import torch

import hires
from hires.engine.colouring import check_colours, colour_groups, conflict
from hires.engine.tiles import grid

RENDER = dict(size="192x128", base_size=96, iterations=(6, 4), style_layers=("relu1_1", "relu2_1"),
              content_layer="relu2_1", memory="8GiB", tile_size=64, init="content")
TEXTURE = dict(size="192x192", base_size=96, iterations=(6, 4), style_layers=("relu1_1", "relu2_1"),
               memory="8GiB", tile_size=64, seamless=True, example_scale=0.25)


# ------------------------------------------------------------------ the colour schedule

@pytest.mark.parametrize("width,tile,margin,seamless", [
    (1024, 256, 48, False),   # ordinary grid: 2x2 colours
    (1024, 256, 48, True),    # wrapped, even count
    (768, 256, 48, True),     # wrapped, odd count: the last tile touches the first
    (1280, 256, 48, True),    # wrapped, 5 tiles
    (1024, 64, 96, False),    # tiles smaller than their context
    (1024, 64, 96, True),
])
def test_colours_never_share_pixels(width, tile, margin, seamless):
    tiles = grid(width, width, tile, 4, margin, seamless)
    colours = colour_groups(tiles, width, width)
    assert sorted(t.index for g in colours for t in g) == list(range(len(tiles)))
    for g in colours:  # independently of check_colours: no region meets another's blend area
        for a in g:
            for b in g:
                if a is not b:
                    assert not conflict(a, b, width, width)
    # and every tile meets some tile of another colour: the colours are not trivially one each
    if len(tiles) > 4 and margin < tile:
        assert len(colours) == 4 or (seamless and (width // tile) % 2)
    if not seamless and margin < tile:
        n = width // tile   # (row mod 2, column mod 2)
        index = {t.index: k for k, g in enumerate(colours) for t in g}
        assert all(index[r * n + c] == 2 * (r % 2) + c % 2 for r in range(n) for c in range(n))


def test_conflicts_wrap_around_a_seamless_canvas():
    tiles = grid(768, 768, 256, 4, 48, True)
    first, last_in_row = tiles[0], tiles[2]
    assert conflict(first, last_in_row, 768, 768)         # neighbours across the wrapped edge
    plain = grid(768, 768, 256, 4, 48, False)
    assert not conflict(plain[0], plain[2], 768, 768)


def test_a_grouping_with_a_conflict_is_refused():
    tiles = grid(512, 512, 256, 4, 48, False)
    with pytest.raises(RuntimeError, match="share pixels"):
        check_colours([tiles[:2], tiles[2:]], 512, 512)


# ------------------------------------------------------------------ on a cluster

distributed = pytest.importorskip("distributed")
# Dask's comms may leave a socket to the garbage collector when a worker dies
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       resources={"cores": 1})
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture
def one_thread():
    """The in-process side with one torch and one numba thread, like each worker."""
    t, n = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    yield
    torch.set_num_threads(t)
    numba.set_num_threads(n)


def test_cluster_render_equals_the_in_process_render(client, one_thread, content_path, style_path, texture_path):
    events = []
    here = hires.render(content_path, style_path, **RENDER)
    there = hires.render(content_path, style_path, scheduler=client, progress=events.append, **RENDER)
    assert len(there.plan.levels[-1].tiles) >= 6
    np.testing.assert_array_equal(there.image, here.image)
    assert any("worker(s)" in getattr(e, "text", "") for e in events)
    # every pass's log entry is written, the statistics passes' too (benchmarks/distributed.py
    # reads their time and bytes moved)
    stats = [e for e in there.cluster if e["kind"] == "stats"]
    assert stats and all(e["bytes_sent"] > 0 and e["wall_s"] > 0 for e in stats)
    here = hires.texture(texture_path, **TEXTURE)
    there = hires.texture(texture_path, scheduler=client, **TEXTURE)
    np.testing.assert_array_equal(there.image, here.image)


class KillOnce(distributed.WorkerPlugin):
    """Kills its worker (os._exit) a tenth of a second into the first tile refinement it sees, once
    over the whole cluster (a marker file says whether it has happened)."""

    def __init__(self, marker: str):
        self.marker = marker

    def transition(self, key, start, finish, **kw):
        name = key if isinstance(key, str) else str(key)
        if finish == "executing" and name.startswith("refine-tile") and os.path.exists(self.marker):
            try:
                os.unlink(self.marker)
            except FileNotFoundError:
                return
            threading.Thread(target=lambda: (time.sleep(0.1), os._exit(1)), daemon=True).start()


def test_a_worker_killed_mid_tile_does_not_change_the_render(client, tmp_path, content_path, style_path):
    clean = hires.render(content_path, style_path, scheduler=client, **RENDER).image
    marker = tmp_path / "kill"
    marker.touch()
    client.register_plugin(KillOnce(str(marker)), name="kill-once")
    try:
        killed = hires.render(content_path, style_path, scheduler=client, **RENDER).image
    finally:
        client.unregister_worker_plugin("kill-once")
    assert not marker.exists()   # a worker did die in the middle of a tile
    np.testing.assert_array_equal(killed, clean)


def test_batch_on_a_cluster_reports_like_the_local_batch(tmp_path):
    """`hires batch --scheduler local:2`: every job one task; the same report, in job order, the
    same record (a rerun, here in process, skips what the cluster made)."""
    import json
    import subprocess
    import sys

    import pyvips

    from helpers import batch_file
    jobs = batch_file(tmp_path)
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "hires.commands.cli", "batch", str(jobs), "--report", str(report), "--quiet"]
    first = subprocess.run(cmd + ["--scheduler", "local:2"], capture_output=True, text=True)
    assert first.returncode == 1, first.stderr[-2000:]
    r = json.loads(report.read_text())
    assert [(j["name"], j["status"]) for j in r["jobs"]] == [("first", "done"), ("broken", "failed"), ("third", "done")]
    for j in r["jobs"][::2]:
        assert j["peak_rss_bytes"] > 0 and pyvips.Image.new_from_file(j["output"]).width == 160
    second = subprocess.run(cmd, capture_output=True, text=True)
    assert second.returncode == 1
    assert [j["status"] for j in json.loads(report.read_text())["jobs"]] == ["skipped", "failed", "skipped"]


def test_a_render_through_a_dask_client_equals_the_in_process_render_quick(one_thread, content_path, style_path):
    """The quick twin of ``test_cluster_render_equals_the_in_process_render``: the same tasks, the
    same colouring and the same driver, through a Dask client whose one worker thread lives in this
    process (it starts in a second; a cluster of processes in several)."""
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
        there = hires.render(content_path, style_path, scheduler=c, **RENDER)
    here = hires.render(content_path, style_path, **RENDER)
    assert len(there.plan.levels[-1].tiles) >= 6
    np.testing.assert_array_equal(there.image, here.image)
