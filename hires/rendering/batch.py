"""``hires batch JOBS.toml...``: many renders, one after another, each in a process of its own.

A job file holds ``[[job]]`` tables whose keys are the command line's option names (``content``,
``style`` as a list with optional ``"path:weight"``, ``example`` for a texture, ``size``,
``output``, ``preset``, ``config``, ``overwrite``, any setting, and the run options
``fresh``/``keep_work``/``snapshots``/...);
an optional ``[defaults]`` table applies to every job.  Paths are relative to the job file.

Every job of every file is checked before the first one runs (keys, the kinds and ranges of their
values, that the inputs are files, that the outputs can be made and no two jobs share one): a
mistake anywhere is one error naming the file, the job and the key, and nothing runs.  A job whose
output exists and was written by an earlier batch run with the same fingerprint (inputs, size and
settings) is skipped; a job that fails while it runs (a corrupt image, an output that exists) is
reported and the others go on.  Each job runs in a child process, so one crash cannot take the
batch down and the peak memory reported is that job's own.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from hires.fast import hstyle
from hires.core.canvas import peak_rss_bytes, reset_peak_rss
from hires.core.coercion import coerce_flag
from hires.core.config import Settings, parse_style, read_toml
from hires.core.errors import HiresError, OptionError
from hires.core.presets import resolve_settings
from hires.core.safefiles import read_regular
from hires.rendering.request import (RUN_FIELDS, RunOptions, builtin_only, check_mask_count, default_output, requested_size,
                           run_options_from)

PATH_KEYS = ("content", "output", "snapshots", "work_dir", "weights")


@dataclass
class BatchJob:
    name: str
    source: Path                        # the job file
    texture: bool
    content: str | None
    styles: list[str]
    size: str | None
    output: Path
    settings: Settings
    options: RunOptions
    overwrite: bool = False
    masks: tuple[str, ...] = ()         # style region masks (hires.engine.regions), paths resolved
    keep: str | None = None             # the mask of what stays photographic

    def request(self, with_output: bool = True):
        """The job resolved as every front end's is (``resolver.resolve``): inputs decoded small,
        the output checked (``with_output``); its settings and run options are already checked."""
        from hires.rendering.resolver import Asked, resolve
        r = resolve(Asked(texture=self.texture, content=self.content, styles=self.styles, size=self.size,
                          masks=list(self.masks), keep=self.keep,
                          output=self.output if with_output else None, overwrite=self.overwrite,
                          settings=self.settings, source=f"{self.source}: {self.name}"))
        return dataclasses.replace(r, options=self.options)


@dataclass
class Outcome:
    name: str
    status: str                 # done, skipped or failed
    output: str | None
    wall_s: float = 0.0
    peak_rss_bytes: int | None = None
    error: str | None = None
    fingerprint: str | None = None


def _resolve(base: Path, value: str) -> str:
    p = Path(os.path.expanduser(str(value)))
    return str(p if p.is_absolute() else base / p)


def _style_list(base: Path, value, key: str, where: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
        raise OptionError(f"{where}: {key!r} must be a path or a list of paths ('painting.jpg:0.7' for a weight)")
    out = []
    for spec in items:  # the path resolved, its weight kept
        path, weight = parse_style(spec)
        out.append(f"{_resolve(base, path)}:{weight}")
    return out


def load_jobs(path) -> list[BatchJob]:
    """The jobs of one file, every key checked; a mistake raises a HiresError naming the file,
    the job and the key."""
    path = Path(path)
    table = read_toml(path, "batch")
    unknown = set(table) - {"defaults", "job"}
    if unknown:
        raise OptionError(f"batch: {str(path)!r}: unknown table(s) {', '.join(sorted(unknown))}; "
                          "use [defaults] and [[job]]")
    jobs = table.get("job", [])
    if not isinstance(jobs, list) or not jobs:
        raise OptionError(f"batch: {str(path)!r} has no [[job]] tables")
    if not all(isinstance(raw, dict) for raw in jobs):
        raise OptionError(f"batch: {str(path)!r}: 'job' must be [[job]] tables of keys, not {jobs!r}")
    defaults = table.get("defaults", {})
    if not isinstance(defaults, dict):
        raise OptionError(f"batch: {str(path)!r}: 'defaults' must be a [defaults] table of keys, not {defaults!r}")
    out = []
    for i, raw in enumerate(jobs, 1):
        # a job's own kind decides which defaults apply: a texture takes no style or content
        drop = {"content", "style"} if "example" in raw else {"example"} if "content" in raw else set()
        out.append(job_from_table(path, i, {**{k: v for k, v in defaults.items() if k not in drop}, **raw}))
    return out


def check_jobs(jobs: list[BatchJob]) -> None:
    """What can be known of every job before any runs: its inputs are files hires may read, its
    output can be made (extension, folder), and no two jobs write the same output."""
    from hires.core.io import check_readable
    from hires.core.output import check_output_path
    seen: dict[str, BatchJob] = {}
    for job in jobs:
        where = f"{job.source}: {job.name}"
        inputs = [("example" if job.texture else "style", parse_style(s)[0]) for s in job.styles]
        inputs += [("mask", m) for m in job.masks] + ([("keep", job.keep)] if job.keep else [])
        for key, path in ([("content", job.content)] if job.content else []) + inputs:
            check_readable(path, f"{where}: {key}")
            if key == "style" and hstyle.is_hstyle(path):
                hstyle.load(path, f"{where}: style")   # (every member checked before anything runs)
        check_mask_count(len(job.masks), len(job.styles), job.texture, job.keep is not None, where)
        try:
            check_output_path(job.output, overwrite=True)
        except HiresError as e:
            raise OptionError(f"{where}: output: {e}") from None
        other = seen.setdefault(os.path.abspath(job.output), job)
        if other is not job:
            raise OptionError(f"{where}: output: {str(job.output)!r} is also the output of {other.source}: "
                              f"{other.name}; give each job its own output")


def job_from_table(source: Path, index: int, raw: dict) -> BatchJob:
    """One job of a batch file (or a studio form's table): keys resolved against ``source``'s
    folder and checked; a mistake raises a HiresError naming the source, the job and the key."""
    base = source.resolve().parent
    name = str(raw.get("name", f"job {index}"))
    where = f"{source}: {name}"
    values = dict(raw)
    texture = "example" in values
    if texture == ("content" in values):
        raise OptionError(f"{where}: give either 'content' (a render) or 'example' (a texture)")
    preset = values.pop("preset", None)
    print_size = values.pop("print_size", None)
    if print_size is not None and "size" in values:
        raise OptionError(f"{where}: give 'size' or 'print_size', not both")
    size = requested_size(print_size or values.pop("size", None), preset, texture)
    example, style = values.pop("example", None), values.pop("style", None)
    masks = tuple(_resolve(base, m) for m in _path_list(values.pop("mask", []), "mask", where))
    keep = values.pop("keep", None)
    if keep is not None:
        keep = _resolve(base, _path_list(keep, "keep", where, single=True)[0])
    content = None if texture else _resolve(base, values.pop("content"))
    for key in PATH_KEYS[2:]:
        if values.get(key) is not None:
            values[key] = _resolve(base, values[key])
    config = values.pop("config", None)
    output = values.pop("output", None)
    overwrite = coerce_flag(values.pop("overwrite", False), f"{where}: overwrite")
    values.pop("name", None)
    run_kw = {k.replace("-", "_"): values.pop(k) for k in list(values) if k.replace("-", "_") in RUN_FIELDS}
    options = run_options_from(run_kw, prefix=f"{where}: ")  # checked here, before any job starts
    settings = resolve_settings(values, preset=preset, config=config and _resolve(base, config), source=where)
    if texture:
        styles = _style_list(base, example, "example", where)
    elif style is None and not builtin_only(settings):
        raise OptionError(f"{where}: a render needs 'style' (or method = \"fast\" with builtin_style)")
    else:
        styles = _style_list(base, style, "style", where) if style is not None else []
    if output is None:
        output = default_output(content or styles[0])
    return BatchJob(name, source, texture, content, styles, size, Path(_resolve(base, output)), settings,
                    options, overwrite, masks, keep)


def _path_list(value, key: str, where: str, single: bool = False) -> list[str]:
    """A job's ``mask`` (a path or a list of them) or ``keep`` (one path), checked for kind."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or (single and len(items) != 1) or not all(isinstance(v, str) and v for v in items):
        raise OptionError(f"{where}: {key!r} must be " + ("a path" if single else "a path or a list of paths")
                          + f", not {value!r}")
    return items


# ---------------------------------------------------------------- the record of finished jobs

def record_path(source: Path) -> Path:
    """Where a job file's finished outputs are recorded: a hidden file beside it, made by hires."""
    return source.with_name(f".{source.stem}.hires-batch.json")


def _read_record(source: Path) -> dict:
    try:
        data = json.loads(read_regular(record_path(source)))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_record(source: Path, output: Path, fingerprint: str) -> None:
    data = _read_record(source)
    st = output.stat()
    data[str(output)] = {"fingerprint": fingerprint, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    from hires.core.output import write_text_atomic  # (a new temporary file: never through a planted link)
    write_text_atomic(record_path(source), json.dumps(data, indent=1))


def fingerprint(job: BatchJob) -> str:
    """Inputs (path, size, time), size and settings: what decides the output."""
    from hires.rendering.request import work_key
    return work_key(job.request(with_output=False).job, job.settings, job.settings.network)


def already_done(job: BatchJob, fp: str) -> bool:
    entry = _read_record(job.source).get(str(job.output))
    if not entry or entry.get("fingerprint") != fp or not job.output.exists():
        return False
    st = job.output.stat()
    return entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns


# ---------------------------------------------------------------- running

def _child(job: BatchJob, progress_kind: str, conn) -> None:
    """Run one job in this (spawned) process and send back what happened."""
    conn.send(run_here(job, progress_kind))
    conn.close()


def run_here(job: BatchJob, progress_kind: str) -> dict:
    """Run one job in this process: what happened (status, output, error, wall, the job's peak RSS)."""
    from hires.core.progress import make_progress
    from hires.rendering.pipeline import run
    from rich.console import Console
    reset_peak_rss()  # a cluster worker runs many jobs: measure this one
    t0 = time.perf_counter()
    try:
        r = job.request()
        with make_progress(progress_kind, Console(stderr=True)) as progress:
            result = run(r.job, r.settings, progress, r.options)
        msg = {"status": "done", "output": str(result.output), "error": None}
    except HiresError as e:
        msg = {"status": "failed", "output": None, "error": str(e)}
    except Exception as e:  # a bug: still one line in the report, the batch goes on
        msg = {"status": "failed", "output": None, "error": f"{type(e).__name__}: {e}"}
    msg["wall_s"] = time.perf_counter() - t0
    msg["peak_rss_bytes"] = peak_rss_bytes()
    return msg


def run_job(job: BatchJob, progress_kind: str) -> Outcome:
    fp, outcome = _before_running(job)
    if outcome is not None:
        return outcome
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(job, progress_kind, send), name=f"hires batch {job.name}")
    t0 = time.perf_counter()
    proc.start()
    send.close()
    try:
        msg = receive.recv()
    except EOFError:  # the child died without a word: killed, out of memory, a crash in native code
        msg = None
    proc.join()
    if msg is None:
        return Outcome(job.name, "failed", None, time.perf_counter() - t0,
                       error=f"the render process ended with exit code {proc.exitcode}")
    return _outcome(job, fp, msg)


def _outcome(job: BatchJob, fp: str, msg: dict) -> Outcome:
    """The outcome of a job that ran (here or on a worker); a finished output is recorded."""
    out = Outcome(job.name, msg["status"], msg["output"], round(msg["wall_s"], 2), msg["peak_rss_bytes"],
                  msg["error"], fp)
    if out.status == "done":
        _write_record(job.source, job.output, fp)
    return out


def _before_running(job: BatchJob) -> tuple[str | None, Outcome | None]:
    """The job's fingerprint, or the outcome that makes running it needless (skipped, or failed
    before it could start)."""
    try:
        fp = fingerprint(job)
    except HiresError as e:
        return None, Outcome(job.name, "failed", None, error=str(e))
    if already_done(job, fp):
        return fp, Outcome(job.name, "skipped", str(job.output), fingerprint=fp)
    return fp, None


@dataclass
class BatchReport:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(o.status == "failed" for o in self.outcomes)

    def as_dict(self) -> dict:   # keys: REPORT_KEYS
        return {"jobs": [dataclasses.asdict(o) for o in self.outcomes],
                "done": sum(o.status == "done" for o in self.outcomes),
                "skipped": sum(o.status == "skipped" for o in self.outcomes), "failed": self.failed}


REPORT_KEYS = {"jobs", "done", "skipped", "failed"}


def check_report_path(path) -> None:
    """``--report`` replaces only an earlier batch report (hires wrote it), never another file, and
    its folder must exist and be writable: checked before the first job runs."""
    p = Path(path)
    from hires.core.output import check_place
    check_place(p, "--report", OptionError, "report.json")
    if not os.path.lexists(p):
        return
    try:
        ours = set(json.loads(read_regular(p))) == REPORT_KEYS
    except (OSError, ValueError, TypeError):
        ours = False
    if not ours:
        raise OptionError(f"--report: {str(path)!r} exists and is not a hires batch report; give another name")


def run_batch(files, progress_kind: str = "rich", on_outcome=None, scheduler=None) -> BatchReport:
    """Load every job file first (a mistake in one is reported before anything runs), then run
    the jobs in order, or all at once on a Dask cluster (``scheduler``: local:N, an address or a
    ``distributed.Client``).  ``on_outcome(job, outcome)`` hears each job's end."""
    jobs = [job for f in files for job in load_jobs(f)]
    check_jobs(jobs)
    if scheduler is not None:
        return run_on_cluster(jobs, scheduler, on_outcome)
    report = BatchReport()
    for job in jobs:
        outcome = run_job(job, progress_kind)
        report.outcomes.append(outcome)
        if on_outcome:
            on_outcome(job, outcome)
    return report


def run_on_cluster(jobs: list, scheduler, on_outcome=None) -> BatchReport:
    """Each job one task on the cluster, retried if its worker dies (outputs and work folders on
    a shared file system, so a retried job resumes from its checkpoints); the outcomes are
    reported in job order."""
    from hires.engine import cluster
    client = cluster.connect(scheduler)
    distributed = cluster._distributed()
    outcomes: dict[int, Outcome] = {}
    futures = {}
    try:
        for i, job in enumerate(jobs):
            fp, outcome = _before_running(job)
            if outcome is not None:
                outcomes[i] = outcome
                if on_outcome:
                    on_outcome(job, outcome)
                continue
            fut = client.submit(run_here, job, "quiet", key=f"hires-job-{i}-{uuid.uuid4().hex[:8]}",
                                retries=cluster.RETRIES, pure=False)
            futures[fut] = (i, job, fp)
        for fut in distributed.as_completed(futures):
            i, job, fp = futures[fut]
            try:
                outcomes[i] = _outcome(job, fp, fut.result())
            except Exception as e:  # the task itself failed on every retry (workers killed)
                outcomes[i] = Outcome(job.name, "failed", None, error=f"on the cluster: {type(e).__name__}: {e}")
            if on_outcome:
                on_outcome(job, outcomes[i])
    finally:
        if client is not scheduler:
            cluster.close_client(client)
    report = BatchReport([outcomes[i] for i in sorted(outcomes)])
    return report
