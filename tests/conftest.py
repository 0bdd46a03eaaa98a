"""Shared fixtures. Browser tests: a notebook served by Voila, driven by Playwright in Debian's chromium.

Usage in a test module::

    def test_something(voila, browser_page):
        url = voila("book/playground.ipynb")
        browser_page.goto(url)
        ...

Everything runs on 127.0.0.1 and nothing is downloaded: Playwright drives the system's `chromium`
(`apt-get install -y chromium`), so `playwright install` is never needed. Tests skip, saying why,
when chromium, voila or playwright is missing.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--no-sandbox",                      # runs as root in containers and CI
    "--disable-gpu",
    "--disable-dev-shm-usage",           # small /dev/shm in containers
    "--disable-background-networking",   # no update checks, no phoning home
    "--disable-extensions",
    "--no-first-run",
]
VOILA_START_TIMEOUT_S = 60
# nbval's kernels inherit this: they run the chapters' panels live (one drawing each). The static panels,
# precomputed over their grids, are the book build's work; test_browser_static.py checks them on the site.
os.environ.setdefault("SHAPLEY_CAMS_PANELS", "live")


KERNEL_START_ATTEMPTS = 3


def pytest_configure(config: pytest.Config) -> None:
    """nbval starts one kernel per notebook. Two kernels starting at once on two xdist workers can race for
    the same free ports, and one dies before replying to kernel_info (seen once in a CI rehearsal, with no
    error of the notebook's). Start kernels one at a time across workers (a file lock held only while a
    kernel starts), and start again, saying so, when one dies on the way up."""
    try:
        from nbval.plugin import IPyNbFile
    except ImportError:
        return
    start = IPyNbFile.setup
    lock_path = Path(tempfile.gettempdir()) / "shapley-cams-kernel-start.lock"

    def setup_one_at_a_time(self) -> None:
        for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
            with lock_path.open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    return start(self)
                except RuntimeError as error:
                    if attempt == KERNEL_START_ATTEMPTS:
                        raise
                    print(f"{self.fspath.basename}: kernel start {attempt} failed ({error}); starting again",
                          file=sys.stderr)

    IPyNbFile.setup = setup_one_at_a_time


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[object]:
    """A headless chromium (the system's), shared by the tests of one pytest worker."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("chromium is not on the PATH (Debian: apt-get install -y chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -r requirements.txt)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium_browser) -> Iterator[object]:
    """A fresh Playwright page (own context, so no state leaks between tests); 60 s timeouts."""
    context = chromium_browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(60_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def voila(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str | Path], str]]:
    """Factory: `voila("book/x.ipynb")` serves that notebook on 127.0.0.1 and returns its URL.

    Each server is stopped at the end of the test; its log is in the test's tmp_path (voila-<port>.log)
    and is printed when the server fails to start. One Voila test runs at a time across pytest-xdist
    workers (a file lock): when two Voila servers start kernels at once, one kernel often never
    connects and its page stays empty (3 of 4 tries here), while one at a time never stalled.
    """
    if shutil.which("voila") is None and not _importable("voila"):
        pytest.skip("voila is not installed (pip install -r requirements.txt)")
    lock = (tmp_path_factory.getbasetemp().parent / "voila.lock").open("w")  # shared by all workers
    fcntl.flock(lock, fcntl.LOCK_EX)
    servers: list[subprocess.Popen] = []

    def serve(notebook: str | Path) -> str:
        path = Path(notebook)
        path = path if path.is_absolute() else ROOT / path
        if not path.is_file():
            raise FileNotFoundError(f"no notebook at {path}")
        port = _free_port()
        log = tmp_path / f"voila-{port}.log"
        command = [sys.executable, "-m", "voila", str(path), "--no-browser", f"--port={port}",
                   "--Voila.ip=127.0.0.1", "--show_tracebacks=True"]
        with log.open("w") as log_file:
            # Own process group, so the kernels Voila starts are stopped with it.
            server = subprocess.Popen(command, cwd=path.parent, stdout=log_file,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        servers.append(server)
        deadline = time.monotonic() + VOILA_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"voila exited with {server.returncode}:\n{log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return f"http://127.0.0.1:{port}/"
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"voila did not listen on port {port} in {VOILA_START_TIMEOUT_S} s:\n"
                           f"{log.read_text()}")

    yield serve
    for server in servers:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    lock.close()  # releases the lock


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
