"""The static panels of the built site in a real browser: no kernel, no network, only the page's widget state.

Like a reader, each test moves a control of a chapter's panel and checks that the page then shows the state
the build drew for that value: its ``data-state`` names the new value, and the figure's bytes are those the
page embeds for that state (read from the page's widget state by ``panels.precomputed_figures``), different
from the figure before. Nothing may be written to the browser console as an error. The pages are opened
from disk (``file://``); `chromium_browser`/`browser_page` (conftest.py) skip where chromium or playwright
is missing, and the module skips where the book is not built.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from panels import precomputed_figures, shown_state, wait_for_state

SITE = Path(__file__).resolve().parents[1] / "_build" / "html"
pytestmark = pytest.mark.skipif(not (SITE / "book" / "intro.html").is_file(),
                                reason="the book is not built: run `jupyter-book build . -W -n --keep-going` first")
LOAD_TIMEOUT_MS = 60_000  # the widget manager parses the page's whole state before it draws a panel
# The theme (pydata-sphinx-theme) logs this as an error on every page, widgets or not, when a browser has no
# stored light/dark choice yet, as a fresh test browser never has.
THEME_FIRST_VISIT = "Got invalid theme mode"

# chapter, panel prefix, then the moves: (control, "select" an option's label or press "ArrowRight", value drawn)
MOVES = {
    "shapley_values": ("convergence", [("P", "ArrowRight", 100), ("image", "ArrowRight", 1)]),
    "faithfulness": ("faithfulness", [("method", "gradcam", "gradcam"), ("utility", "softmax", "softmax"),
                                      ("index", "ArrowRight", 1)]),
    "vqa": ("vqa", [("question", "how many circles are there ?", "how many circles are there ?"),
                    ("index", "ArrowRight", 1)]),
    "playground": ("playground", [("model", "shapes-resnet", "shapes-resnet"), ("method", "gradcam", "gradcam"),
                                  ("index", "ArrowRight", 1)]),
    "localisation": ("pointing", [("method", "gradcam", "gradcam"), ("model", "shapes-resnet", "shapes-resnet"),
                                  ("index", "ArrowRight", 1)]),
    "shapley_cam": ("confidence", [("probability", "ArrowRight", 0.999), ("index", "ArrowRight", 1)]),
}


def move(page, prefix: str, name: str, how: str) -> None:
    """Pick an option of a dropdown by its label, or step a slider with the keyboard."""
    if how == "ArrowRight":
        handle = page.locator(f".{prefix}-panel .{prefix}-{name} .noUi-handle")
        handle.focus()
        handle.press("ArrowRight")
    else:
        page.select_option(f".{prefix}-panel .{prefix}-{name} select", label=how)


@pytest.mark.parametrize("chapter", list(MOVES))
def test_static_panel_switches_to_the_precomputed_state(chapter, browser_page):
    page, (prefix, moves) = browser_page, MOVES[chapter]
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" and not message.text.startswith(THEME_FIRST_VISIT) else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    html_page = SITE / "book" / f"{chapter}.html"
    figures = precomputed_figures(html_page, prefix)
    assert figures, f"{chapter}.html embeds no static {prefix} panel"

    page.goto(html_page.as_uri())
    page.wait_for_selector(f".{prefix}-panel.panel-static .{prefix}-scores .panel-state", state="attached",
                           timeout=LOAD_TIMEOUT_MS)
    before = shown_state(page, prefix)
    for name, how, value in moves:
        move(page, prefix, name, how)
        wait_for_state(page, prefix, name, value)
        state, png = shown_state(page, prefix)
        expected = figures[json.dumps(state, sort_keys=True)]
        assert state == {**before[0], name: value}, (state, before[0])
        assert png and base64.b64decode(png) == base64.b64decode(expected), f"{chapter}: not {state}'s figure"
        assert png != before[1], f"{chapter}: the figure did not change with {name}"
        before = (state, png)
    assert not errors, errors
