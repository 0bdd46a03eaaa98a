"""Widget panels: a function of some controls' values that draws a figure and a table, laid out once.

A panel is ``draw(**values) -> View``: a matplotlib figure and a table. :class:`Panel` gives every panel of
the book the same layout, busy state and error box, and these CSS classes, which the browser tests read
(``<prefix>`` names the panel, e.g. ``faithfulness``):

- ``<prefix>-panel`` on the whole panel, with ``panel-live`` or ``panel-static``; a live panel also has
  ``panel-busy`` while it draws;
- ``<prefix>-<name>`` on the control of the value ``name``;
- ``<prefix>-figure`` on the figure, an ``<img>`` (hidden when a refusal left no figure);
- ``<prefix>-scores`` on the table, or on the error box (``panel-error``, the message HTML-escaped);
  inside it, ``panel-state``'s ``data-state`` attribute holds the values drawn, as JSON.

It renders a panel two ways. :meth:`Panel.live` redraws on every change, in Jupyter or Voila, where a kernel
does the work. :meth:`Panel.static` draws every combination of the controls' ``grid`` values ahead of time
and nests them in ``Stack`` widgets, one level per control; each level's ``selected_index`` follows its
control's ``index`` through a ``jsdlink``, so the browser switches between the drawn states with no kernel
and no network (the book's pages, with the vendored widget manager). Both go through :meth:`Panel.render`,
so one state looks the same in both. :meth:`Panel.show` picks one, see :func:`mode`.
"""
from __future__ import annotations

import html
import io
import itertools
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

__all__ = ["Control", "View", "Rendered", "Panel", "LivePanel", "mode", "MODE_VARIABLE"]

MODE_VARIABLE = "SHAPLEY_CAMS_PANELS"
KINDS = ("dropdown", "slider", "text", "upload")


@dataclass(frozen=True)
class Control:
    """One control: a dropdown or slider over ``options`` (values, or ``(label, value)`` pairs), a text box
    with ``options`` as suggestions, or a file upload. The static panel draws every value of ``grid`` (values
    or ``(label, value)`` pairs; None: all ``options``) and offers them in a dropdown or slider (a text box's
    grid in a dropdown: the browser cannot answer what it was not asked before). A control with an empty
    grid (an upload, a text box by default) is live only: the static panel keeps it at ``value``."""

    name: str
    label: str
    options: Sequence[Any] = ()
    value: Any = None
    kind: str = "dropdown"
    grid: Sequence[Any] | None = None
    width: str = "300px"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"control {self.name!r}: kind must be one of {KINDS}, not {self.kind!r}")
        if self.kind == "upload" and self.grid:
            raise ValueError(f"control {self.name!r}: an upload has no grid, it is live only")
        if self.values() and self.value not in self.values():
            raise ValueError(f"control {self.name!r}: its default {self.value!r} must be one of its grid values")

    def labelled(self) -> list[tuple[str, Any]]:
        """The static panel's choices, ``(label, value)``: the grid, labelled as in ``options`` where it has labels."""
        grid = self.grid if self.grid is not None or self.kind in ("text", "upload") else self.options
        labels = {option[1]: option[0] for option in self.options if isinstance(option, tuple)}
        return [option if isinstance(option, tuple) else (labels.get(option, str(option)), option)
                for option in grid or ()]

    def values(self) -> list[Any]:
        """The values the static panel draws."""
        return [value for _, value in self.labelled()]


@dataclass(frozen=True)
class View:
    """What a panel draws for one setting: a figure, a table, and ``result``, what it computed (for code that
    drives a live panel)."""

    figure: Figure
    table: pd.DataFrame
    result: Any = None


@dataclass(frozen=True)
class Rendered:
    """A view as the page shows it: the figure as PNG bytes (empty after a refusal) and the scores' HTML."""

    png: bytes
    html: str
    result: Any = None


def mode() -> str:
    """``"live"`` when a reader can move the controls with a kernel behind them (a Jupyter server sets
    ``JPY_SESSION_NAME`` in its kernels, Voila ``SERVER_SOFTWARE=voila/...``), else ``"static"``: the book
    build, nbval and scripts run kernels with neither. ``SHAPLEY_CAMS_PANELS=live|static`` overrides."""
    chosen = os.environ.get(MODE_VARIABLE, "")
    if chosen:
        if chosen not in ("live", "static"):
            raise ValueError(f"{MODE_VARIABLE} must be 'live' or 'static', not {chosen!r}")
        return chosen
    served = "JPY_SESSION_NAME" in os.environ or os.environ.get("SERVER_SOFTWARE", "").startswith("voila")
    return "live" if served else "static"


def figure_png(figure: Figure, dpi: int, colours: int = 256) -> bytes:
    """The figure as a palette PNG: a page holds up to a hundred states, and a figure of saliency overlays
    loses nothing visible at 256 colours and shrinks 3.5x (95 to 27 kB at 72 dpi). Same figure, same bytes."""
    drawn = io.BytesIO()
    figure.savefig(drawn, format="png", dpi=dpi, metadata={"Software": None})
    with Image.open(drawn) as image:
        palette = image.convert("RGB").quantize(colors=colours, method=Image.Quantize.FASTOCTREE)
    packed = io.BytesIO()
    palette.save(packed, format="png", optimize=True)
    return packed.getvalue()


def _state_json(values: Mapping[str, Any]) -> str:
    """The drawn values as JSON for ``data-state`` (an uploaded file by its size, not its bytes)."""
    plain = {name: f"{len(value)} bytes" if isinstance(value, bytes) else value for name, value in values.items()}
    return json.dumps(plain, sort_keys=True, default=str)


def _scores_html(body: str, values: Mapping[str, Any]) -> str:
    """The scores' HTML: ``body`` then the hidden record of the values drawn."""
    state = html.escape(_state_json(values), quote=True)
    return f'{body}<div class="panel-state" data-state="{state}" hidden></div>'


def _control_widget(control: Control, static: bool) -> widgets.Widget:
    """The widget of ``control``: on a static panel, a dropdown or slider over its grid."""
    options = control.labelled() if static else control.options
    if control.kind == "dropdown" or (static and control.kind == "text"):
        widget = widgets.Dropdown(options=options, value=control.value, description=control.label)
    elif control.kind == "slider":
        widget = widgets.SelectionSlider(options=options, value=control.value, description=control.label)
    elif control.kind == "text":
        widget = widgets.Combobox(value=control.value or "", options=list(options), description=control.label,
                                  placeholder="type, then Enter", continuous_update=False, ensure_option=False)
    else:
        widget = widgets.FileUpload(accept="image/*", description=control.label)
    widget.style.description_width, widget.layout.width = "80px", control.width
    return widget


def _read(widget: widgets.Widget) -> Any:
    """A control's value as ``draw`` takes it: an upload as its file's bytes (None before one)."""
    if isinstance(widget, widgets.FileUpload):
        return bytes(widget.value[0]["content"]) if widget.value else None
    return widget.value


@dataclass
class Panel:
    """A panel: ``draw(**values) -> View`` over ``controls``. Errors of the types in ``errors`` are the
    library refusing a setting (its message says why): the panel shows them in its error box, headed by
    ``refusal``; any other exception is a bug and propagates."""

    prefix: str
    draw: Callable[..., View]
    controls: Sequence[Control]
    errors: tuple[type[BaseException], ...] = (ValueError,)
    refusal: str = "cannot explain this"
    dpi: int = 72
    _shared: dict = field(default_factory=dict, init=False, repr=False)

    def defaults(self) -> dict[str, Any]:
        """Every control at its default value."""
        return {control.name: control.value for control in self.controls}

    def render(self, values: Mapping[str, Any]) -> Rendered:
        """Draw one setting (missing values at their defaults) as the page shows it; a refusal as the error box."""
        values = {**self.defaults(), **values}
        try:
            view = self.draw(**values)
        except self.errors as error:
            box = (f'<div class="panel-error" style="color:#b00"><b>{html.escape(self.refusal)}:</b> '
                   f"{html.escape(str(error))}</div>")
            return Rendered(b"", _scores_html(box, values))
        try:
            png = figure_png(view.figure, self.dpi)
        finally:
            plt.close(view.figure)
        table = view.table.to_html(index=False, border=0, float_format="{:.4g}".format)
        return Rendered(png, _scores_html(table, values), view.result)

    def grid(self) -> list[dict[str, Any]]:
        """Every setting the static panel draws: the product of the grids, other controls at their defaults."""
        varied = [control for control in self.controls if control.values()]
        product = itertools.product(*(control.values() for control in varied))
        return [{**self.defaults(), **dict(zip((c.name for c in varied), chosen))} for chosen in product]

    def show(self, on_change: Callable[[dict, str | None], None] | None = None) -> widgets.VBox:
        """The live panel where a reader has a kernel, the static one elsewhere (:func:`mode`)."""
        return self.live(on_change) if mode() == "live" else self.static()

    def live(self, on_change: Callable[[dict, str | None], None] | None = None) -> LivePanel:
        """The panel redrawn by the kernel on every change. ``on_change(controls, name)`` runs first, with the
        name of the control that changed (None for the first drawing): it can update other controls, say a
        model's layers, without starting another drawing."""
        return LivePanel(self, on_change)

    def static(self) -> widgets.VBox:
        """Every state of :meth:`grid` drawn now; the controls switch between them in the browser."""
        varied = [control for control in self.controls if control.values()]
        controls = [self._tag(_control_widget(c, static=True), c.name) for c in varied]
        states = iter(self.grid())
        tree = self._stacks(controls, [len(c.values()) for c in varied], states)
        panel = widgets.VBox([self._control_row(controls), tree])
        return panel.add_class(f"{self.prefix}-panel").add_class("panel-static")

    def _stacks(self, controls: list[widgets.Widget], sizes: list[int],
                states: Iterator[dict[str, Any]]) -> widgets.Widget:
        """The nested Stacks below the first control of ``controls``, leaves drawn from ``states`` in order."""
        if not controls:
            return self._leaf(self.render(next(states)))
        children = [self._stacks(controls[1:], sizes[1:], states) for _ in range(sizes[0])]
        stack = widgets.Stack(children, selected_index=controls[0].index, layout=self._layout("stack"))
        widgets.jsdlink((controls[0], "index"), (stack, "selected_index"))
        return stack

    def _leaf(self, rendered: Rendered) -> widgets.VBox:
        """One drawn state: the figure above the scores (layouts shared, so a state costs four small models)."""
        image = widgets.Image(value=rendered.png, format="png",
                              layout=self._layout("figure" if rendered.png else "hidden"))
        scores = widgets.HTML(rendered.html, layout=self._layout("scores"))
        return widgets.VBox([image.add_class(f"{self.prefix}-figure"), scores.add_class(f"{self.prefix}-scores")],
                            layout=self._layout("leaf"))

    def _layout(self, part: str) -> widgets.Layout:
        """One Layout per part, shared by all states of the static panel (each is a model in the page)."""
        if part not in self._shared:
            self._shared[part] = widgets.Layout(display="none") if part == "hidden" else widgets.Layout()
        return self._shared[part]

    def _tag(self, widget: widgets.Widget, name: str) -> widgets.Widget:
        """Mark a control ``<prefix>-<name>``, the class the browser tests find it by."""
        return widget.add_class(f"{self.prefix}-{name}")

    def _control_row(self, controls: Sequence[widgets.Widget]) -> widgets.Box:
        """The controls side by side, wrapping to the next line when the page is narrow."""
        return widgets.Box(list(controls), layout=widgets.Layout(flex_flow="row wrap"))


class LivePanel(widgets.VBox):
    """A live panel: ``controls`` (name -> widget) drive it; ``rendered`` is what it shows (its ``result`` is
    None after a refusal). Setting a control's value from code redraws as a click does."""

    def __init__(self, panel: Panel, on_change: Callable[[dict, str | None], None] | None = None):
        self.panel, self.on_change = panel, on_change
        self.controls = {c.name: panel._tag(_control_widget(c, static=False), c.name) for c in panel.controls}
        self.figure = widgets.Image(format="png").add_class(f"{panel.prefix}-figure")
        self.scores = widgets.HTML().add_class(f"{panel.prefix}-scores")
        super().__init__([panel._control_row(list(self.controls.values())), self.figure, self.scores])
        self.add_class(f"{panel.prefix}-panel").add_class("panel-live")
        self.rendered: Rendered | None = None
        self._busy = True  # on_change may set controls: their own change events must not redraw
        for name, widget in self.controls.items():
            widget.observe(lambda change, name=name: self.redraw(name), names="value")
        self._busy = False
        self.redraw(None)

    def values(self) -> dict[str, Any]:
        """The setting the controls show."""
        return {name: _read(widget) for name, widget in self.controls.items()}

    def redraw(self, changed: str | None) -> None:
        """Draw the current setting; ``changed`` names the control that moved (None: the first drawing)."""
        if self._busy:
            return
        self._busy = True
        self.add_class("panel-busy")
        try:
            if self.on_change is not None:
                self.on_change(self.controls, changed)
            self.rendered = self.panel.render(self.values())
            self.figure.value = self.rendered.png
            self.figure.layout.display = None if self.rendered.png else "none"
            self.scores.value = self.rendered.html
        finally:
            self.remove_class("panel-busy")
            self._busy = False

    def close(self) -> None:
        """Close the panel and every widget in it, so a notebook's saved widget state forgets them."""
        for widget in (*self.controls.values(), self.figure, self.scores, *self.children):
            widget.close()
        super().close()
