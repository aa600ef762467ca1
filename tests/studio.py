"""A running ``hires serve`` for the studio's tests: the real command in a process of its own, on a
free port, with its data folder in the test's tmp_path; and a few helpers to talk to it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx

from conftest import ROOT


class Server:
    """``hires serve`` in a process of its own; what it says on stderr is kept in a file (``log``,
    beside the data folder unless given), so that a failing test can show it."""

    def __init__(self, data_dir: Path, *args: str, log: Path | None = None):
        self.data_dir = data_dir
        self.log = log or data_dir.with_name(f"{data_dir.name}-server-stderr.log")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "hires.commands.cli", "serve", "--port", "0",
                                          "--data-dir", str(data_dir), *args],
                                         stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        line = self.proc.stdout.readline()
        if not line.startswith("hires studio at "):
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"the server did not start: {line!r} {self.stderr_text()}")
        self.url = line.split()[-1].split("?")[0].rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=120)

    def job(self, job_id: str) -> dict:
        return self.http.get(f"/api/jobs/{job_id}").json()

    def wait(self, job_id: str, until=("done", "failed", "cancelled"), timeout: float = 180) -> dict:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            record = self.job(job_id)
            if record["status"] in until:
                return record
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} still {record['status']} after {timeout} s")

    def stop(self, sig=signal.SIGINT) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.http.close()

    def stderr_text(self) -> str:
        """What the server has written to stderr so far."""
        return self.log.read_text(errors="replace")


def post(server: Server, path: str, files=None, **fields):
    """A multipart POST: ``files`` maps a field to a path (or a list of them), the rest are options."""
    parts = []
    for field, paths in (files or {}).items():
        for p in paths if isinstance(paths, list) else [paths]:
            parts.append((field, (Path(p).name, Path(p).read_bytes())))
    data = {k: str(v) for k, v in fields.items()}
    return server.http.post(path, files=parts or None, data=data)


def events(url: str, into: list, until, timeout: float = 120) -> None:
    """Append the server's event stream's updates to ``into`` until ``until(update)`` holds, then hang up."""
    with urllib.request.urlopen(url + "/api/events", timeout=timeout) as stream:
        for raw in stream:
            line = raw.decode().strip()
            if line.startswith("data: "):
                into.append(json.loads(line[6:]))
                if until(into[-1]):
                    return
