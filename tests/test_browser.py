"""The studio's page in a real browser: Debian's chromium, headless, driven through its chromedriver
by Selenium (nothing downloaded; `.ci/run` installs both).  Screenshots go to out/browser/ for a look.

Without chromium the tests are skipped on a developer's machine and fail under CI (``CI`` set), so
that a CI run cannot pass without having driven the page."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import pyvips

from conftest import BUNDLED, ROOT, SHARED, data
from studio import Server

pytest.importorskip("starlette")
pytestmark = pytest.mark.browser   # `make test` runs these whatever their time (the page's only check)
SHOTS = ROOT / "out" / "browser"


@pytest.fixture
def browser(tmp_path):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            "Debian's chromium and chromium-driver are needed: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1280,1100"):
        options.add_argument(flag)
    b = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    b.implicitly_wait(0)
    yield b
    b.quit()


@pytest.fixture
def page(tmp_path, browser):
    server = Server(tmp_path / "studio", "--memory", "3GiB")
    browser.get(server.url + "/")
    yield browser, server
    server.stop()


def wait_for(browser, condition, timeout: float = 60, what: str = ""):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = browser.execute_script(f"return ({condition});")
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what or condition} not after {timeout} s; the page's messages: " + " | ".join(
        f"{i}: {text(browser, i)!r}" for i in ("progress", "plan", "preview-status", "photo-note", "style-note")))


def wait_while_it_moves(browser, condition, what: str, still: float = 240, timeout: float = 900):
    """Wait for ``condition`` while the page's progress line keeps changing: a render on a busy
    machine with a cold cache takes minutes, and what fails it is a page that stops moving (for
    ``still`` seconds), not a fixed deadline (120 s failed CI machines that were merely busy)."""
    t0 = last_change = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        value = browser.execute_script(f"return ({condition});")
        if value:
            return value
        now = text(browser, "progress")
        if now != last:
            last, last_change = now, time.monotonic()
        assert time.monotonic() - last_change < still, f"{what}: the page stood at {last!r} for {still} s"
        time.sleep(0.1)
    raise AssertionError(f"{what} not after {timeout} s; the page at {last!r}")


def text(browser, element_id: str) -> str:
    return browser.execute_script(f"return document.getElementById('{element_id}').textContent;")


def shot(browser, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{name}.png"))


def choose_photo(browser, photo) -> None:
    browser.find_element("id", "photo-input").send_keys(str(photo))
    wait_for(browser, "document.getElementById('photo-note').textContent.includes(' px')", what="the photo")


def large_photo(tmp_path) -> Path:
    """A 2560x1600 photo (larger than the page's 1024 px previews): the shared forest photo, or in a
    plain clone the bundled coffee photo enlarged to that size."""
    shared = SHARED / "contents" / "forest_path_2560x1600.jpg"
    if shared.exists():
        return shared
    out = tmp_path / "photo_2560x1600.jpg"
    im = pyvips.Image.new_from_file(str(BUNDLED / "photos" / "coffee.jpg"))
    im.resize(2560 / im.width).crop(0, 0, 2560, 1600).jpegsave(str(out), Q=90)
    return out


def test_pick_a_photo_and_styles_and_the_slider_repaints_the_preview(page, tmp_path):
    browser, _ = page
    wait_for(browser, "document.querySelectorAll('#builtins img').length == 26 && "
                      "[...document.querySelectorAll('#builtins img')].every(i => i.complete && i.naturalWidth > 0)",
             what="the 26 built-in styles' thumbnails")
    choose_photo(browser, large_photo(tmp_path))
    assert browser.find_element("id", "size").get_attribute("value") == "2560x1600"
    browser.find_element("css selector", "#builtins button[data-index='3']").click()
    wait_for(browser, "document.getElementById('preview-status').textContent.includes('built-in style 3')",
             what="a preview with built-in style 3")
    first = browser.execute_script("return document.getElementById('preview').src;")
    width = browser.execute_script("return document.getElementById('preview').naturalWidth;")
    assert width == 1024   # the photo downscaled in the browser for previews
    browser.find_element("id", "style-input").send_keys(str(data("styles/munch_the_scream_1893.jpg",
                                                                 "vangogh_starry_night_1889.jpg")))
    wait_for(browser, "document.getElementById('preview-status').textContent.includes('strength 1.00')",
             what="a preview of the painting")
    browser.execute_script("const s = document.getElementById('strength'); s.value = 0.4; "
                           "s.dispatchEvent(new Event('input'));")
    status = wait_for(browser, "document.getElementById('preview-status').textContent.includes('strength 0.4') && "
                               "document.getElementById('preview-status').textContent", what="the slider's preview")
    assert browser.execute_script("return document.getElementById('preview').src;") != first
    seconds = float(status.rsplit(",", 1)[1].strip().removesuffix(" s"))
    assert seconds > 0
    wait_for(browser, "document.getElementById('plan').textContent.includes('peak')", what="the plan")
    shot(browser, "look")


def test_render_shows_progress_and_the_picture_then_downloads(page, tmp_path):
    browser, server = page
    choose_photo(browser, large_photo(tmp_path))
    browser.find_element("id", "style-input").send_keys(str(data("styles/munch_the_scream_1893.jpg",
                                                                 "vangogh_starry_night_1889.jpg")))
    wait_for(browser, "!document.getElementById('render').disabled", what="the Render button")
    size = browser.find_element("id", "size")
    size.clear()
    size.send_keys("1100x688")   # the draft schedule: painted up to 1024 px, then 8 iterations
    browser.execute_script("document.getElementById('method').value = 'optimise';"
                           "document.getElementById('preset').value = 'draft';"
                           "document.getElementById('format').value = 'tif';"
                           "document.getElementById('bit-depth').value = '16';")
    browser.find_element("id", "render").click()
    wait_for(browser, "document.getElementById('progress').textContent.startsWith('running: level')",
             what="the render's level")
    wait_for(browser, "document.getElementById('live-image').naturalWidth > 0", what="the live picture")
    shot(browser, "render")
    link = wait_while_it_moves(browser, "!document.getElementById('download').hidden && "
                                        "document.getElementById('download').href", what="the download link")
    assert "done" in text(browser, "progress")
    got = server.http.get(link.removeprefix(server.url))
    im = pyvips.Image.new_from_buffer(got.content, "")
    assert (im.width, im.height, im.format) == (1100, 688, "ushort")
    rows = browser.execute_script("return document.querySelectorAll('#jobs tbody tr').length;")
    assert rows == 1 and "done" in browser.find_element("css selector", "#jobs tbody tr").text
    shot(browser, "done")
