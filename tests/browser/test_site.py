"""The built course website, in a real browser with no kernel anywhere: every page loads cleanly and offline,
every picture loads, and the λ and k panels change their picture when the slider is dragged or arrow-keyed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from panel_checks import PageWatch, broken_images, check_panel_follows_slider, serve

REPO_ROOT = Path(__file__).resolve().parents[2]
ANIMATIONS_JS = """() => Array.from(document.images)
  .filter(i => /[.](gif|webp)$/.test(i.src)).map(i => [i.src, i.naturalWidth])"""
LESSONS_WITH_PANELS = ("04_local_clip_guidance.html", "05_blended_diffusion.html")


def pages(site_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(site_dir)) for p in site_dir.glob("*.html"))


def test_every_page_loads_offline_without_errors_or_missing_images(page, site_dir, site_url):
    names = pages(site_dir)
    lessons = [n for n in names if re.match(r"\d\d_", n)]
    sources = sorted(p.stem for p in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    assert [n.removesuffix(".html") for n in lessons] == sources, "a page per lesson"
    assert {"index.html", "benchmarks.html", "README.html"} <= set(names), names
    problems = {}
    for name in names:
        tab = page.context.new_page()  # a fresh tab per page: each has its own listeners
        watch = PageWatch(site_url).attach(tab)
        tab.goto(site_url + name, wait_until="networkidle")
        found = watch.errors + [f"image did not load: {src}" for src in broken_images(tab)]
        if found:
            problems[name] = found
        tab.close()
    assert not problems, json.dumps(problems, indent=1, ensure_ascii=False)


def test_lesson_pages_show_their_outputs(page, site_dir, site_url):
    for name in [n for n in pages(site_dir) if re.match(r"\d\d_", n)]:
        page.goto(site_url + name, wait_until="networkidle")
        outputs = page.locator(".cell_output").count()
        pictures = page.locator(".cell_output img").count()
        assert outputs > 0 and pictures > 0, f"{name}: {outputs} outputs, {pictures} pictures"


@pytest.mark.parametrize("name", LESSONS_WITH_PANELS)
def test_panels_change_their_picture_without_a_kernel(page, site_url, name):
    watch = PageWatch(site_url).attach(page)
    page.goto(site_url + name, wait_until="networkidle")
    panels = page.locator(".bdlib-panel")
    panels.first.wait_for(timeout=15000)
    assert panels.count() >= 1
    for i in range(panels.count()):
        panel = panels.nth(i)
        check_panel_follows_slider(page, panel)
        box = panel.locator("input[type=text]").first  # the prompt box shows its whole text
        assert box.evaluate("e => e.scrollWidth <= e.clientWidth"), f"{name}: the prompt box cuts its text off"
    assert not watch.errors, watch.errors


def test_the_check_fails_when_a_panels_picture_does_not_change(page, site_dir, tmp_path):
    """The same check on a copy of lesson 05 whose slider-to-picture link is cut: it must fail."""
    copy = tmp_path / "site"
    shutil.copytree(site_dir, copy, ignore=shutil.ignore_patterns("_images", "_sources"))
    lesson = copy / LESSONS_WITH_PANELS[1]
    html = lesson.read_text(encoding="utf-8")
    source = re.search(r'"source": ?(\["IPY_MODEL_\w+", ?"index"\])', html)
    assert source, "found no link from a slider's index in the page's widget state"
    cut = re.sub(r'\["IPY_MODEL_\w+", ?"selected_index"\]', source.group(1).replace("\\", "\\\\"), html)
    assert cut != html, "found no link to the stack's selected index in the page's widget state"
    lesson.write_text(cut, encoding="utf-8")  # the slider's link now points back at the slider, not the pictures
    server, url = serve(copy)
    try:
        page.goto(url + lesson.name, wait_until="networkidle")
        panel = page.locator(".bdlib-panel").first
        panel.wait_for(timeout=15000)
        with pytest.raises(AssertionError, match="the picture did not change"):
            check_panel_follows_slider(page, panel)
    finally:
        server.shutdown()


def test_animations_play_and_stay_small(page, site_dir, site_url):
    """Every animated image of the lessons: a GIF or WebP of several frames, under 2 MB, shown ≥ 128 px wide."""
    from PIL import Image

    found = []
    for name in [n for n in pages(site_dir) if re.match(r"\d\d_", n)]:
        page.goto(site_url + name, wait_until="networkidle")
        for src, width in page.evaluate(ANIMATIONS_JS):
            path = site_dir / src.removeprefix(site_url)
            with Image.open(path) as animation:
                frames = getattr(animation, "n_frames", 1)
            found.append((name, path.name, frames, path.stat().st_size, width))
            assert frames > 1 and width >= 128, f"{name}: {path.name} has {frames} frame(s), {width} px"
            assert path.stat().st_size < 2 * 1024 * 1024, f"{name}: {path.name} is {path.stat().st_size} bytes"
    assert found, "no lesson shows an animation"
    print("\n".join(f"{n}: {f} {k} frames, {s / 1024:.0f} KiB, {w} px wide" for n, f, k, s, w in found))


UNTYPESET_JS = """async () => {
  await window.MathJax.startup.promise;
  const math = Array.from(document.querySelectorAll("span.math, div.math"));
  return [math.length, math.filter(m => !m.querySelector("mjx-container")).map(m => m.textContent.slice(0, 40))];
}"""


def test_every_formula_is_typeset(page, site_dir, site_url):
    """MathJax draws every formula of every page (none left as raw TeX such as \\(k\\))."""
    raw = {}
    total = 0
    for name in pages(site_dir):
        page.goto(site_url + name, wait_until="networkidle")
        if not page.evaluate("() => !!(window.MathJax && window.MathJax.startup)"):
            continue  # a page with no formula loads no MathJax
        count, untypeset = page.evaluate(UNTYPESET_JS)
        total += count
        if untypeset:
            raw[name] = untypeset[:3] + ([f"... {len(untypeset)} in all"] if len(untypeset) > 3 else [])
    assert total > 100, f"only {total} formulas found on the whole site"
    assert not raw, json.dumps(raw, indent=1, ensure_ascii=False)


def test_printed_tables_are_tables(page, site_dir, site_url):
    """A lesson's printed table (Markdown output of ``bdlib.course.viz.table``) is drawn as a table, not as a
    paragraph of pipes."""
    for name in [n for n in pages(site_dir) if re.match(r"\d\d_", n)]:
        page.goto(site_url + name, wait_until="networkidle")
        piped = page.evaluate("""() => Array.from(document.querySelectorAll(".cell_output p"))
            .map(p => p.textContent).filter(t => (t.match(/[|]/g) || []).length >= 6).map(t => t.slice(0, 60))""")
        assert not piped, f"{name}: tables shown as text: {piped[:2]}"
        if name.startswith("05_"):
            assert page.locator(".cell_output table").count() >= 3, f"{name}: its printed tables are missing"


def test_figures_keep_their_pixels(page, site_dir, site_url):
    """Every output picture is shown at its own size in a 1400-px-wide window (show_grid draws each image at
    ≥ 128 px; a page that shrinks a figure to fit its column would undo that)."""
    shrunk = {}
    for name in [n for n in pages(site_dir) if re.match(r"\d\d_", n)]:
        page.goto(site_url + name, wait_until="networkidle")
        sizes = page.evaluate("""() => Array.from(document.querySelectorAll(".cell_output img"))
            .filter(i => i.naturalWidth > 0).map(i => [i.naturalWidth, i.getBoundingClientRect().width])""")
        small = [f"{natural} px shown at {shown:.0f}" for natural, shown in sizes if shown < 0.98 * natural]
        if small:
            shrunk[name] = small
    assert not shrunk, json.dumps(shrunk, indent=1)
