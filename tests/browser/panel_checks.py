"""What the browser tests look at, as a person would: problems a page reports, pictures, and a panel's slider
moved with the mouse and with the arrow keys."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

# A hash of the pixels of the panel's visible picture (an <img> whose src is a blob: URL of the PNG in the widget
# state): a new blob of the same picture hashes the same, a different picture does not.
PICTURE_HASH_JS = """(panel) => {
  const img = Array.from(panel.querySelectorAll('img')).find(i => i.offsetParent !== null && i.naturalWidth > 0);
  if (!img) return null;
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let h = 2166136261;
  for (let i = 0; i < data.length; i += 1) { h = Math.imul(h ^ data[i], 16777619) >>> 0; }
  return `${canvas.width}x${canvas.height}:${h}`;
}"""

BROKEN_IMAGES_JS = """() => Array.from(document.images)
  .filter(i => !(i.complete && i.naturalWidth > 0))
  .map(i => i.currentSrc || i.src || i.outerHTML.slice(0, 120))"""


@dataclass
class PageWatch:
    """Everything a page reports that a reader would count as broken: console errors, uncaught exceptions, failed
    or refused requests, and any request that leaves the local server (the site must work offline)."""

    base: str
    errors: list[str] = field(default_factory=list)

    def attach(self, page) -> PageWatch:
        local = urlparse(self.base).netloc
        page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught exception: {e}"))
        page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url} ({r.failure})"))
        page.on("response", lambda r: self.errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)

        def remote(request) -> None:
            url = urlparse(request.url)
            if url.scheme in ("http", "https", "ws", "wss") and url.netloc != local:
                self.errors.append(f"remote request: {request.url}")

        page.on("request", remote)
        return self


def broken_images(page) -> list[str]:
    """The images on the page that did not load (after scrolling through it, so lazy images load too)."""
    page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_timeout(300)
    page.evaluate("() => window.scrollTo(0, 0)")
    return page.evaluate(BROKEN_IMAGES_JS)


def picture(panel) -> str | None:
    """The hash of the panel's visible picture."""
    return panel.evaluate(PICTURE_HASH_JS)


def readout(panel) -> str:
    """The slider's value as the panel shows it."""
    return panel.locator(".widget-readout").first.inner_text().strip()


def wait_for_new_picture(panel, before: str | None, timeout: float = 10.0) -> str | None:
    """The panel's picture once it differs from ``before`` (or the unchanged one after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    now = picture(panel)
    while now == before and time.monotonic() < deadline:
        time.sleep(0.1)
        now = picture(panel)
    return now


def drag_slider(page, panel, to: str) -> None:
    """Press the mouse on the slider's handle, move it to the ``to`` ("left"/"right") end of the track, release."""
    handle = panel.locator(".noUi-handle").first
    track = panel.locator(".noUi-target").first
    handle.scroll_into_view_if_needed()
    hb, tb = handle.bounding_box(), track.bounding_box()
    y = hb["y"] + hb["height"] / 2
    page.mouse.move(hb["x"] + hb["width"] / 2, y)
    page.mouse.down()
    end = tb["x"] - 20 if to == "left" else tb["x"] + tb["width"] + 20
    page.mouse.move(end, y, steps=12)
    page.mouse.up()


def press_on_slider(panel, key: str) -> None:
    """Focus the slider's handle (as Tab would) and press ``key``."""
    handle = panel.locator(".noUi-handle").first
    handle.focus()
    handle.press(key)


def slider_position(panel) -> tuple[float, float, float]:
    """(now, min, max) of the slider's handle, from its ARIA attributes."""
    handle = panel.locator(".noUi-handle").first
    return tuple(float(handle.get_attribute(f"aria-value{name}")) for name in ("now", "min", "max"))


def check_panel_follows_slider(page, panel) -> list[str]:
    """Drag the slider to its far end, then press ← and → on it: after each move the readout and the picture
    must change. Returns what was seen; raises AssertionError naming the move whose picture stayed the same."""
    panel.scroll_into_view_if_needed()
    now, _, top = slider_position(panel)
    end, away, home = ("right", "ArrowLeft", "ArrowRight") if now < top else ("left", "ArrowRight", "ArrowLeft")
    moves = [
        (f"drag to the {end} end", lambda: drag_slider(page, panel, end)),
        (f"key {away}", lambda: press_on_slider(panel, away)),
        (f"key {home}", lambda: press_on_slider(panel, home)),
    ]
    value, shown = readout(panel), wait_for_new_picture(panel, None)  # the first picture, once it has loaded
    assert shown is not None, "the panel shows no picture"
    seen = []
    for name, move in moves:
        move()
        new_shown = wait_for_new_picture(panel, shown)
        new_value = readout(panel)
        assert new_value != value, f"{name}: the slider stayed at {value}"
        moved = f"{name}: the slider moved from {value} to {new_value}"
        assert new_shown != shown, f"{moved} but the picture did not change"
        seen.append(f"{name}: {value} -> {new_value}, new picture")
        value, shown = new_value, new_shown
    return seen


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no access log on the test's output
        pass


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A static file server for ``directory`` on 127.0.0.1 (a free port) and its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"
