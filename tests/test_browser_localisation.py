"""The pointing-game panel in a real browser: Voila serves book/localisation.ipynb, Playwright drives Debian's
chromium.

Like a reader, the test switches the method from LIFT-CAM to Grad-CAM, moves the scene slider with the keyboard,
then picks the other model, and checks each time that the kernel redrew the panel: the figure and the score
table change. What changes follows the game: the method or the model moves the energy inside the regions but
not the regions' share of the image, which is the scene's; a new scene has regions of another size. In every
state the mask, inside the box, holds no more energy than the box and is no likelier to hold the maximum, and
each region holds more of the map's energy than its share of the image, a constant map's score.
The fixtures (`voila`, `browser_page`, in conftest.py) skip with the reason where chromium, voila or playwright
is missing. Voila runs the whole chapter (quick mode) before the panel is live, hence the long first timeout.
"""
from __future__ import annotations

from panels import open_panel, pick_gradcam_then_next_scene, score_row, wait_for_redraw

ENERGY = ("energy in box %", "energy in mask %")
SHARES = ("box % of image", "mask % of image")


def check_pointing(row: dict[str, float]) -> None:
    """Energies are percentages, the argmax game scores 0 or 100, the mask (inside the box) never beats the box,
    and the trained models point better than chance: a constant map's energy is the region's share of the image."""
    assert all(0 <= row[column] <= 100 for column in ENERGY), row
    assert {row["argmax in box"], row["argmax in mask"]} <= {0, 100}, row
    assert row["energy in mask %"] <= row["energy in box %"] and row["argmax in mask"] <= row["argmax in box"], row
    assert all(row[energy] > row[share] for energy, share in zip(ENERGY, SHARES)), row


def test_pointing_panel_scores_follow_method_scene_and_model(voila, browser_page):
    page = browser_page
    first = open_panel(page, voila("book/localisation.ipynb"), "pointing")
    assert first[0].startswith("blob:"), "the panel's figure is an image widget's PNG"

    gradcam, second_scene = pick_gradcam_then_next_scene(page, "pointing", first)
    lift_row, gradcam_row, scene_row = (score_row(shown[1]) for shown in (first, gradcam, second_scene))
    for row in (lift_row, gradcam_row, scene_row):
        check_pointing(row)
    assert gradcam[0] != first[0] and [gradcam_row[c] for c in ENERGY] != [lift_row[c] for c in ENERGY]
    assert [gradcam_row[c] for c in SHARES] == [lift_row[c] for c in SHARES], "the method leaves the scene's regions"
    assert scene_row["box % of image"] != gradcam_row["box % of image"], "another scene, other regions"

    page.select_option(".pointing-model select", "shapes-resnet")
    resnet = wait_for_redraw(page, "pointing", second_scene)
    resnet_row = score_row(resnet[1])
    check_pointing(resnet_row)
    assert [resnet_row[c] for c in SHARES] == [scene_row[c] for c in SHARES], "the model leaves the scene's regions"
    assert [resnet_row[c] for c in ENERGY] != [scene_row[c] for c in ENERGY]
