"""The Faithfulness panel in a real browser: Voila serves book/faithfulness.ipynb, Playwright drives Debian's chromium.

Like a reader, the test switches the method from LIFT-CAM to Grad-CAM, then moves the scene slider with the
keyboard, and checks each time that the kernel redrew the panel: the figure (masked images and curves) and
the score table both change. The fixtures (`voila`, `browser_page`, in conftest.py) skip with the reason
where chromium, voila or playwright is missing. Voila runs the whole chapter (quick mode) before the panel
is live, hence the long first timeout.
"""
from __future__ import annotations

from panels import open_panel, pick_gradcam_then_next_scene


def test_faithfulness_panel_redraws_scores_and_curves(voila, browser_page):
    page = browser_page
    first = open_panel(page, voila("book/faithfulness.ipynb"), "faithfulness")
    assert first[0].startswith("blob:"), "the panel's figure is an image widget's PNG"
    for column in ("AD %", "ADD %", "insertion AUC", "deletion AUC"):
        assert column in first[1], first[1]

    gradcam, second_scene = pick_gradcam_then_next_scene(page, "faithfulness", first)
    assert gradcam[0] != first[0] and gradcam[1] != first[1]
    assert second_scene[0] != gradcam[0] and second_scene[1] != gradcam[1]
