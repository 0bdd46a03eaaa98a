"""The VQA panel in a real browser: Voila serves book/vqa.ipynb, Playwright drives Debian's chromium.

Like a reader, the test types a question about the first scene, then one with a word outside the
vocabulary, then moves the scene slider. Each time the kernel must answer: a new figure and new answer
probabilities, the library's message naming the unknown word (and no figure), then the next scene with its
own question.
The fixtures (`voila`, `browser_page`, in conftest.py) skip with the reason where chromium, voila or
playwright is missing.
"""
from __future__ import annotations

from panels import REDRAW_TIMEOUT_MS, move_slider, open_panel, slider_readout, snapshot, wait_for_redraw


def ask(page, question: str) -> None:
    """Type a question into the panel's box and press Enter, as a reader would."""
    box = page.locator(".vqa-question input")
    box.fill(question)
    box.press("Enter")


def test_vqa_panel_answers_typed_questions(voila, browser_page):
    page = browser_page
    first = open_panel(page, voila("book/vqa.ipynb"), "vqa")
    assert first[0].startswith("blob:") and "probability" in first[1], first[1]

    ask(page, "how many circles are there ?")
    typed = wait_for_redraw(page, "vqa", first)
    assert typed[0] != first[0] and typed[1] != first[1]

    ask(page, "what colour is the banana ?")
    page.wait_for_function("() => document.querySelector('.vqa-scores').innerText.includes('banana')",
                           timeout=REDRAW_TIMEOUT_MS)
    refused = snapshot(page, "vqa")
    assert "cannot ask this" in refused[1] and not page.is_visible("img.vqa-figure"), "a refusal leaves no figure"

    move_slider(page, "vqa", "index")
    second_scene = wait_for_redraw(page, "vqa", refused)
    assert second_scene[0] != typed[0] and slider_readout(page, "vqa", "index") == "1"
    assert page.locator(".vqa-question input").input_value() != "what colour is the banana ?"
