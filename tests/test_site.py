"""Checks of the built website (`jupyter-book build . -W -n --keep-going` writes `_build/html`).

The site must work offline: every script, style sheet and font comes from the vendored copies in
`assets/vendor/` (served as `_static/vendor/`), and no page shows a failed cell or stderr.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
VENDOR = ROOT / "assets" / "vendor"
STATIC_VENDOR = SITE / "_static" / "vendor"

pytestmark = pytest.mark.skipif(
    not (SITE / "index.html").is_file(),
    reason="the book is not built: run `jupyter-book build . -W -n --keep-going` first",
)

# Any URL on one of these hosts means the page needs the network.
CDN_URL = re.compile(
    r"""(?:https?:)?//[^\s"'<>()]*?(?:\bcdn\.|jsdelivr|unpkg|cdnjs|googleapis|gstatic)[^\s"'<>()]*""",
    re.IGNORECASE,
)
# What the browser fetches while loading a page: (tag, attribute), plus <link> of these kinds.
LOADING_ATTRIBUTES = {("script", "src"), ("img", "src"), ("iframe", "src"), ("source", "src"),
                      ("video", "src"), ("audio", "src"), ("embed", "src"), ("object", "data")}
LOADING_LINKS = {"stylesheet", "preload", "modulepreload", "icon", "shortcut", "prefetch"}
# Elements that never have a closing tag, so the parser's ancestor stack must not wait for one.
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}
# Files the pages reach only at run time (from inside the vendored scripts), so no page names them.
RUNTIME_ASSETS = [
    "mathjax/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff",
    "mathjax/output/chtml/fonts/woff-v2/MathJax_Math-Italic.woff",
    "mathjax/input/tex/extensions/boldsymbol.js",
    "html-manager/1551f4f60c37af51121f.woff2",  # Font Awesome solid, for widget icons
]


class Page(HTMLParser):
    """One built page: the URLs it loads, and its outputs with the classes of their ancestors."""

    def __init__(self, path: Path) -> None:
        super().__init__(convert_charrefs=True)
        self.path = path
        self.loads: list[str] = []
        self.outputs: list[tuple[set[str], set[str]]] = []  # (own classes, ancestors' classes)
        self._stack: list[tuple[str, set[str]]] = []
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        classes = set(attributes.get("class", "").split())
        if "output" in classes:
            ancestors = set().union(*(c for _, c in self._stack)) if self._stack else set()
            self.outputs.append((classes, ancestors))
        for name, value in attributes.items():
            if (tag, name) in LOADING_ATTRIBUTES and value:
                self.loads.append(value)
        if tag == "link" and LOADING_LINKS & set(attributes.get("rel", "").lower().split()):
            self.loads.append(attributes.get("href", ""))
        if tag not in VOID:
            self._stack.append((tag, classes))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self._stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self._stack) - 1, -1, -1):  # tolerate unclosed <p>, <li>, ...
            if self._stack[depth][0] == tag:
                del self._stack[depth:]
                return


def built_pages() -> list[Path]:
    if not SITE.is_dir():
        return []
    return sorted(p for p in SITE.rglob("*.html") if "_static" not in p.relative_to(SITE).parts)


def page_id(path: Path) -> str:
    return path.relative_to(SITE).as_posix()


PAGES = built_pages()


@pytest.fixture(scope="module", params=PAGES, ids=page_id)
def page(request: pytest.FixtureRequest) -> Page:
    return Page(request.param)


def test_book_has_pages() -> None:
    assert (SITE / "book" / "intro.html").is_file(), "the root page book/intro was not built"
    assert (SITE / "book" / "references.html").is_file(), "the references page was not built"


def test_no_cdn_anywhere_in_page(page: Page) -> None:
    found = sorted(set(CDN_URL.findall(page.path.read_text(encoding="utf-8"))))
    assert not found, f"{page_id(page.path)} refers to a CDN (not offline): {found}"


def test_page_loads_nothing_from_the_network(page: Page) -> None:
    remote = [url for url in page.loads if urlsplit(url).scheme in ("http", "https")
              or url.startswith("//")]
    assert not remote, f"{page_id(page.path)} loads from the network: {remote}"


def test_every_local_asset_a_page_loads_exists(page: Page) -> None:
    missing = []
    for url in page.loads:
        parts = urlsplit(url)
        if parts.scheme or url.startswith(("//", "#")) or not parts.path:
            continue
        target = (page.path.parent / unquote(parts.path)).resolve()
        if not target.is_file():
            missing.append(url)
    assert not missing, f"{page_id(page.path)} loads files missing from _build/html: {missing}"


def test_math_and_widgets_come_from_the_vendored_copies(page: Page) -> None:
    scripts = [urlsplit(url).path for url in page.loads]
    if any("mathjax" in s.lower() for s in scripts):
        assert any(s.endswith("_static/vendor/mathjax/tex-mml-chtml.js") for s in scripts), (
            f"{page_id(page.path)} loads a MathJax that is not the vendored one: {scripts}")
    text = page.path.read_text(encoding="utf-8")
    if "application/vnd.jupyter.widget-state+json" in text:
        for needed in ("vendor/widgets-offline.js", "vendor/require.js",
                       "vendor/html-manager/embed-amd.js"):
            assert any(s.endswith("_static/" + needed) for s in scripts), (
                f"{page_id(page.path)} embeds widgets but does not load _static/{needed}")


def test_no_error_or_stderr_output(page: Page) -> None:
    shown = []
    for classes, ancestors in page.outputs:
        if "traceback" in classes and "tag_raises-exception" not in ancestors:
            shown.append("a traceback (tag the cell `raises-exception` if the error is the point)")
        if "stderr" in classes:
            shown.append("stderr output")
    assert not shown, f"{page_id(page.path)} shows {shown}"


def test_every_exercise_has_a_folded_solution(page: Page) -> None:
    """A course hands the exercises out with the solutions folded (sphinx-togglebutton opens them on a click);
    a code solution sits inside its dropdown too."""
    text = page.path.read_text(encoding="utf-8")
    exercises = len(re.findall(r'<div class="exercise admonition"', text))
    folded = len(re.findall(r'<div class="solution dropdown admonition"', text))
    shown = len(re.findall(r'<div class="solution admonition"', text))
    assert (folded, shown) == (exercises, 0), f"{page_id(page.path)}: {exercises} exercises, {folded} folded " \
        f"and {shown} open solutions"
    if exercises:
        assert any(urlsplit(url).path.endswith("_static/togglebutton.js") for url in page.loads), (
            f"{page_id(page.path)} has solutions but does not load togglebutton.js, which folds them")


def test_no_failed_notebook_reports() -> None:
    reports = sorted(p.relative_to(SITE).as_posix() for p in (SITE / "reports").rglob("*.log")) \
        if (SITE / "reports").is_dir() else []
    assert not reports, f"notebooks failed during the build, tracebacks in _build/html: {reports}"


@pytest.mark.parametrize("asset", RUNTIME_ASSETS)
def test_runtime_assets_are_served(asset: str) -> None:
    assert (STATIC_VENDOR / asset).is_file(), f"_static/vendor/{asset} missing: run assets/vendor/fetch.sh"


def test_served_vendor_files_match_the_sources() -> None:
    # Sphinx copies static files only when some page is rebuilt: a changed asset can go stale.
    stale = [p.relative_to(VENDOR).as_posix() for p in VENDOR.rglob("*") if p.is_file()
             and (not (STATIC_VENDOR / p.relative_to(VENDOR)).is_file()
                  or (STATIC_VENDOR / p.relative_to(VENDOR)).read_bytes() != p.read_bytes())]
    assert not stale, (f"_build/html/_static/vendor is out of date for {stale}: rebuild with "
                       "`jupyter-book build . --all -W -n --keep-going`")


PAGE_WEIGHT_LIMIT = 8 * 2**20  # bytes: a chapter with precomputed panels must still open on a slow line


def page_weight(page: Page) -> int:
    """What a reader downloads for this page alone: its HTML (with its panels' widget state, every precomputed
    figure inside) and the figures it shows. The theme, MathJax and the widget manager under ``_static/`` are
    shared by all pages and cached after the first."""
    files = {page.path}
    for url in page.loads:
        parts = urlsplit(url)
        if parts.scheme or url.startswith("//") or not parts.path:
            continue
        target = (page.path.parent / unquote(parts.path)).resolve()
        if target.is_file() and "_static" not in target.relative_to(SITE.resolve()).parts:
            files.add(target)
    return sum(path.stat().st_size for path in files)


def test_page_weight_is_within_budget(page: Page) -> None:
    weight = page_weight(page)
    assert weight <= PAGE_WEIGHT_LIMIT, (
        f"{page_id(page.path)} weighs {weight / 2**20:.1f} MB, over {PAGE_WEIGHT_LIMIT / 2**20:.0f} MB: "
        "shrink its panels' grids (cam_lib.panels.Control.grid) or their figures")
