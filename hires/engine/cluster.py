"""A render's tiles on a Dask cluster (the optional extra ``hires[distributed]``).

The driver keeps the canvas and is its only writer.  For each colour of a level's tiles
(``hires.engine.colouring``) it ships every tile's region of the canvas (and of the content) to a worker,
and blends each result as it arrives; the colours run in order.  The statistics pass runs the same
way: workers return each tile's Gram sums, the driver adds them up in tile order.  The pass's
shared inputs (level, whole-image statistics, style targets) travel as the result of a task, not
by ``scatter``: if the worker holding them dies the scheduler recomputes them, where scattered
data would be lost for good.  Tasks are retried, so a worker that dies mid-tile costs that tile.

Workers need hires installed and, with ``--network vgg19``, the weights at the same path.
"""
from __future__ import annotations

import os
import time
import uuid

import numpy as np

from hires.core.coercion import scheduler_spec
from hires.core.errors import OptionError
from hires.core.progress import TileStarted
from hires.engine.tiles import take

RETRIES = 3


def _distributed():
    try:
        import distributed
    except ImportError:
        raise OptionError("--scheduler: needs Dask distributed; install it with "
                          "pip install 'hires[distributed]'") from None
    return distributed


# a Dask worker pauses at 80% of its memory limit and is restarted at 95%: the plan's peak for one
# tile, plus the worker's own ~250 MiB, is put at 70%
DASK_OVERHEAD = 256 * 2**20
PEAK_SHARE = 0.7


def connect(spec: str, tile_bytes: int | None = None):
    """A Dask client: ``local:N`` starts N worker processes on this machine (one thread each, the
    cores shared among them, each with the memory limit that ``tile_bytes``, the plan's need of
    one worker, asks), ``tcp://HOST:PORT`` joins a running scheduler."""
    distributed = _distributed()
    if isinstance(spec, distributed.Client):  # the API may pass a client of its own
        return spec
    scheduler_spec(spec)
    if spec.startswith("local:"):
        n = int(spec.split(":", 1)[1])
        cores = max(1, (os.cpu_count() or 1) // n)
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                           memory_limit=int((tile_bytes + DASK_OVERHEAD) / PEAK_SHARE) if tile_bytes
                                           else "auto", resources={"cores": cores},
                                           dashboard_address=":0")
        return distributed.Client(cluster)
    try:
        return distributed.Client(spec, timeout=30)
    except OSError as e:
        raise OptionError(f"--scheduler: cannot reach {spec}: {e}") from None


def close_client(client) -> None:
    """Disconnect a client made by ``connect``, shutting down the local cluster it started."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


# ------------------------------------------------------------------ on the workers

_ENGINES: dict[str, object] = {}


def _worker_threads() -> int:
    """The cores this worker may use: its ``cores`` resource, else its thread count."""
    from distributed import get_worker
    state = get_worker().state
    return int(state.total_resources.get("cores", state.nthreads))


def worker_engine(settings):
    """This worker process's engine for ``settings`` (the network is built once per process), with
    torch and numba set to the worker's cores (Dask starts workers with one OpenMP thread)."""
    import numba
    import torch

    from hires.core import process
    from hires.engine.engine import Engine
    process.tune_for_rendering()
    threads = _worker_threads()
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    key = repr((settings.network, settings.weights, settings.pooling, settings.seed, settings.device))
    if key not in _ENGINES:
        _ENGINES[key] = Engine(settings)
    engine = _ENGINES[key]
    engine.use_settings(settings)
    engine.use_precision("bf16" if settings.precision == "bf16" else "fp32")  # the driver's, per level
    return engine


def _shared(value):
    return value


def _tile_stats_task(settings, image_region: np.ndarray, tile, layers, canvas_hw, masks=None):
    return worker_engine(settings).tile_stats(image_region, tile, layers, canvas_hw, masks)


def _refine_task(settings, job, tile, region: np.ndarray, content: np.ndarray | None, masks=None):
    from hires.engine.reports import TileCounting
    counting = TileCounting(job.level, tile.index + 1, job.n_tiles)
    t = time.perf_counter()
    x_new = worker_engine(settings).refine_tile(tile, job, region, content, counting, masks)
    return x_new, counting.net_s, counting.evals, time.perf_counter() - t


# ------------------------------------------------------------------ on the driver

class DaskRunner:
    """Runs tile work on a Dask client; ``Engine.stats_pass`` and ``passes.refine_pass`` call it in
    place of their in-process loops.  Records what it did per pass for the benchmarks."""

    def __init__(self, client, settings, owned: bool = True, progress=None):
        self.client = client
        self.settings = settings
        self.progress = progress or (lambda event: None)
        self.owned = owned          # made by connect(): closed with the render
        self.log: list[dict] = []   # per statistics pass and per colour: tiles, seconds, bytes moved

    def use_precision(self, precision: str) -> None:
        """The arithmetic of the level about to run, which the workers' engines take with each task."""
        self.settings = self.settings.replace(precision=precision)

    def close(self) -> None:
        """Disconnect; a local cluster this runner started is shut down with it."""
        if self.owned:
            close_client(self.client)

    def _submit(self, fn, *args, key: str):
        return self.client.submit(fn, *args, key=key, retries=RETRIES, pure=False)

    def tile_stats_runs(self, image: np.ndarray, layers, tiles, masks=None):
        """(tile index, tile_stats result) for each tile, computed on the workers at once."""
        distributed = _distributed()
        pass_id = uuid.uuid4().hex[:8]
        futures = {}
        entry = {"kind": "stats", "tiles": len(tiles), "task_s": 0.0, "bytes_sent": 0, "bytes_received": 0}
        t0 = time.perf_counter()
        for tile in tiles:
            region = take(image, tile.region)
            crop = None if masks is None else take(masks, tile.region)
            entry["bytes_sent"] += region.nbytes + (0 if crop is None else crop.nbytes)
            futures[self._submit(_tile_stats_task, self.settings, region, tile, tuple(layers),
                                 image.shape[:2], crop, key=f"tile-stats-{pass_id}-{tile.index}")] = tile.index
        for fut in distributed.as_completed(futures):
            result = fut.result()
            fut.release()
            entry["task_s"] += result[1]
            entry["bytes_received"] += sum(st.gram.nbytes + st.mean.nbytes for st in result[0].values())
            yield futures[fut], result
        self.log.append({**entry, "wall_s": time.perf_counter() - t0})

    def refine_runs(self, canvas: np.ndarray, content: np.ndarray | None, tiles, job, masks=None):
        """(tile, its new blend area) for the tiles of one colour, refined at once on the workers, in the
        order they finish (tiles of one colour share no pixels, so the order does not matter)."""
        from hires.engine.engine import Engine
        if not tiles:
            return
        distributed = _distributed()
        ctx = job.ctx
        pass_id = uuid.uuid4().hex[:8]
        shared = self._submit(_shared, job.shared(), key=f"refine-shared-{pass_id}")
        futures = {}
        sent = 0
        t0 = time.perf_counter()
        for tile in tiles:
            region = take(canvas, tile.region)
            part = None if content is None else take(content, tile.region)
            crop = None if masks is None else take(masks, tile.region)
            sent += region.nbytes + sum(0 if a is None else a.nbytes for a in (part, crop))
            self.progress(TileStarted(job.level.index, ctx.pass_index, tile.index + 1, job.n_tiles))
            futures[self._submit(_refine_task, self.settings, shared, tile, region, part, crop,
                                 key=f"refine-tile-{pass_id}-{tile.index}")] = tile
        task_s, received = 0.0, 0
        for fut in distributed.as_completed(futures):
            tile = futures[fut]
            x_new, net_s, evals, seconds = fut.result()
            fut.release()
            received += x_new.nbytes
            per_eval = 2 * Engine.tile_flop(tile, job.level)   # forward plus backward
            ctx.counters.add(net_s, per_eval * evals, work=per_eval * job.level.iterations)
            task_s += seconds
            yield tile, x_new
        shared.release()
        self.log.append({"kind": "refine", "level": job.level.index, "pass": ctx.pass_index, "tiles": len(tiles),
                         "wall_s": time.perf_counter() - t0, "task_s": task_s, "bytes_sent": sent,
                         "bytes_received": received})
