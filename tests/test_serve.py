"""The studio (``hires serve``) through its JSON API, the real server in a process of its own: quick
previews, renders queued one at a time with live progress, results, cancel, a restart that resumes,
and hostile requests answered in one line without harm."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import pyvips

from conftest import ROOT, data
from studio import Server, events, post

pytest.importorskip("starlette")


@pytest.fixture
def photo():
    return data("contents/forest_path_2560x1600.jpg", "photos/coffee.jpg")


@pytest.fixture
def painting():
    return data("styles/munch_the_scream_1893.jpg", "vangogh_starry_night_1889.jpg")


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "studio", "--memory", "3GiB")
    yield s
    s.stop()


def pixels(content: bytes) -> np.ndarray:
    im = pyvips.Image.new_from_buffer(content, "")
    return np.ndarray(buffer=im.write_to_memory(), dtype={"uchar": np.uint8, "ushort": np.uint16}[im.format],
                      shape=(im.height, im.width, im.bands))


def test_a_preview_is_the_fast_render_of_the_photo_at_the_strength_asked(server, photo, painting, tmp_path):
    import hires
    small = tmp_path / "small.jpg"
    pyvips.Image.thumbnail(str(photo), 400).jpegsave(str(small))
    previews = {}
    for strength in (0.3, 1.0):
        r = post(server, "/api/preview", {"content": small, "style": painting}, strength=strength)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", r.text
        previews[strength] = pixels(r.content).astype(float) / 255
    w = pyvips.Image.new_from_file(str(small)).width
    assert previews[1.0].shape[1] == w
    refs = {k: hires.render(small, painting, method="fast", strength=k, multiscale=False, fast_size=1024).image
            for k in (0.3, 1.0)}
    for strength, preview in previews.items():   # each is its strength's painting, through JPEG
        other = 1.0 if strength == 0.3 else 0.3
        assert np.abs(preview - refs[strength]).mean() < min(0.02, 0.5 * np.abs(preview - refs[other]).mean())


def test_a_render_job_runs_reports_and_gives_a_16_bit_tiff(server, photo, painting):
    r = post(server, "/api/jobs", {"content": photo, "style": painting}, method="fast", size="640x400",
             format="tif", **{"bit-depth": 16})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    record = server.wait(job_id)
    assert record["status"] == "done", record
    assert record["plan"]["peak_bytes"] > 0 and record["used"]["content"] == photo.name
    result = server.http.get(f"/api/jobs/{job_id}/result")
    assert result.status_code == 200
    im = pyvips.Image.new_from_buffer(result.content, "")
    assert (im.width, im.height, im.format) == (640, 400, "ushort")
    listed = server.http.get("/api/jobs").json()
    assert [j["id"] for j in listed] == [job_id]


def test_an_optimised_render_shows_its_levels_live_and_can_be_cancelled(server, photo, painting):
    stream: list = []
    listener = threading.Thread(target=events, args=(server.url, stream, lambda e: e["status"] == "done"),
                                daemon=True)
    listener.start()
    time.sleep(0.3)
    r = post(server, "/api/jobs", {"content": photo, "style": painting}, size="256x160", iterations="0,4",
             base_size=128, fast_size=128)
    job_id = r.json()["id"]
    done = server.wait(job_id)
    assert done["status"] == "done", done
    preview = server.http.get(f"/api/jobs/{job_id}/preview")
    assert preview.status_code == 200 and pixels(preview.content).shape[1] == 256   # the finest level's picture
    listener.join(10)
    assert {e["status"] for e in stream} >= {"queued", "running", "done"}
    assert any(e.get("snapshot") for e in stream if e["status"] == "running")  # pictures came while it ran
    assert any(e["progress"].get("n_levels") == 2 for e in stream)

    slow = post(server, "/api/jobs", {"content": photo, "style": painting}, size="256x160", iterations="0,400",
                base_size=128, fast_size=128).json()["id"]
    t0 = time.monotonic()
    while not server.job(slow)["progress"].get("iteration") and time.monotonic() - t0 < 60:
        time.sleep(0.1)
    cancelled = server.http.delete(f"/api/jobs/{slow}")
    assert cancelled.status_code == 200
    assert server.wait(slow)["status"] == "cancelled"
    folder = server.data_dir / "jobs" / slow
    assert folder.exists()
    assert server.http.delete(f"/api/jobs/{slow}").json()["removed"] is True
    assert not folder.exists() and server.http.get(f"/api/jobs/{slow}").status_code == 404


def test_a_restarted_server_resumes_the_render_it_was_killed_in(tmp_path, photo, painting):
    first = Server(tmp_path / "studio")
    job_id = post(first, "/api/jobs", {"content": photo, "style": painting}, size="640x400",
                  iterations="0,40", base_size=160, fast_size=160, format="png").json()["id"]
    # killed outright while the tiled level runs (its first tiles saved)
    t0 = time.monotonic()
    while not (first.job(job_id)["progress"].get("tiles_done") or time.monotonic() - t0 > 120):
        time.sleep(0.1)
    first.stop(signal.SIGKILL)
    time.sleep(1.5)   # the render notices its server is gone and saves (hires.studio.servework)
    second = Server(tmp_path / "studio")
    try:
        record = second.wait(job_id)
        assert record["status"] == "done", record
        notes = second.job(job_id)
        assert notes["output"] == "result.png"
        assert (tmp_path / "studio" / "jobs" / job_id / "result.png").is_file()
    finally:
        second.stop()


def test_hostile_requests_are_answered_in_one_line(tmp_path, photo, painting):
    srv = Server(tmp_path / "studio", "--max-upload", "2MB", "--memory", "1GiB")
    try:
        big = tmp_path / "big.jpg"
        big.write_bytes(os.urandom(3 << 20))
        r = post(srv, "/api/uploads", {"content": big})
        assert r.status_code == 413 and "--max-upload" in r.json()["error"]
        svg = tmp_path / "photo.jpg"
        svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="9000" height="9000"/>')
        csv = tmp_path / "painting.png"
        csv.write_text("1,2,3\n4,5,6\n")
        for field, fake in (("content", svg), ("style", csv)):
            r = post(srv, "/api/uploads", {field: fake})
            assert r.status_code == 400 and "not a JPEG, PNG, TIFF, WebP image" in r.json()["error"], r.text
        bomb = tmp_path / "bomb.jpg"   # a progressive JPEG is decoded whole: 12000x12000 px, 0.4 GiB at once
        pyvips.Image.black(12000, 12000, bands=3).jpegsave(str(bomb), interlace=True, Q=20)
        r = post(srv, "/api/jobs", {"content": bomb, "style": painting}, method="fast", size="600x600")
        assert r.status_code == 400 and "decoded whole" in r.json()["error"], r.text
        for bad in ("../../etc/passwd", "/etc/passwd", "a" * 64 + ".jpg/../x"):
            r = post(srv, "/api/jobs", {"style": painting}, content_upload=bad)
            assert r.status_code == 400 and "no such upload" in r.json()["error"]
        for key, value in (("work_dir", "/tmp"), ("output", "/etc/x.png"), ("memory", "100GiB"), ("config", "/x")):
            r = post(srv, "/api/jobs", {"content": photo, "style": painting}, **{key: value})
            assert r.status_code == 400 and "set by the server" in r.json()["error"]
        r = post(srv, "/api/jobs", {"content": photo, "style": painting}, strength="2", method="fast")
        assert r.status_code == 400 and "between 0 and 1" in r.json()["error"]
        for path in ("/api/jobs/0123456789abcdef", "/api/jobs/..%2F..%2Fetc", "/api/jobs/x/result"):
            assert srv.http.get(path).status_code == 404
        assert srv.http.delete("/api/jobs/0123456789abcdef").status_code == 404
        assert srv.http.get("/static/../hires/cli.py").status_code == 404
        # every refused job left nothing behind
        assert os.listdir(tmp_path / "studio" / "jobs") == []
        assert [n for n in os.listdir(tmp_path / "studio" / "uploads") if n.startswith(".")] == []
    finally:
        srv.stop()


def test_concurrent_submissions_queue_and_render_one_at_a_time(server, photo, painting):
    ids, errors = [], []

    def submit():
        r = post(server, "/api/jobs", {"content": photo, "style": painting}, method="fast", size="320x200")
        (ids if r.status_code == 201 else errors).append(r.json().get("id") or r.text)
    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    running = set()
    while any(t.is_alive() for t in threads) or any(server.job(i)["status"] in ("queued", "running") for i in ids):
        now = [j["id"] for j in server.http.get("/api/jobs").json() if j["status"] == "running"]
        assert len(now) <= 1
        running.update(now)
        time.sleep(0.05)
    assert errors == [] and len(set(ids)) == 4
    assert all(server.job(i)["status"] == "done" for i in ids)


def test_the_server_refuses_what_would_expose_or_clobber(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = (lambda *a: subprocess.run([sys.executable, "-m", "hires.commands.cli", "serve", *a], capture_output=True,
                                     text=True, env=env, timeout=60))
    r = run("--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 2 and "--token" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    r = run("--port", "0", "--data-dir", str(theirs))
    assert r.returncode == 2 and "not made by hires" in r.stderr
    assert os.listdir(theirs) == ["notes.txt"]
    token = "s3cret-token-of-24-chars"
    srv = Server(tmp_path / "studio", "--host", "0.0.0.0", "--token", token)
    try:
        assert srv.http.get("/api/jobs").status_code == 401
        assert srv.http.get("/api/jobs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert srv.http.get(f"/api/jobs?token={token}").status_code == 200
        assert srv.http.get("/").status_code == 401
    finally:
        srv.stop()


def test_the_shipped_thumbnails_are_the_built_in_styles_of_this_network():
    """The page's thumbnails (hires/static/builtin, made by ``python -m hires.studio.preview``) are what the
    bundled network paints now: regenerate them when it changes."""
    import threading
    from hires.studio import preview
    assert len(list(preview.THUMBNAILS.glob("*.jpg"))) == preview.N_BUILTIN
    lock = threading.Lock()
    for i in (0, 19):
        shipped = pixels((preview.THUMBNAILS / f"{i:02d}.jpg").read_bytes()).astype(float)
        fresh = pixels(preview.builtin_thumbnail(lock, i)).astype(float)
        assert np.abs(shipped - fresh).mean() < 2.0, i


def test_an_edited_job_record_cannot_make_the_render_write_or_read_elsewhere(tmp_path, photo, painting, capsys):
    """A job's record is state on disk, read back by the render process (hires.studio.servework): one
    edited to name an output or an input outside the studio's own folders is not run, and nothing is
    written there."""
    from hires.studio import servework
    from hires.studio.studio import Studio
    studio = Studio.open(tmp_path / "studio")
    uploads = []
    for src in (photo, painting):
        staged = studio.staging()
        staged.write_bytes(src.read_bytes())
        uploads.append(str(studio.keep_upload(staged, "content")))
    folder = studio.jobs / "0123456789abcdef"
    folder.mkdir()
    good = {"content": uploads[0], "style": [uploads[1]], "method": "fast", "size": "160x100",
            "output": str(folder / "result.png"), "memory": "2GiB"}
    elsewhere = tmp_path / "elsewhere.png"
    for edit in ({"output": str(elsewhere)}, {"content": str(photo)}, {"style": [str(painting)]},
                 {"work_dir": str(tmp_path)}):
        (folder / "job.json").write_text(json.dumps({"table": {**good, **edit}}))
        assert servework.main([str(folder)]) == 1
        said = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert said["status"] == "failed" and "outside the studio" in said["error"], said
        assert not elsewhere.exists() and not (folder / "result.png").exists()
    (folder / "job.json").write_text(json.dumps({"table": good}))   # the same job, unedited, runs
    assert servework.main([str(folder)]) == 0 and (folder / "result.png").is_file()


def test_a_fitted_style_file_is_a_style_the_page_can_use(server, photo, painting, tmp_path):
    import hires
    from hires.fast import hstyle
    from test_stylefit import guess_style
    fitted = hstyle.save(guess_style(painting), tmp_path / "mine.hstyle")
    small = tmp_path / "small.jpg"
    pyvips.Image.thumbnail(str(photo), 320).jpegsave(str(small))
    r = post(server, "/api/preview", {"content": small, "style": fitted}, strength=1)
    assert r.status_code == 200, r.text
    ref = hires.render(small, str(fitted), method="fast", multiscale=False, fast_size=1024).image
    assert np.abs(pixels(r.content).astype(float) / 255 - ref).mean() < 0.02
    fake = tmp_path / "fake.hstyle"
    fake.write_bytes(painting.read_bytes())     # a JPEG named .hstyle
    r = post(server, "/api/uploads", {"style": fake})
    assert r.status_code == 400 and "fitted style" in r.json()["error"]


def test_a_link_planted_in_a_job_folder_is_never_served(server, photo, painting, tmp_path):
    """The files the server sends are hires' own in the job's folder: a link put at a result's or a
    picture's name (the folder is state on disk) is not followed."""
    job_id = post(server, "/api/jobs", {"content": photo, "style": painting}, method="fast", size="160x100").json()["id"]
    record = server.wait(job_id)
    assert record["status"] == "done" and server.http.get(f"/api/jobs/{job_id}/result").status_code == 200
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not for the web")
    result = server.data_dir / "jobs" / job_id / record["output"]
    result.unlink()
    result.symlink_to(secret)
    assert server.http.get(f"/api/jobs/{job_id}/result").status_code == 404


# ---------------------------------------------------------------- other sites, other names, failure paths

def _peak_rss(pid: int) -> int:
    """A process's peak resident memory (VmHWM), bytes."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_other_sites_pages_and_names_are_refused(server, photo, painting):
    """A page of another site open in the user's browser can post forms and fetch with its own
    Origin, and reach the API under its own name by rebinding DNS: both are refused, nothing is
    queued or removed; the studio's own page (its Origin) and scripts (no Origin) pass."""
    own = server.url
    evil = {"Origin": "http://evil.example"}
    files = [("content", (photo.name, photo.read_bytes())), ("style", (painting.name, painting.read_bytes()))]
    for headers in (evil, {"Origin": "null"}, {"Referer": "http://evil.example/page.html"}):
        r = server.http.post("/api/jobs", files=files, data={"method": "fast", "size": "160x100"}, headers=headers)
        assert r.status_code == 403 and "another site" in r.json()["error"], r.text
    assert server.http.get("/api/jobs").json() == []
    r = server.http.post("/api/jobs", files=files, data={"method": "fast", "size": "160x100"}, headers={"Origin": own})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    server.wait(job_id)
    assert server.http.delete(f"/api/jobs/{job_id}", headers=evil).status_code == 403
    assert server.job(job_id)["status"] == "done"
    port = own.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}"):
        r = server.http.get("/api/jobs", headers={"Host": host})
        assert r.status_code == 403 and "answers to" in r.json()["error"], (host, r.text)
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert server.http.get("/api/jobs", headers={"Host": host}).status_code == 200, host
    assert server.http.delete(f"/api/jobs/{job_id}").json()["removed"] is True   # (a script, no Origin)


def test_a_crafted_fitted_style_upload_is_refused_inside_the_servers_budget(tmp_path, painting):
    """Every crafted .hstyle of tests/crafted.py sent to the studio: a one-line 400 each, nothing
    kept, and the server's peak resident memory under its --memory (a zip bomb took it to 6.5 GiB
    of its 2 GiB)."""
    import crafted
    from test_stylefit import guess_style
    good = crafted.members(guess_style(painting))
    srv = Server(tmp_path / "studio", "--memory", "1GiB")
    try:
        for kind, (make, _) in crafted.CRAFTED.items():
            path = tmp_path / "mine.hstyle"
            path.write_bytes(make(dict(good)))
            r = post(srv, "/api/uploads", {"style": path})
            assert r.status_code == 400, (kind, r.status_code, r.text)
            assert "\n" not in r.json()["error"] and "\x1b" not in r.json()["error"], kind
        assert _peak_rss(srv.proc.pid) < 1 << 30, f"peak {_peak_rss(srv.proc.pid) / 2**30:.2f} GiB"
        assert os.listdir(tmp_path / "studio" / "uploads") == []
    finally:
        srv.stop()


def test_the_studios_failure_paths_are_one_line_and_leave_nothing(tmp_path, photo, painting):
    """A non-ASCII token, a preset given as a file of the server's, an image whose header claims
    10^10 pixels: each a one-line refusal, the image not kept, no traceback in the server's log."""
    import struct
    import zlib
    token = "s3cret-token-of-24-chars"
    srv = Server(tmp_path / "studio", "--token", token)
    auth = {"Authorization": f"Bearer {token}"}
    try:
        r = srv.http.get("/api/jobs", headers={"Authorization": "Bearer \u00e9".encode()})
        assert r.status_code == 401 and r.json() == {"error": "this server needs its token"}
        assert srv.http.get("/api/jobs?token=%C3%A9").status_code == 401
        settings = tmp_path / "some.toml"
        settings.write_text('iterations = [1]\n')
        files = [("content", (photo.name, photo.read_bytes())), ("style", (painting.name, painting.read_bytes()))]
        r = srv.http.post("/api/plan", files=files, data={"preset": str(settings)}, headers=auth)
        assert r.status_code == 400 and "is not one of hires' presets" in r.json()["error"], r.text

        def chunk(kind: bytes, body: bytes) -> bytes:
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        kept = sorted(os.listdir(tmp_path / "studio" / "uploads"))   # (the plan's photo and painting)
        huge = tmp_path / "huge.png"
        huge.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
                         + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))
        r = srv.http.post("/api/uploads", files=[("content", ("huge.png", huge.read_bytes()))], headers=auth)
        assert r.status_code == 400 and "100000x100000" in r.json()["error"] and "studio" not in r.json()["error"][:8]
        assert ".incoming" not in r.json()["error"]
        assert sorted(os.listdir(tmp_path / "studio" / "uploads")) == kept
        assert os.listdir(tmp_path / "studio" / "jobs") == []
        _hang_up_mid_upload(srv, token)
        assert sorted(os.listdir(tmp_path / "studio" / "uploads")) == kept
    finally:
        srv.stop()
    log = srv.stderr_text()
    assert "Traceback" not in log and log.count("a client went away during POST /api/uploads") == 1, log


def _hang_up_mid_upload(srv: Server, token: str) -> None:
    """Send half of a multipart upload's body, then close the connection."""
    import socket
    from urllib.parse import urlsplit
    url = urlsplit(srv.url)
    head = ("--b\r\nContent-Disposition: form-data; name=\"content\"; filename=\"a.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + b"\xff\xd8\xff" + bytes(200_000)
    with socket.create_connection((url.hostname, url.port)) as s:
        s.sendall((f"POST /api/uploads HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {token}\r\n"
                   f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000000\r\n\r\n").encode() + head)
        time.sleep(0.5)
    deadline = time.monotonic() + 10
    while "a client went away" not in srv.stderr_text() and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_full_disk_answers_507_and_leaves_no_staged_upload(tmp_path, full_disk, photo):
    """The data folder on a 2 MiB disk and a 3 MiB upload: 507 in one line, no ``.incoming-*``
    file left to keep the disk full, and the next upload that fits works."""
    srv = Server(full_disk / "studio", log=tmp_path / "server.log")
    try:
        big = tmp_path / "big.png"
        pyvips.Image.new_from_array(np.random.default_rng(0).integers(0, 255, (1100, 1100, 3), dtype=np.uint8)
                                    ).pngsave(str(big), compression=0)
        assert big.stat().st_size > 3 << 20
        r = post(srv, "/api/uploads", {"content": big})
        assert r.status_code == 507 and "disk is full" in r.json()["error"], r.text
        assert os.listdir(full_disk / "studio" / "uploads") == []
        small = tmp_path / "small.jpg"
        pyvips.Image.thumbnail(str(photo), 320).jpegsave(str(small))
        r = post(srv, "/api/uploads", {"content": small})
        assert r.status_code == 201, r.text
    finally:
        srv.stop()
    assert "Traceback" not in srv.stderr_text()


def test_previews_and_plans_asked_together_leave_the_server_running(tmp_path, monkeypatch, photo, painting):
    """The page asks for a preview and a plan at once, and for another plan as the size is typed:
    two plans measuring this machine ran numba's parallel kernels on two threads of the server,
    whose threading layer then ended the whole process ("Concurrent access has been detected"):
    the page said "Failed to fetch" and its render never finished (the browser test's failures on
    busy CI machines, where the first plan's measuring takes long).  Now one computation runs at a
    time."""
    small = tmp_path / "small.jpg"
    pyvips.Image.thumbnail(str(photo), 1024).jpegsave(str(small))   # (the page's preview size)
    monkeypatch.setenv("HIRES_CACHE_DIR", str(tmp_path / "fresh-cache"))   # the first plan measures this machine
    srv = Server(tmp_path / "studio", "--memory", "3GiB")
    try:
        kept = [post(srv, "/api/uploads", {field: p}).json()[0]["upload"]
                for field, p in (("content", small), ("style", painting))]
        answers = []

        def ask(path, **fields):
            answers.append(srv.http.post(path, data={"content_upload": kept[0], "style_upload": kept[1], **fields}))
        for size in ("1100x688",):
            threads = [threading.Thread(target=ask, args=("/api/preview",), kwargs={"strength": "0.5"}),
                       *(threading.Thread(target=ask, args=("/api/plan",), kwargs={"method": "optimise", "size": size})
                         for _ in range(2))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert [a.status_code for a in answers] == [200] * 3, [a.text[:200] for a in answers]
        assert srv.proc.poll() is None
    finally:
        srv.stop()
    assert "Concurrent access" not in srv.stderr_text()


def test_a_restarted_server_queues_again_what_was_queued_or_running_quick(tmp_path):
    """The quick twin of ``test_a_restarted_server_resumes_the_render_it_was_killed_in`` (its queue
    alone, in process; the render's own resume is tests/test_production.py's): the job records of a
    server that stopped mid-render are read back, the running and queued ones queued again (and so
    saved), the ended ones left as they were."""
    from hires.studio.jobrunner import Runner
    from hires.studio.studio import JobRecord, Studio
    studio = Studio.open(tmp_path / "studio")
    for job_id, status in (("a" * 16, "running"), ("b" * 16, "queued"), ("c" * 16, "done"), ("d" * 16, "failed")):
        studio.job_dir(job_id).mkdir()
        studio.save(JobRecord(job_id, {"content": "x"}, status=status))
    runner = Runner(Studio.open(tmp_path / "studio"))
    runner.restore()
    assert {i: r.status for i, r in runner.records.items()} == {
        "a" * 16: "queued", "b" * 16: "queued", "c" * 16: "done", "d" * 16: "failed"}
    assert studio.load("a" * 16).status == "queued" and runner.wake.is_set()


FAKE_RENDER = """
import json, sys, time
from pathlib import Path
spans, folder = Path(sys.argv[1]), Path(sys.argv[2])
with open(spans, "a") as f:
    f.write(f"start {folder.name} {time.time()}\\n")
time.sleep(0.3)
print(json.dumps({"event": "level", "level": 0, "levels": 1}), file=sys.stderr, flush=True)
with open(spans, "a") as f:
    f.write(f"end {folder.name} {time.time()}\\n")
print(json.dumps({"status": "done", "output": str(folder / "out.png")}))
"""


def test_concurrent_submissions_queue_and_render_one_at_a_time_quick(tmp_path, monkeypatch):
    """The quick twin of ``test_concurrent_submissions_queue_and_render_one_at_a_time`` (the queue in
    process, each render a process that takes 0.3 s): jobs added while another renders all end done,
    their render processes one after another, never two at once."""
    import asyncio
    from hires.studio import jobrunner
    from hires.studio.jobrunner import Runner
    from hires.studio.studio import JobRecord, Studio
    studio = Studio.open(tmp_path / "studio")
    runner = Runner(studio)
    real_exec = asyncio.create_subprocess_exec
    monkeypatch.setattr(jobrunner.asyncio, "create_subprocess_exec",
                        lambda exe, *args, **kw: real_exec(exe, "-c", FAKE_RENDER, tmp_path / "spans.txt", args[-1], **kw))

    async def main():
        worker = asyncio.create_task(runner.run_forever())
        ids = []
        for n in range(4):
            job_id = studio.new_id()
            studio.job_dir(job_id).mkdir()
            runner.add(JobRecord(job_id, {"memory": "1GiB"}))
            ids.append(job_id)
            await asyncio.sleep(0.1 * n)   # the later ones while one renders
        while any(runner.records[i].status in ("queued", "running") for i in ids):
            await asyncio.sleep(0.05)
        worker.cancel()
        return ids
    ids = asyncio.run(asyncio.wait_for(main(), 60))
    assert [studio.load(i).status for i in ids] == ["done"] * 4
    events_ = [line.split() for line in (tmp_path / "spans.txt").read_text().splitlines()]
    assert sorted(name for kind, name, _ in events_ if kind == "start") == sorted(ids)
    ordered = sorted(events_, key=lambda e: float(e[2]))
    assert [kind for kind, _, _ in ordered] == ["start", "end"] * 4, ordered   # never two at once


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")   # (httpx2: same API)
def test_previews_and_plans_asked_together_run_one_at_a_time_quick(tmp_path, monkeypatch, painting):
    """The quick twin of ``test_previews_and_plans_asked_together_leave_the_server_running`` (the app
    in process, a 256 px photo and a 320x200 plan): a preview and two plans asked at once are all
    answered, and no two of their computations (the fast render, the plan that measures this
    machine) ever run at the same time, the lock that keeps numba's threading layer entered once."""
    from starlette.testclient import TestClient
    from hires import api
    from hires.studio.serve import build_app
    from hires.studio.servelimits import Limits
    from hires.studio.studio import Studio
    running, overlaps = [], []

    def alone(fn):
        def wrapped(*a, **kw):
            running.append(fn.__name__)
            overlaps.append(len(running))
            try:
                time.sleep(0.2)   # long enough for the others to arrive
                return fn(*a, **kw)
            finally:
                running.remove(fn.__name__)
        return wrapped
    monkeypatch.setattr(api, "render", alone(api.render))
    monkeypatch.setattr(api, "plan_of", alone(api.plan_of))
    small = tmp_path / "small.jpg"
    pyvips.Image.thumbnail(str(data("contents/chelsea.png", "chelsea.png")), 256).jpegsave(str(small))
    app = build_app(Studio.open(tmp_path / "studio"), Limits(3 << 30, 50 << 20))
    origin = {"Origin": "http://127.0.0.1"}
    with TestClient(app, base_url="http://127.0.0.1") as client:
        kept = [client.post("/api/uploads", files={field: p.read_bytes()}, headers=origin).json()[0]["upload"]
                for field, p in (("content", small), ("style", painting))]
        form = {"content_upload": kept[0], "style_upload": kept[1]}
        answers = []
        asks = [("/api/preview", {"strength": "0.5"}), *(("/api/plan", {"method": "optimise", "size": "320x200"}),) * 2]
        threads = [threading.Thread(target=lambda p=p, f=f: answers.append(client.post(p, data={**form, **f},
                                                                                          headers=origin)))
                   for p, f in asks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(a.status_code for a in answers) == [200] * 3, [a.text[:200] for a in answers]
    assert len(overlaps) == 3 and max(overlaps) == 1, overlaps


def test_a_queued_job_is_cancelled_and_a_running_render_interrupted_quick(tmp_path):
    """The quick twin of the optimised render's cancel (its queue alone, in process): a queued job is
    cancelled at once; a running one's render is sent SIGINT (Ctrl-C: it keeps what it finished) and
    the job ends cancelled, not failed, when the render process ends."""
    from hires.studio.jobrunner import Runner
    from hires.studio.studio import JobRecord, Studio
    studio = Studio.open(tmp_path / "studio")
    runner = Runner(studio)
    waiting, running = JobRecord("a" * 16, {}), JobRecord("b" * 16, {}, status="running")
    for r in (waiting, running):
        studio.job_dir(r.id).mkdir()
        runner.add(r)
    running.status = "running"
    signals = []
    runner.current = (running.id, type("Render", (), {"send_signal": lambda self, sig: signals.append(sig)})())
    assert runner.cancel(waiting.id).status == "cancelled" and studio.load(waiting.id).status == "cancelled"
    runner.cancel(running.id)
    assert signals == [signal.SIGINT]
    runner._finish(running, b"", -signal.SIGINT, "hires: interrupted", 1.0)
    assert running.status == "cancelled" and studio.load(running.id).status == "cancelled"
