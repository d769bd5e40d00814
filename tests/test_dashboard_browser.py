"""The live dashboard in a real headless browser: `defistress dashboard` serves on 127.0.0.1 (a free port), Debian's
Chromium driven by Playwright loads the page, a run started with the page's play button completes, and the price
chart then shows data (coloured lines on screen where the empty chart had only black text). The server is stopped here.

Chromium comes from Debian (`make test` installs it when missing; Playwright's own browser download fails on this
project's machines).
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("browser")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT_S = 180.0


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "the dashboard's browser test needs Debian's chromium, `apt-get install -y chromium` (make test does it)"
        )
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server() -> Iterator[str]:
    """`defistress dashboard` on 127.0.0.1 and a free port; stopped (and reaped) when the test ends."""
    port = _free_port()
    cli = Path(sys.executable).with_name("defistress")
    cmd = [str(cli), "dashboard", "eth-crash", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--accounts", "300", "--hours", "2.5", "--blocks-per-step", "150"]  # shocks at 2 h: 750 blocks, 5 steps
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"the dashboard server exited with {proc.returncode}:\n{log.read().decode()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the dashboard did not answer on {url} within {START_TIMEOUT_S:.0f} s")
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and nothing else
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


def _chart_png(page, caption: str, tries: int = 10) -> bytes:
    """A screenshot of the chart above `caption`; retried, since solara may replace the image while we look."""
    for attempt in range(tries):
        try:
            panel = page.locator("div").filter(has_text=caption).last
            return panel.locator("img").first.screenshot(timeout=20_000)
        except Exception:  # playwright's Error: the element was re-rendered (detached) meanwhile
            if attempt == tries - 1:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


def _coloured_pixels(png: bytes) -> int:
    """Pixels of a screenshot (PNG) that are clearly coloured (not white, grey or black)."""
    from matplotlib.image import imread

    rgb = imread(io.BytesIO(png), format="png")[..., :3]
    return int(((rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.25).sum())


def test_a_run_started_in_the_browser_completes_and_the_price_chart_shows_data(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is part of the dev install")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh user-data-dir
            executable_path=_chromium(),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = browser.new_page()
            page.goto(server, timeout=120_000)
            page.get_by_text("eth-crash, seed 1: ready, 750 blocks; press Step or play").wait_for(timeout=120_000)
            before = _coloured_pixels(_chart_png(page, "Prices: 0 blocks shown"))
            page.get_by_role("button", name="▶").click()
            page.get_by_text("block 750 of 750").wait_for(timeout=300_000)
            page.get_by_text("run complete").wait_for(timeout=30_000)
            page.get_by_text("Prices: 750 blocks shown").wait_for(timeout=60_000)
            after = _coloured_pixels(_chart_png(page, "Prices: 750 blocks shown"))
            # DEFISTRESS_DASHBOARD_SCREENSHOT=docs/img/dashboard.png refreshes the README's picture
            shot = os.environ.get("DEFISTRESS_DASHBOARD_SCREENSHOT") or str(tmp_path / "dashboard.png")
            page.screenshot(path=shot, full_page=False)
        finally:
            browser.close()
    assert before == 0  # the empty chart: black text on white
    assert after > 1000  # the price lines (matplotlib's default colours)
