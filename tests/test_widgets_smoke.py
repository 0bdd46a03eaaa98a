"""The browser-test machinery works: Voila serves a widget notebook, chromium moves its slider,
and the kernel's answer reaches the page (fixtures in conftest.py)."""

from pathlib import Path

DATA = Path(__file__).parent / "data"


def test_slider_moved_with_keyboard_updates_label(voila, browser_page):
    from playwright.sync_api import expect

    browser_page.goto(voila(DATA / "slider.ipynb"))
    result = browser_page.locator(".result")
    expect(result).to_have_text("n squared: 9")  # rendered by the kernel: the app is live

    handle = browser_page.locator(".widget-slider .noUi-handle")
    handle.focus()
    handle.press("ArrowRight")
    handle.press("ArrowRight")

    expect(browser_page.locator(".widget-slider .widget-readout")).to_have_text("5")
    expect(result).to_have_text("n squared: 25")
