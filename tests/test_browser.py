"""The Playground in a real browser: Voila serves book/playground.ipynb, Playwright drives Debian's chromium.

Like a reader, the test changes the method dropdown, moves the scene slider with the keyboard and uploads
an image file, and checks each time that the kernel redrew the app: the map image and the score table change
(an uploaded file has no object mask, so its table has no pointing score). A text file is refused in the
app's error box. The fixtures
(`voila`, `browser_page`, in conftest.py) skip with the reason where chromium, voila or playwright is missing.
One test, one server: Voila executes the whole notebook (quick mode) before the app is live.
"""
from __future__ import annotations

from panels import REDRAW_TIMEOUT_MS, open_panel, pick_gradcam_then_next_scene, wait_for_redraw
from PIL import Image


def test_playground_redraws_when_controls_change(voila, browser_page, tmp_path):
    page = browser_page
    first = open_panel(page, voila("book/playground.ipynb"), "playground")
    assert first[0].startswith("blob:"), "the map is drawn as an image widget's PNG"
    assert "gap" in first[1] and "IC" in first[1], first[1]

    gradcam, second_scene = pick_gradcam_then_next_scene(page, "playground", first)
    assert gradcam[0] != first[0] and gradcam[1] != first[1]
    assert second_scene[0] != gradcam[0]
    assert "energy on object" in second_scene[1]

    photo = tmp_path / "photo.png"
    Image.effect_mandelbrot((96, 80), (-2.0, -1.2, 0.8, 1.2), 60).convert("RGB").save(photo)
    with page.expect_file_chooser() as chooser:  # a click on the widget opens the file chooser
        page.click(".playground-upload")
    chooser.value.set_files(photo)
    uploaded = wait_for_redraw(page, "playground", second_scene)
    assert "energy on object" not in uploaded[1], uploaded[1]

    notes = tmp_path / "notes.png"  # named like an image, but text: PIL cannot read it
    notes.write_text("not an image")
    with page.expect_file_chooser() as chooser:
        page.click(".playground-upload")
    chooser.value.set_files(notes)
    page.wait_for_selector(".playground-scores .panel-error", timeout=REDRAW_TIMEOUT_MS)
    assert "not an image file PIL can read" in page.inner_text(".playground-scores")
    assert not page.is_visible("img.playground-figure"), "a refusal leaves no figure"
