"""Fixtures of the real-browser tests (``make test-browser``): Debian's chromium driven by Playwright for Python.

Playwright's own browser download cannot work offline, so the tests launch the system's chromium
(``$BDLIB_CHROMIUM``, default ``/usr/bin/chromium``; ``make test-browser`` installs it with apt when missing).
The built site (``$BDLIB_SITE``, default ``notebooks/_build/book/html``: ``make book``) is served on 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from panel_checks import serve

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("BDLIB_CHROMIUM", "/usr/bin/chromium")
    if not Path(path).exists():
        pytest.fail(f"no chromium at {path}: `make test-browser` installs Debian's (apt-get install -y chromium)")
    return path


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture()
def page(browser) -> Iterator:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture(scope="session")
def site_dir() -> Path:
    path = Path(os.environ.get("BDLIB_SITE", REPO_ROOT / "notebooks" / "_build" / "book" / "html"))
    if not (path / "index.html").exists():
        pytest.fail(f"no built site at {path}: run `make book` first (or set BDLIB_SITE)")
    return path


@pytest.fixture(scope="session")
def site_url(site_dir: Path) -> Iterator[str]:
    server, url = serve(site_dir)
    yield url
    server.shutdown()
