"""The studio's folder (``hires serve --data-dir``): uploads and jobs, and nothing but what hires made.

    DATA/.hires-studio            the marker: hires made this folder (a folder without it is refused)
    DATA/uploads/SHA.jpg          each upload once, named by its content's SHA-256 and its real format
    DATA/jobs/ID/job.json         a job: its table (the batch file's keys), status, plan, message
    DATA/jobs/ID/result.tif       its output (with the work folder ``.result.hires-work`` while it runs)
    DATA/jobs/ID/snapshots/       the previews the render writes as it goes (``--snapshots``)

No name a client sends reaches the file system: an upload is named by its hash and the loader that
reads it (checked before anything decodes it), a job by an id the server draws (``JOB_ID``), and a
job's table is made here from the upload names and the form's settings, never from a path.  Removing
a job removes only the names listed above, the work folder through its own marker, then the folder
when nothing else is in it.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hires.core.errors import InputError, OptionError, OutputError
from hires.core.safefiles import Folder, file_sha256

MARKER = ".hires-studio"
JOB_ID = re.compile(r"^[0-9a-f]{16}$")
UPLOAD_NAME = re.compile(r"^[0-9a-f]{64}\.(jpg|png|tif|webp|hstyle)$")
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif", "WebP": "webp"}
RECORD = "job.json"
SNAPSHOTS = "snapshots"
RESULT = "result"
FORMATS = ("png", "jpg", "tif", "webp")                  # a result's formats, by file extension
RESULT_NAME = re.compile(rf"{RESULT}\.({'|'.join(FORMATS)})")
# the largest image the studio keeps: decoding costs time with the pixels (a PNG is read whole to
# make even a thumbnail), and 250 Mpx is a 19000x13000 photo, beyond any print the studio renders
MAX_UPLOAD_PIXELS = 250_000_000
STATUSES = ("queued", "running", "done", "failed", "cancelled")
ENDED = ("done", "failed", "cancelled")


@dataclass
class JobRecord:
    """A job as the server keeps it (``job.json``) and the API shows it."""
    id: str
    table: dict                       # the batch table the render is made from (hires.rendering.batch.job_from_table)
    status: str = "queued"
    created: float = field(default_factory=time.time)
    message: str | None = None        # a failure's one line
    plan: dict | None = None          # the plan's as_dict(), made before the job was queued
    output: str | None = None         # the result's file name in the job's folder
    used: dict = field(default_factory=dict)   # what the page lists: file names, style, size, method
    progress: dict = field(default_factory=dict)  # the latest level, tile, iteration, ETA
    snapshot: str | None = None       # the latest preview's file name in snapshots/
    wall_s: float | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("table")
        return d


class Studio:
    """The data folder, held open (``safefiles.Folder``): uploads and job records."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.uploads = self.root / "uploads"
        self.jobs = self.root / "jobs"

    @classmethod
    def open(cls, path) -> "Studio":
        """Make the folder (its parent must exist) or open one hires made; refuse any other."""
        root = Path(os.path.abspath(path))   # (the job tables name files by absolute paths)
        if not os.path.lexists(root):
            if not root.parent.is_dir():
                raise OptionError(f"--data-dir: {str(root.parent)!r} does not exist; create it first")
            try:
                root.mkdir()
                (root / MARKER).write_text("made by hires serve: its uploads and jobs\n")
            except OSError as e:
                raise OptionError(f"--data-dir: cannot create {str(root)!r} ({e.strerror or e})") from None
        else:
            try:
                folder = Folder.open(root)
            except OSError:
                raise OptionError(f"--data-dir: {str(root)!r} is not a folder of this user's; give another") from None
            ours = folder.is_regular(MARKER)
            folder.close()
            if not ours:
                raise OptionError(f"--data-dir: {str(root)!r} exists and was not made by hires serve; give a new "
                                  "folder's name (hires makes it) or one it made before")
        for sub in ("uploads", "jobs"):
            p = root / sub
            if os.path.islink(p) or (os.path.lexists(p) and not p.is_dir()):
                raise OptionError(f"--data-dir: {str(p)!r} is not the folder hires made; move it away")
            p.mkdir(exist_ok=True)
        return cls(root)

    # ------------------------------------------------------------ uploads

    def upload_path(self, name: str) -> Path:
        if not UPLOAD_NAME.match(name):
            raise InputError(f"upload {name!r}: no such upload")
        return self.uploads / name

    def keep_upload(self, staged: Path, what: str, fitted: bool = False, budget: int | None = None) -> Path:
        """Check a staged upload (a file the server wrote) before anything decodes it, and keep it
        under its content's name; the staged file is removed either way.  ``fitted``: the client
        named it ``.hstyle``, so it must read as a fitted style (hires.fast.hstyle checks every member).
        An image's header is checked against ``budget`` (a render's share of the server's memory)
        and MAX_UPLOAD_PIXELS, before it is kept."""
        from hires.core import io
        from hires.fast import hstyle
        try:
            if fitted:
                hstyle.load(staged, what)
                ext = "hstyle"
            else:
                loader = io.loader_of(staged)
                if loader not in io.LOADERS:
                    kind = f" (it reads as {loader.removeprefix('VipsForeignLoad').removesuffix('File')})" if loader else ""
                    raise InputError(f"{what}: the upload is not a {io.FORMATS} image{kind}")
                ext = EXTENSIONS[io.LOADERS[loader]]
                try:
                    header = io.check_decode_budget(staged, budget, what)
                except InputError as e:   # (said of "the upload": the server's own paths are not the client's)
                    raise InputError(str(e).replace(repr(str(staged)), "the upload")) from None
                if header.width * header.height > MAX_UPLOAD_PIXELS:
                    raise InputError(f"{what}: the upload is {header.width}x{header.height} px; the studio takes "
                                     f"images of up to {MAX_UPLOAD_PIXELS // 10**6} megapixels: send a smaller one")
            digest = file_sha256(staged)
            target = self.uploads / f"{digest}.{ext}"
            if not target.exists():
                os.replace(staged, target)
            return target
        finally:
            staged.unlink(missing_ok=True)

    def staging(self) -> Path:
        """A new file name for an upload being received (the hidden prefix keeps it from the API)."""
        return self.uploads / f".incoming-{secrets.token_hex(8)}"

    # ------------------------------------------------------------ jobs

    def new_id(self) -> str:
        return secrets.token_hex(8)

    def job_dir(self, job_id: str) -> Path:
        if not isinstance(job_id, str) or not JOB_ID.match(job_id):
            raise KeyError(job_id)
        return self.jobs / job_id

    def save(self, record: JobRecord) -> None:
        d = self.job_dir(record.id)
        d.mkdir(exist_ok=True)
        folder = Folder.open(d)
        try:
            folder.write_text(RECORD, json.dumps(asdict(record), indent=1, default=str))
        finally:
            folder.close()

    def load(self, job_id: str) -> JobRecord:
        d = self.job_dir(job_id)
        folder = Folder.open(d)
        try:
            data = json.loads(folder.read(RECORD, 1 << 20))
        finally:
            folder.close()
        known = set(JobRecord.__dataclass_fields__)
        if not isinstance(data, dict) or data.get("id") != job_id or data.get("status") not in STATUSES:
            raise ValueError(f"{d / RECORD}: not a job record")
        return JobRecord(**{k: v for k, v in data.items() if k in known})

    def records(self) -> list[JobRecord]:
        """Every readable job record, oldest first (an unreadable one is left alone, unlisted)."""
        out = []
        for name in sorted(os.listdir(self.jobs)):
            if JOB_ID.match(name):
                try:
                    out.append(self.load(name))
                except (OSError, ValueError, TypeError):
                    continue
        return sorted(out, key=lambda r: r.created)

    def result_name(self, fmt: str) -> str:
        """A result's file name in its job's folder, for a format of FORMATS."""
        if fmt not in FORMATS:
            raise OptionError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
        return f"{RESULT}.{fmt}"

    def result_path(self, record: JobRecord) -> Path | None:
        """The job's result, a regular file of its folder (never through a link), else None."""
        if record.output is None or not RESULT_NAME.fullmatch(record.output):
            return None
        return _regular(self.job_dir(record.id), record.output)

    def snapshot_path(self, record: JobRecord) -> Path | None:
        """The job's latest picture, a regular file of its snapshots folder (no link on the way), else None."""
        name = record.snapshot
        if not name or "/" in name or name.startswith(".") or not name.endswith(".jpg"):
            return None
        folder = self.job_dir(record.id)
        return _regular(folder / SNAPSHOTS, name) if _regular(folder, SNAPSHOTS, stat.S_ISDIR) else None

    def remove(self, job_id: str) -> None:
        """Remove a job's own names (see the module docstring); what else is in its folder stays."""
        from hires.engine.workfolder import WorkFolder
        d = self.job_dir(job_id)
        folder = Folder.open(d)
        try:
            for name in folder.names():
                if name.startswith(f".{RESULT}.") and name.endswith(".hires-work"):
                    try:
                        WorkFolder.open(d / name).remove()
                    except OutputError:
                        pass
                elif name == RECORD or RESULT_NAME.fullmatch(name):
                    folder.unlink(name)
            snaps = d / SNAPSHOTS
            if os.path.isdir(snaps) and not os.path.islink(snaps):
                inner = Folder.open(snaps)
                for name in inner.names():
                    if name.endswith(".jpg") and "-L" in name:
                        inner.unlink(name)
                inner.rmdir_self()
                inner.close()
            folder.rmdir_self()
        finally:
            folder.close()


def check_table(table: dict, job_dir: Path, uploads: Path) -> None:
    """A job table read back from disk (it may have been edited) names only what the server would
    have put there: inputs among the uploads, the output and previews in the job's own folder.
    Anything else is an InputError, and the job is not run."""
    def inside(value, folder: Path, pattern) -> bool:
        p = Path(str(value))
        return p.parent == folder and bool(pattern.fullmatch(p.name))
    styles = table.get("style", [])
    ok = (isinstance(table, dict) and inside(table.get("content"), uploads, UPLOAD_NAME)
          and isinstance(styles, list) and all(inside(v, uploads, UPLOAD_NAME) for v in styles)
          and inside(table.get("output"), job_dir, RESULT_NAME)
          and table.get("snapshots") in (None, str(job_dir / SNAPSHOTS))
          and not {"work_dir", "weights", "config", "mask", "keep", "example"} & set(table))
    if not ok:
        raise InputError(f"{job_dir / RECORD}: the job names files outside the studio's own; not run")


def _regular(folder: Path, name: str, kind=stat.S_ISREG) -> Path | None:
    """``folder / name`` when it is of ``kind`` itself (not a link to one), else None."""
    try:
        return folder / name if kind(os.lstat(folder / name).st_mode) else None
    except OSError:
        return None
