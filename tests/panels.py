"""What a browser test reads off a widget panel: its figure and its score table, found by CSS prefix.

Every panel is made by ``cam_lib.panels``, whose docstring lists the CSS classes: ``<prefix>-figure`` on the
figure's ``<img>``, ``<prefix>-scores`` on the table or error box, ``<prefix>-<name>`` on each control.
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

RENDER_TIMEOUT_MS = 240_000  # Voila runs every cell of the notebook before the page is complete
REDRAW_TIMEOUT_MS = 60_000


def snapshot_js(prefix: str) -> str:
    """JavaScript returning ``[figure image URL, score text]`` of the panel (a live panel: one of each)."""
    return f"""() => {{
        const image = document.querySelector('img.{prefix}-figure');
        const scores = document.querySelector('.{prefix}-scores');
        return [image ? image.src : '', scores ? scores.innerText : ''];
    }}"""


def open_panel(page, url: str, prefix: str, attempts: int = 2) -> list[str]:
    """Load the served notebook and wait until the panel shows a figure and a score table.

    The chapter runs in about 70 s even beside another test worker, a third of ``RENDER_TIMEOUT_MS``. Once in
    a while the execution stalls with the kernel idle, a race between the executing client and widget
    messages (jupyter/nbclient#312, open); the page is then loaded once more, which starts a fresh kernel.
    """
    from playwright.sync_api import TimeoutError as PageTimeout
    for attempt in range(1, attempts + 1):
        page.goto(url, wait_until="commit", timeout=RENDER_TIMEOUT_MS)  # Voila streams the page as cells run
        try:
            page.wait_for_selector(f".{prefix}-scores table", timeout=RENDER_TIMEOUT_MS)
            break
        except PageTimeout:
            if attempt == attempts:
                raise
    page.wait_for_selector(f"img.{prefix}-figure", timeout=REDRAW_TIMEOUT_MS)
    return snapshot(page, prefix)


def snapshot(page, prefix: str) -> list[str]:
    """The panel's figure and score text, as the browser shows them."""
    return page.evaluate(snapshot_js(prefix))


def wait_for_redraw(page, prefix: str, before: list[str]) -> list[str]:
    """Wait until figure and scores both differ from ``before`` and a score table is back (an error
    message would have replaced it)."""
    page.wait_for_function(
        f"""(before) => {{
            const [image, scores] = ({snapshot_js(prefix)})();
            return image && image !== before[0] && scores !== before[1]
                && document.querySelector('.{prefix}-scores table') !== null;
        }}""", arg=before, timeout=REDRAW_TIMEOUT_MS)
    return snapshot(page, prefix)


def score_row(scores: str) -> dict[str, float]:
    """A one-row score table's numbers by column, read off its text as a snapshot has it (``innerText``: cells
    separated by tabs, rows by line breaks), so a test can check what a number means, not only that it moved."""
    header, values = [line.split("\t") for line in scores.strip().splitlines()[:2]]
    return {column.strip(): float(value) for column, value in zip(header, values, strict=True)}


def move_slider(page, prefix: str, name: str) -> None:
    """Move a panel's slider one step right with the keyboard, as a reader would."""
    handle = page.locator(f".{prefix}-{name} .noUi-handle")
    handle.focus()
    handle.press("ArrowRight")


def slider_readout(page, prefix: str, name: str) -> str:
    """The value a panel's slider shows beside it."""
    return page.locator(f".{prefix}-{name} .widget-readout").inner_text().strip()


def pick_gradcam_then_next_scene(page, prefix: str, first: list[str]) -> tuple[list[str], list[str]]:
    """As a reader would: switch the method from LIFT-CAM to Grad-CAM, then step the scene slider once.

    Returns the panel after each change; each waits until figure and scores differ from the one before.
    """
    assert page.locator(f".{prefix}-method select").input_value() == "lift"
    page.select_option(f".{prefix}-method select", "gradcam")
    gradcam = wait_for_redraw(page, prefix, first)
    move_slider(page, prefix, "index")
    second_scene = wait_for_redraw(page, prefix, gradcam)
    assert slider_readout(page, prefix, "index") == "1"
    return gradcam, second_scene


# --- Static panels on the built site (cam_lib.panels.Panel.static): no kernel, the browser switches states ---

SHOWN_STATE_JS = """async (prefix) => {
    const panel = document.querySelector(`.${prefix}-panel.panel-static`);
    const state = panel.querySelector(`.${prefix}-scores .panel-state`);
    const image = panel.querySelector(`img.${prefix}-figure`);
    let png = '';
    if (image && image.src && image.offsetParent !== null) {
        const bytes = new Uint8Array(await (await fetch(image.src)).arrayBuffer());
        for (let start = 0; start < bytes.length; start += 8192) {
            png += String.fromCharCode(...bytes.subarray(start, start + 8192));
        }
        png = btoa(png);
    }
    return [state.dataset.state, png];
}"""


def shown_state(page, prefix: str) -> tuple[dict, str]:
    """The values of the state a static panel shows (its ``data-state``) and its figure's PNG, base64."""
    state, png = page.evaluate(SHOWN_STATE_JS, prefix)
    return json.loads(state), png


def wait_for_state(page, prefix: str, name: str, value) -> None:
    """Wait until the static panel shows a state drawn with ``name`` = ``value``."""
    page.wait_for_function(
        """([prefix, name, value]) => {
            const state = document.querySelector(`.${prefix}-panel.panel-static .${prefix}-scores .panel-state`);
            return state !== null && JSON.stringify(JSON.parse(state.dataset.state)[name]) === JSON.stringify(value);
        }""", arg=[prefix, name, value], timeout=REDRAW_TIMEOUT_MS)


def precomputed_figures(html_page: Path, prefix: str) -> dict[str, str]:
    """The figures a built page embeds for a static panel, by the JSON of their state: PNG as base64.

    Read from the widget state myst-nb writes into the page: each state is a VBox of an Image (its bytes a
    base64 buffer) and an HTML holding ``data-state``.
    """
    text = html_page.read_text(encoding="utf-8")
    found = re.search(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', text, re.S)
    models = json.loads(found.group(1))["state"] if found else {}
    figures = {}
    for model in models.values():
        children = model["state"].get("children", []) if model["model_name"] == "VBoxModel" else []
        parts = [models.get(child.removeprefix("IPY_MODEL_")) for child in children]
        if len(parts) != 2 or None in parts or parts[1]["model_name"] != "HTMLModel":
            continue
        image, scores = parts
        if f"{prefix}-scores" not in scores["state"]["_dom_classes"]:
            continue
        state = html.unescape(re.search(r'data-state="([^"]*)"', scores["state"]["value"]).group(1))
        buffers = [b["data"] for b in image.get("buffers", []) if b["path"] == ["value"]]
        figures[json.dumps(json.loads(state), sort_keys=True)] = buffers[0] if buffers else ""
    return figures
