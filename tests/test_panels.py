"""The panel toolkit: one drawing function, rendered live and static, identical for the same setting."""
from __future__ import annotations

import json
import re

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pandas as pd
import pytest
from ipywidgets.widgets.widget import _instances  # every open widget, the links included
from ipywidgets.widgets.widget_link import DirectionalLink

from cam_lib import panels


def draw(utility: str, method: str, index: int, note: str) -> panels.View:
    """A toy panel: a line whose slope and title depend on every value; ``method="cam"`` is refused."""
    if method == "cam":
        raise ValueError("CAM needs <GAP + linear> & nothing else")
    figure, ax = plt.subplots(figsize=(3, 2))
    ax.plot(range(5), [(index + 1) * x for x in range(5)], color="tab:red" if utility == "rest" else "tab:blue")
    ax.set_title(f"{method} {utility} {note}")
    return panels.View(figure, pd.DataFrame({"method": [method], "index": [index]}), result=(method, index))


def toy_panel() -> panels.Panel:
    return panels.Panel("toy", draw, [
        panels.Control("utility", "utility", ["logit", "rest"], "logit"),
        panels.Control("method", "method", [("LIFT-CAM", "lift"), ("Grad-CAM", "gradcam"), ("CAM", "cam")], "lift"),
        panels.Control("index", "scene", list(range(10)), 0, kind="slider", grid=range(4)),
        panels.Control("note", "note", ["typed"], "typed", kind="text"),  # live only
    ])


def leaves(widget: widgets.Widget) -> list[widgets.VBox]:
    """The drawn states of a static panel, in the order of ``Panel.grid``."""
    if isinstance(widget, widgets.Stack):
        return [leaf for child in widget.children for leaf in leaves(child)]
    return [widget]


def drawn_state(leaf: widgets.VBox) -> dict:
    found = re.search(r'data-state="([^"]*)"', leaf.children[1].value)
    return json.loads(found.group(1).replace("&quot;", '"'))


def test_static_panel_draws_every_state_of_the_grid_in_order():
    panel = toy_panel()
    static = panel.static()
    controls, tree = static.children
    assert [c._dom_classes[-1] for c in controls.children] == ["toy-utility", "toy-method", "toy-index"]
    drawn = leaves(tree)
    assert len(drawn) == 2 * 3 * 4 == len(panel.grid())
    for leaf, setting in zip(drawn, panel.grid()):
        assert drawn_state(leaf) == setting
    assert "toy-panel" in static._dom_classes and "panel-static" in static._dom_classes


def test_each_stack_follows_its_control_in_the_browser():
    static = toy_panel().static()
    controls, tree = static.children
    links = {(link.source[0].model_id, link.target[0].model_id) for link in _instances.values()
             if isinstance(link, DirectionalLink)}
    stacks_by_level = [[tree], tree.children, [s for child in tree.children for s in child.children]]
    for control, stacks in zip(controls.children, stacks_by_level):
        for stack in stacks:
            assert (control.model_id, stack.model_id) in links
            assert stack.selected_index == control.index


def test_static_and_live_show_the_same_figure_for_the_same_setting():
    panel = toy_panel()
    drawn = leaves(panel.static().children[1])
    live = panel.live()
    live.controls["utility"].value = "rest"
    live.controls["method"].value = "gradcam"
    live.controls["index"].value = 2
    index = panel.grid().index({"utility": "rest", "method": "gradcam", "index": 2, "note": "typed"})
    assert live.figure.value == drawn[index].children[0].value != b""
    assert live.scores.value == drawn[index].children[1].value
    assert live.rendered.result == ("gradcam", 2)
    live.close()


def test_refusal_shows_an_escaped_error_box_and_no_figure():
    panel = toy_panel()
    live = panel.live()
    live.controls["method"].value = "cam"
    assert live.rendered.result is None and live.figure.value == b"" and live.figure.layout.display == "none"
    assert "cannot explain this:</b> CAM needs &lt;GAP + linear&gt; &amp; nothing else" in live.scores.value
    assert "<GAP" not in live.scores.value
    refused = [leaf for leaf in leaves(panel.static().children[1]) if drawn_state(leaf)["method"] == "cam"]
    assert len(refused) == 8 and all(leaf.children[0].layout.display == "none" for leaf in refused)
    live.controls["method"].value = "lift"
    assert live.figure.layout.display is None and "<table" in live.scores.value


def test_an_unexpected_error_is_not_hidden_in_the_box():
    def broken(value: int) -> panels.View:
        raise KeyError(value)

    panel = panels.Panel("broken", broken, [panels.Control("value", "value", [1, 2], 1)])
    with pytest.raises(KeyError):
        panel.render({"value": 2})


def test_on_change_runs_before_drawing_without_starting_another_drawing():
    calls, drawn = [], []

    def scene(index: int, question: str) -> panels.View:
        drawn.append((index, question))
        return panels.View(plt.figure(figsize=(1, 1)), pd.DataFrame({"q": [question]}))

    def own_question(controls: dict, changed: str | None) -> None:
        calls.append(changed)
        controls["question"].value = f"question of scene {controls['index'].value}"

    panel = panels.Panel("q", scene, [panels.Control("index", "scene", [0, 1], 0, kind="slider"),
                                      panels.Control("question", "question", [], "", kind="text")])
    live = panel.live(own_question)
    live.controls["index"].value = 1
    assert calls == [None, "index"]
    assert drawn == [(0, "question of scene 0"), (1, "question of scene 1")]
    assert "panel-busy" not in live._dom_classes
    live.close()


def test_png_is_deterministic_and_a_palette_image():
    figure, ax = plt.subplots(figsize=(3, 2))
    ax.imshow([[0, 1], [1, 0]], cmap="jet")
    first, again = panels.figure_png(figure, 72), panels.figure_png(figure, 72)
    plt.close(figure)
    assert first == again and first[:8] == b"\x89PNG\r\n\x1a\n"
    assert first[25] == 3  # colour type 3: palette


def test_controls_are_checked():
    with pytest.raises(ValueError, match="kind"):
        panels.Control("x", "x", [1], 1, kind="knob")
    with pytest.raises(ValueError, match="upload"):
        panels.Control("x", "x", kind="upload", grid=[b""])
    with pytest.raises(ValueError, match="grid"):
        panels.Control("x", "x", [1, 2, 3], 3, grid=[1, 2])


@pytest.mark.parametrize(("environment", "expected"), [
    ({}, "static"),                                     # book build, nbval, scripts
    ({"JPY_SESSION_NAME": "book/vqa.ipynb"}, "live"),   # a Jupyter server's kernel
    ({"SERVER_SOFTWARE": "voila/0.5.13"}, "live"),      # Voila's kernel
    ({"SERVER_SOFTWARE": "voila/0.5.13", panels.MODE_VARIABLE: "static"}, "static"),
])
def test_mode_follows_the_kernel_environment(monkeypatch, environment, expected):
    for name in ("JPY_SESSION_NAME", "SERVER_SOFTWARE", panels.MODE_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert panels.mode() == expected


def test_mode_refuses_an_unknown_value(monkeypatch):
    monkeypatch.setenv(panels.MODE_VARIABLE, "frozen")
    with pytest.raises(ValueError, match="live"):
        panels.mode()
