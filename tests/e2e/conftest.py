"""A live uvicorn server on the test database and headless Debian Chromium via Playwright.

The server runs in a subprocess with the environment tests/conftest.py set up
(RLHF_DATABASE_URL, secret key, data dir), so it sees what `committed_db` commits.
"""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
REPO = Path(__file__).resolve().parent.parent.parent
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(engine) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app served by uvicorn on a free port; yields its base URL."""
    with serve() as base:
        yield base


@contextmanager
def serve(**settings: str) -> Iterator[str]:
    """uvicorn on a free port with the tests' environment and these RLHF_ settings."""
    port = _free_port()
    env = {**os.environ, **{f"RLHF_{k.upper()}": v for k, v in settings.items()}}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=REPO, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            if proc.poll() is not None:
                raise RuntimeError("the test server exited; see its output above")
            try:
                if httpx.get(f"{base}/login", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the test server did not start in 10 s")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def browser():  # type: ignore[no-untyped-def]
    """Headless Chromium from Debian (Playwright cannot download its own here)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"browser tests need {CHROMIUM} (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        ])
        yield b
        b.close()


@pytest.fixture
def open_page(browser, live_server):  # type: ignore[no-untyped-def]
    """open_page(user, viewport=LAPTOP): a logged-in page in its own browser context.

    Every page fails the test on a JavaScript error or a dialog (alert/confirm), which is
    also how the script-injection test sees that nothing ran.
    """
    from tests.factories import PASSWORD

    contexts, problems = [], []

    def _open(user, viewport=LAPTOP):  # type: ignore[no-untyped-def]
        ctx = browser.new_context(viewport=viewport, base_url=live_server)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(8000)
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
        page.goto("/login")
        page.fill("input[name=email]", user.email)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/login" not in url)
        return page

    _open.problems = problems  # type: ignore[attr-defined]
    yield _open
    for ctx in contexts:
        ctx.close()
    assert problems == [], problems


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """Save a full-page screenshot under tests/artifacts/ to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
