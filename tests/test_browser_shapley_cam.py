"""The confidence panel of the ShapleyCAM chapter in a real browser: Voila serves book/shapley_cam.ipynb,
Playwright drives Debian's chromium.

The panel divides shapes-vgg's logits by the temperature T that gives the explained class the probability
``p_c`` the reader picks, and compares Grad-CAM's coefficients under the softmax and ReST utilities with the
logit's, and ShapleyCAM's correction to Grad-CAM. Like a reader, the test moves the ``p_c`` slider one step
right with the keyboard (0.99 to 0.999), then the scene slider, and checks each time that the kernel redrew
the figure and the table. The numbers must follow the chapter's argument: relative to the logit's, the
softmax's coefficients are about its gradient ``p_c (1 - p_c)``, so they shrink tenfold, while ReST's stay
about its ``2 - p_c``, the logit's size; a surer class has a lower T and a smaller ShapleyCAM correction.
The fixtures (`voila`, `browser_page`, in conftest.py) skip with the reason where chromium, voila or playwright
is missing. Voila runs the whole chapter (quick mode) before the panel is live, hence the long first timeout.
"""
from __future__ import annotations

from panels import move_slider, open_panel, score_row, slider_readout, wait_for_redraw

SOFTMAX, REST = "max |alpha|, softmax / logit", "max |alpha|, ReST / logit"
CORRECTION = "ShapleyCAM's relative correction"


def test_confidence_panel_follows_the_temperature(voila, browser_page):
    page = browser_page
    first = open_panel(page, voila("book/shapley_cam.ipynb"), "confidence")
    assert first[0].startswith("blob:"), "the panel's figure is an image widget's PNG"
    assert slider_readout(page, "confidence", "probability") == "0.99"

    move_slider(page, "confidence", "probability")
    surer = wait_for_redraw(page, "confidence", first)
    assert slider_readout(page, "confidence", "probability") == "0.999"
    unsure_row, sure_row = score_row(first[1]), score_row(surer[1])
    for p_c, row in ((0.99, unsure_row), (0.999, sure_row)):  # the gradients along the class; the logit's is 1
        assert 0.5 < row[SOFTMAX] / (p_c * (1 - p_c)) < 2, (p_c, row)
        assert abs(row[REST] - (2 - p_c)) < 0.1, (p_c, row)
    assert sure_row["T"] < unsure_row["T"], (unsure_row, sure_row)
    assert sure_row[CORRECTION] < unsure_row[CORRECTION], (unsure_row, sure_row)

    move_slider(page, "confidence", "index")
    second_scene = wait_for_redraw(page, "confidence", surer)
    readouts = [slider_readout(page, "confidence", name) for name in ("index", "probability")]
    assert readouts == ["1", "0.999"], readouts
    assert second_scene[0] != surer[0] and score_row(second_scene[1])["T"] != sure_row["T"]
