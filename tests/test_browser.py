"""The Playground in a real browser: Voila serves book/playground.ipynb, Playwright drives Debian's chromium.

Like a reader, the test changes the method dropdown, moves the scene slider with the keyboard and uploads
an image file, and checks each time that the kernel redrew the app: the map image and the score table change
(an uploaded file has no object mask, so its table has no pointing score). The fixtures
(`voila`, `browser_page`, in conftest.py) skip with the reason where chromium, voila or playwright is missing.
One test, one server: Voila executes the whole notebook (quick mode) before the app is live.
"""
from __future__ import annotations

from PIL import Image

RENDER_TIMEOUT_MS = 240_000  # Voila runs every cell of the notebook before the page is complete
REDRAW_TIMEOUT_MS = 60_000

SNAPSHOT_JS = """() => {
    const image = document.querySelector('.playground-figure img');
    const scores = document.querySelector('.playground-scores');
    return [image ? image.src : '', scores ? scores.innerText : ''];
}"""


def _snapshot(page) -> list[str]:
    """The map image's data URL and the score panel's text, as the browser shows them."""
    return page.evaluate(SNAPSHOT_JS)


def _wait_for_redraw(page, before: list[str]) -> list[str]:
    """Wait until the map and the scores both differ from ``before`` and a score table is back (an error
    message would have replaced it)."""
    page.wait_for_function(
        f"""(before) => {{
            const [image, scores] = ({SNAPSHOT_JS})();
            return image && image !== before[0] && scores !== before[1]
                && document.querySelector('.playground-scores table') !== null;
        }}""", arg=before, timeout=REDRAW_TIMEOUT_MS)
    return _snapshot(page)


def test_playground_redraws_when_controls_change(voila, browser_page, tmp_path):
    page = browser_page
    page.goto(voila("book/playground.ipynb"), timeout=RENDER_TIMEOUT_MS)
    page.wait_for_selector(".playground-scores table", timeout=RENDER_TIMEOUT_MS)
    page.wait_for_selector(".playground-figure img", timeout=REDRAW_TIMEOUT_MS)
    first = _snapshot(page)
    assert first[0].startswith("data:image/png"), "the map is drawn as a PNG"
    assert "gap" in first[1] and "IC" in first[1], first[1]
    assert page.locator(".playground-method select").input_value() == "lift"

    page.select_option(".playground-method select", "gradcam")
    gradcam = _wait_for_redraw(page, first)
    assert gradcam[0] != first[0] and gradcam[1] != first[1]

    handle = page.locator(".playground-index .noUi-handle")
    handle.focus()
    handle.press("ArrowRight")
    second_scene = _wait_for_redraw(page, gradcam)
    assert page.locator(".playground-index .widget-readout").inner_text().strip() == "1"
    assert second_scene[0] != gradcam[0]
    assert "energy on object" in second_scene[1]

    photo = tmp_path / "photo.png"
    Image.effect_mandelbrot((96, 80), (-2.0, -1.2, 0.8, 1.2), 60).convert("RGB").save(photo)
    with page.expect_file_chooser() as chooser:  # a click on the widget opens the file chooser
        page.click(".playground-upload")
    chooser.value.set_files(photo)
    uploaded = _wait_for_redraw(page, second_scene)
    assert "energy on object" not in uploaded[1], uploaded[1]
