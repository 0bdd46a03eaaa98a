"""What a browser test reads off a widget panel: its figure and its score table, found by CSS prefix.

Each panel in the book marks its figure ``<prefix>-figure`` and its scores ``<prefix>-scores``.
"""
from __future__ import annotations

RENDER_TIMEOUT_MS = 240_000  # Voila runs every cell of the notebook before the page is complete
REDRAW_TIMEOUT_MS = 60_000


def snapshot_js(prefix: str) -> str:
    """JavaScript returning ``[figure image data URL, score text]`` of the panel."""
    return f"""() => {{
        const image = document.querySelector('.{prefix}-figure img');
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
    page.wait_for_selector(f".{prefix}-figure img", timeout=REDRAW_TIMEOUT_MS)
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


def move_slider(page, prefix: str, name: str) -> None:
    """Move a panel's slider one step right with the keyboard, as a reader would."""
    handle = page.locator(f".{prefix}-{name} .noUi-handle")
    handle.focus()
    handle.press("ArrowRight")


def pick_gradcam_then_next_scene(page, prefix: str, first: list[str]) -> tuple[list[str], list[str]]:
    """As a reader would: switch the method from LIFT-CAM to Grad-CAM, then step the scene slider once.

    Returns the panel after each change; each waits until figure and scores differ from the one before.
    """
    assert page.locator(f".{prefix}-method select").input_value() == "lift"
    page.select_option(f".{prefix}-method select", "gradcam")
    gradcam = wait_for_redraw(page, prefix, first)
    move_slider(page, prefix, "index")
    second_scene = wait_for_redraw(page, prefix, gradcam)
    assert page.locator(f".{prefix}-index .widget-readout").inner_text().strip() == "1"
    return gradcam, second_scene
