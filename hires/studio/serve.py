"""``hires serve``: the studio, a page and a JSON API over the same renders as the command line.

Starlette on uvicorn (``pip install "hires[serve]"``): an ASGI framework that is small, maintained and
typed, whose requests, multipart forms, streaming responses and static files are all this needs, and
whose test client and server run in one process.  The page (``hires/static``, no build step) and the
API it uses are described in docs/serve.md.  Every render goes through the one resolver (as a batch
file's job: ``hires.rendering.batch.job_from_table``), its plan checked against the server's memory before it
is queued; renders run one at a time, each in its own process (``hires.studio.jobrunner``); quick previews
run here, one at a time, with the fast network.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import signal
import threading
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from hires.core.errors import HiresError, InputError, OptionError
from hires.studio.jobrunner import Runner
from hires.studio.serveguard import Guard
from hires.studio.servelimits import Limits, UploadLimit, TooLarge
from hires.studio.preview import N_BUILTIN
from hires.studio.studio import SNAPSHOTS, JobRecord, Studio

STATIC = Path(__file__).parents[1] / "static"
logger = logging.getLogger(__name__)
CLOSING = threading.Event()   # set when the server is asked to stop: the event streams end by themselves
# what a client may set: the settings by name or flag spelling, but nothing that names a file or the
# machine (the server sets memory from its own budget, output and previews in the job's folder)
NOT_FROM_CLIENTS = {"weights", "work_dir", "memory", "device", "config", "output", "snapshots", "content",
                    "style", "example", "mask", "keep", "name", "overwrite", "fresh", "keep_work", "scheduler",
                    "snapshot_size", "snapshot_every"}


class StudioState:
    """The routes' shared state: the data folder, the queue, the limits and the preview lock."""

    def __init__(self, studio: Studio, limits: Limits):
        self.studio, self.limits = studio, limits
        self.runner = Runner(studio)
        # one computation at a time in this process: previews and plans run numba's parallel kernels,
        # whose default threading layer (workqueue) ends the whole process when two threads enter it
        # at once (the page asks for a preview and a plan together), and each is planned for the
        # memory the budget leaves as if it ran alone
        self.compute_lock = threading.Lock()
        self.names: dict[str, str] = {}   # an upload's name as its sender gave it: shown, never used as a path

    # ------------------------------------------------------------ forms

    async def form(self, request: Request) -> tuple[dict, dict]:
        """The multipart (or urlencoded) form: its option values and its uploads kept (by field)."""
        values, files = {}, {"content": [], "style": []}
        async with request.form(max_files=16, max_fields=64) as form:
            for key, value in form.multi_items():
                key = key.replace("-", "_")
                if hasattr(value, "read"):
                    if key not in files:
                        raise OptionError(f"{key}: not a file field; send the photo as 'content' and paintings as 'style'")
                    files[key].append(await self._keep(value, key))
                elif key in ("content_upload", "style_upload"):
                    files[key.removesuffix("_upload")].append(self.studio.upload_path(str(value)))
                else:
                    values[key] = str(value)
        return values, files

    async def _keep(self, upload, key: str) -> Path:
        staged = self.studio.staging()
        try:
            with open(staged, "wb") as fh:
                while block := await upload.read(1 << 20):
                    fh.write(block)
        except BaseException:   # a full disk, a client gone: nothing of it is left behind
            staged.unlink(missing_ok=True)
            raise
        given = "".join(c for c in (upload.filename or "upload") if c.isprintable())[-100:]
        fitted = key == "style" and given.lower().endswith(".hstyle")
        kept = await asyncio.to_thread(self.studio.keep_upload, staged, key, fitted, self.limits.job_memory())
        self.names.setdefault(kept.name, given)
        return kept

    def table(self, values: dict, files: dict, job_dir: Path | None) -> dict:
        """A batch table from the form: uploads by the server's own paths, options checked by name."""
        from hires.core.config import Settings
        from hires.core.presets import preset_names
        settings = {f.replace("_", "-") for f in Settings.__dataclass_fields__} | set(Settings.__dataclass_fields__)
        table = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name in NOT_FROM_CLIENTS:
                raise OptionError(f"{key}: set by the server, not by a request")
            if name not in settings and name not in ("size", "print_size", "preset", "format"):
                raise OptionError(f"{key}: unknown option; give the command line's names (method, size, strength, ...)")
            if name == "preset" and value not in ("", *preset_names()):
                raise OptionError(f"preset: {value[:64]!r} is not one of hires' presets ({', '.join(preset_names())})")
            if value != "":
                table[name] = value
        table["content"] = str(one_photo(files))
        if files["style"]:
            table["style"] = [str(p) for p in files["style"]]
        name = self.studio.result_name(table.pop("format", "png").lower().removeprefix("."))
        table["memory"] = f"{self.limits.job_memory()}B"
        table["output"] = str(job_dir / name) if job_dir is not None else name
        return table


class NotFound(Exception):
    pass


def one_photo(files: dict) -> Path:
    if len(files["content"]) != 1:
        raise OptionError("content: send one photo")
    return files["content"][0]


def _resolve(lock: threading.Lock, table: dict, source: Path, planning: bool = False):
    """The request a table resolves to (every check the command line makes), and its plan; for a
    plan only (``planning``), without the output's checks and with times (this machine's speed,
    measured once and cached), under ``lock`` (the process's one computation at a time)."""
    from hires.api import plan_of
    from hires.rendering.batch import job_from_table
    with lock:
        job = job_from_table(source, 1, table)
        r = job.request(with_output=not planning)
        return r, plan_of(r, calibrate=planning)


def _warm() -> None:
    import importlib
    for module in ("hires.api", "hires.rendering.fastrender", "hires.fast.fast"):
        importlib.import_module(module)


def _used(table: dict, files: dict, names: dict) -> dict:
    shown = (lambda p: names.get(Path(p).name, "an earlier upload"))
    return {"content": shown(table["content"]), "styles": [shown(p) for p in files["style"]],
            **{k: table[k] for k in ("method", "size", "print_size", "builtin_style", "strength", "bit_depth")
               if k in table}}


def build_app(studio: Studio, limits: Limits, *, token: str | None = None, host: str = "127.0.0.1",
              allow_hosts: tuple[str, ...] = ()):
    """The studio's ASGI app behind its front door (hires.studio.serveguard) and its upload limit."""
    state = StudioState(studio, limits)

    async def plan(request: Request):
        values, files = await state.form(request)
        table = state.table(values, files, None)
        _, p = await asyncio.to_thread(_resolve, state.compute_lock, table, studio.jobs / "plan.json", True)
        return JSONResponse(p.as_dict())

    async def submit(request: Request):
        values, files = await state.form(request)
        job_id = studio.new_id()
        job_dir = studio.job_dir(job_id)
        job_dir.mkdir()
        try:
            table = state.table(values, files, job_dir)
            r, p = await asyncio.to_thread(_resolve, state.compute_lock, table, job_dir / "job.json")
            if r.settings.method != "fast":   # the fast method paints in seconds and writes no previews
                table.update(snapshots=str(job_dir / SNAPSHOTS), snapshot_every=1)
        except BaseException:
            studio.remove(job_id)
            raise
        state.runner.add(JobRecord(job_id, table, plan=p.as_dict(), used=_used(table, files, state.names)))
        return JSONResponse({"id": job_id}, status_code=201)

    def record(request: Request) -> JobRecord:
        job_id = request.path_params["job_id"]
        if job_id not in state.runner.records:
            raise NotFound(job_id)
        return state.runner.records[job_id]

    async def jobs(request: Request):
        return JSONResponse([r.as_dict() for r in state.runner.records.values()])

    async def job(request: Request):
        return JSONResponse(record(request).as_dict())

    async def job_preview(request: Request):
        path = studio.snapshot_path(record(request))
        if path is None:
            return JSONResponse({"error": "no preview yet"}, status_code=404)
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def job_result(request: Request):
        r = record(request)
        path = studio.result_path(r) if r.status == "done" else None
        if path is None:
            return JSONResponse({"error": f"the job is {r.status}; no result"}, status_code=404)
        return FileResponse(path, filename=f"hires-{r.id}{path.suffix}")

    async def delete(request: Request):
        r = record(request)
        if r.status in ("queued", "running"):
            return JSONResponse(state.runner.cancel(r.id).as_dict())
        state.runner.remove(r.id)
        return JSONResponse({"id": r.id, "removed": True})

    async def events(request: Request):
        q = state.runner.listen()

        async def stream():
            try:
                yield ": hires\n\n"
                quiet = 0.0
                while not CLOSING.is_set():   # (the server stopping ends the stream, not a cancel)
                    try:
                        update = await asyncio.wait_for(q.get(), timeout=0.5)
                        yield f"data: {json.dumps(update, default=str)}\n\n"
                        quiet = 0.0
                    except asyncio.TimeoutError:
                        quiet += 0.5
                        if quiet >= 15:
                            yield ": still here\n\n"
                            quiet = 0.0
            finally:
                state.runner.unlisten(q)
        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    async def preview(request: Request):
        values, files = await state.form(request)
        from hires.studio import preview as previews
        room = limits.preview_memory(state.runner.rendering_bytes())
        data = await asyncio.to_thread(previews.fast_preview, state.compute_lock, one_photo(files), files["style"],
                                       values, room)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def styles(request: Request):
        return JSONResponse([{"index": i, "thumb": f"/static/builtin/{i:02d}.jpg"} for i in range(N_BUILTIN)])

    async def upload(request: Request):
        _, files = await state.form(request)
        from hires.core import io
        out = []
        for key in ("content", "style"):
            for p in files[key]:
                w, h = (0, 0) if p.suffix == ".hstyle" else await asyncio.to_thread(io.image_size, p, key)
                out.append({"field": key, "upload": p.name, "width": w, "height": h})
        return JSONResponse(out, status_code=201)

    async def index(request: Request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    routes = [
        Route("/", index),
        Route("/api/uploads", upload, methods=["POST"]),
        Route("/api/preview", preview, methods=["POST"]),
        Route("/api/plan", plan, methods=["POST"]),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs", jobs, methods=["GET"]),
        Route("/api/jobs/{job_id}", job, methods=["GET"]),
        Route("/api/jobs/{job_id}", delete, methods=["DELETE"]),
        Route("/api/jobs/{job_id}/preview", job_preview),
        Route("/api/jobs/{job_id}/result", job_result),
        Route("/api/events", events),
        Route("/api/styles", styles),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        # what planning and previews load (torch among it) is loaded now, so that the server's size is
        # what it stays at when a job's share of the memory is measured
        await asyncio.to_thread(_warm)
        state.runner.restore()
        task = asyncio.create_task(state.runner.run_forever())
        try:
            yield
        finally:
            task.cancel()
            if state.runner.current:   # a render stops with the server; a restart resumes it
                with contextlib.suppress(ProcessLookupError):
                    state.runner.current[1].send_signal(signal.SIGINT)

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        HiresError: lambda req, e: JSONResponse({"error": str(e)}, status_code=400),
        OSError: _os_error,
        ClientDisconnect: _client_gone,
        NotFound: lambda req, e: JSONResponse({"error": "no such job"}, status_code=404),
        TooLarge: lambda req, e: JSONResponse({"error": str(e)}, status_code=413),
        Exception: lambda req, e: JSONResponse({"error": f"{type(e).__name__}: {e}"}, status_code=500),
    })
    app.state.studio = state
    return Guard(UploadLimit(app, limits.max_upload), bound=host, token=token, allow_hosts=allow_hosts)


def _os_error(request: Request, e: OSError) -> JSONResponse:
    """A failure of the machine (a full disk above all) in one line: 507 when there is no room."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return JSONResponse({"error": "the studio's disk is full; free some space on it and send this again"},
                            status_code=507)
    return JSONResponse({"error": f"the server could not do this ({e.strerror or e})"}, status_code=500)


def _client_gone(request: Request, e: Exception) -> Response:
    """A client that went away before its request was read whole: one line in the log, no traceback."""
    logger.warning("a client went away during %s %s", request.method, request.url.path)
    return Response(status_code=400)


def check_bind(host: str, token: str | None) -> None:
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        raise OptionError(f"--host {host}: anyone who can reach it could upload and render; give --token "
                          "(a secret the page's address will carry) or bind 127.0.0.1")
    if token is not None and len(token) < 16:
        raise OptionError("--token: give at least 16 characters (e.g. python -c 'import secrets; "
                          "print(secrets.token_urlsafe())')")
    if token is not None and not all(c.isalnum() or c in "-_." for c in token):
        raise InputError("--token: letters, digits and - _ . only (it travels in the page's address)")
