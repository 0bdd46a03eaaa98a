"""``python -m cam_lib reproduce``: the LIFT-CAM and ShapleyCAM papers' tables, rerun on the embedded benchmark.

One piece of work is one (table, model, method, utility); it writes its per-image values, tidy, to
``OUT/pieces/<table>/<model>/<method>__<utility>.csv.gz`` (columns ``table, model, method, utility, image,
metric, value``), and a rerun skips the pieces already written. Each explanation is computed once and
scored for every table that needs it. At the end the runner writes ``summary.csv`` (means with 95 %
bootstrap intervals; ADCC from the dataset means), ``checks.csv`` (the papers' claims, tested with paired
bootstrap intervals) and ``README.md`` (command, seed, date, wall time, verdicts).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import compare, controls, data, metrics, runtime, zoo
from .explain import Explainer

# The classifiers of a benchmark: a nonlinear head (VGG-style) and a linear one (GAP + linear). The look-alike
# scenes are the default: their models are about as sure as ImageNet models (``zoo.calibration``); the
# shape models are saturated (median true-class probability above 0.998), which the book studies.
BENCHMARKS = {"lookalike": ("lookalike-vgg", "lookalike-resnet"), "shapes": ("shapes-vgg", "shapes-resnet")}
DEFAULT_BENCHMARK = "lookalike"
VQA = "vqa-basic"
FAITHFULNESS = ("gradcam", "gradcam++", "xgradcam", "hirescam", "scorecam", "ablation", "lift")
SHAPLEY_CAMS = ("shapleycam", "shapleycam-h", "shapleycam-e")
CONTROLS = tuple(controls.CONTROLS)  # oracle, random, centre, constant: in every table of maps
CONTROL_UTILITY = "none"             # a control reads no utility
BENCHMARK_SEED = zoo.HELD_OUT_SEED  # the zoo's held-out scenes: training uses seeds 1000 and up
FULL_IMAGES = 1000          # scenes per model in the full run (about 40 minutes on 2 CPU cores, see results/README.md)
FULL_REFERENCE_IMAGES = 256  # of which Table 2 compares to SHAP-CAM_10000, and ROAD and ARCC impute
COLUMNS = ["table", "model", "method", "utility", "image", "metric", "value"]
# ROAD's cost is one imputed copy per percentage and order (about 50 ms each on 2 cores): the runner uses
# every other percentage of Rong et al.'s 10..90 and, like Table 2, the first ``reference_images`` scenes.
ROAD_PERCENTAGES = (10, 30, 50, 70, 90)


@dataclass(frozen=True)
class Table:
    """One table of a paper, rerun: its models, methods (``shap_P`` is SHAP-CAM with P orderings),
    utilities and metrics, on the first ``n_images`` scenes."""

    name: str
    caption: str
    models: tuple[str, ...]
    methods: tuple[str, ...]
    utilities: tuple[str, ...]
    metrics: tuple[str, ...]
    n_images: int


@dataclass(frozen=True)
class Settings:
    """Everything that fixes the numbers: a resumed run must use the same."""

    n_images: int
    permutations: tuple[int, ...]
    reference_permutations: int
    reference_images: int  # Table 2 runs on these first scenes: the reference costs P (K + 1) head calls each
    seed: int
    chunk: int = 32
    benchmark: str = DEFAULT_BENCHMARK  # a key of BENCHMARKS: which classifiers the tables run on

    @property
    def classifiers(self) -> tuple[str, ...]:
        """The benchmark's two classifiers: the nonlinear (VGG-style) head, then the linear one."""
        return BENCHMARKS[self.benchmark]

    def __post_init__(self):
        if self.benchmark not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {self.benchmark!r}; choose one of {list(BENCHMARKS)}")
        if self.n_images < 2:
            raise ValueError(f"need at least 2 images for bootstrap intervals, got {self.n_images}")
        if not 0 < self.reference_images <= self.n_images or (
                self.reference_images % self.chunk and self.reference_images != self.n_images):
            raise ValueError(f"reference_images ({self.reference_images}) must be a multiple of the chunk "
                             f"({self.chunk}) or all {self.n_images} images")


def tables(settings: Settings) -> list[Table]:
    """The analogues of LIFT-CAM's Tables 1-6 and of ShapleyCAM's AD/Coh/Com/ADCC/IC/ADD table."""
    shap, n = tuple(f"shap_{p}" for p in settings.permutations), settings.n_images
    mapped = FAITHFULNESS + CONTROLS
    classifiers = BENCHMARKS[settings.benchmark]
    return [
        Table("table1", "SHAP-CAM_P: more orderings, more faithful (IC, AD, ADD)", classifiers, shap,
              ("logit",), ("ic", "ad", "add"), n),
        Table("table2", f"Cosine similarity of alpha to SHAP-CAM_{settings.reference_permutations}; "
              "local-accuracy gap", classifiers, FAITHFULNESS + SHAPLEY_CAMS + shap, ("logit",),
              ("cosine", "local_accuracy_gap"), settings.reference_images),
        Table("table3", "Faithfulness: IC, AD, ADD", classifiers, mapped, ("logit",), ("ic", "ad", "add"), n),
        Table("table4", "Insertion and deletion AUC (41 steps)", classifiers, mapped, ("logit",),
              ("insertion", "deletion"), n),
        Table("table5", "Pointing games: energy and argmax, boxes and masks", classifiers, mapped, ("logit",),
              ("pointing_box", "pointing_mask", "pointing_game_box", "pointing_game_mask"), n),
        Table("table6", "VQA: IC, AD, ADD", (VQA,), mapped, ("logit",), ("ic", "ad", "add"), n),
        Table("road", "ROAD (noisy linear imputation) and faithfulness correlation, pixels and channels",
              classifiers, mapped, ("logit",),
              ("road_morf", "road_lerf", "road", "faithfulness_correlation", "channel_correlation"),
              settings.reference_images),
        # Score-CAM is left out here: K whole-network passes per image, for 3 utilities, twice for Coherency.
        Table("shapleycam", "ShapleyCAM paper: AD, Coherency, Complexity, (ADCC), IC, ADD", classifiers,
              tuple(m for m in FAITHFULNESS if m != "scorecam") + SHAPLEY_CAMS + CONTROLS,
              ("logit", "softmax", "rest"), ("ad", "coherency", "complexity", "ic", "add", "add_clamped"), n),
        # ROAD imputes 10 copies of each image: ARCC is computed for the ShapleyCAM paper's own setting only.
        Table("arcc", "ARCC: Coherency, Complexity and ROAD with the ReST utility", classifiers,
              ("gradcam", "hirescam", *SHAPLEY_CAMS, *CONTROLS), ("rest",), ("coherency", "complexity", "road"),
              settings.reference_images),
    ]


def runs(table: Table) -> list[tuple[str, str]]:
    """The (method, utility) pieces of a table: every method with every utility, except that a control
    runs once (utility "none") and Score-CAM runs with its own softmax utility first (Wang et al. 2020),
    the table's logit as a second row."""
    pairs = []
    for method in table.methods:
        if method in CONTROLS:
            pairs.append((method, CONTROL_UTILITY))
        elif method == "scorecam" and table.utilities == ("logit",):
            pairs += [("scorecam", "softmax"), ("scorecam", "logit")]
        else:
            pairs += [(method, utility) for utility in table.utilities]
    return pairs


def method_order(names: Sequence[str]) -> list[str]:
    """``names`` in the papers' order: the methods (a method's second utility, ``"m (u)"``, right after it),
    the Shapley CAMs, then the controls; names the runner does not know are left out."""
    names = list(names)
    methods = [n for m in FAITHFULNESS + SHAPLEY_CAMS
               for n in [m] * (m in names) + [n for n in names if n.startswith(f"{m} (")]]
    return methods + [c for c in CONTROLS if c in names]


def method_call(label: str, seed: int) -> tuple[str, dict]:
    """``"shap_10"`` -> ``("shap", {"n_permutations": 10, "seed": seed})``; other labels are method names."""
    if label.startswith("shap_"):
        return "shap", {"n_permutations": int(label.removeprefix("shap_")), "seed": seed}
    return label, {}


@dataclass
class Benchmark:
    """A model of the zoo and the scenes it is explained on (normalised images, ground truth)."""

    name: str
    explainer: Explainer
    images: Tensor
    extra_inputs: tuple
    masks: Tensor
    boxes: Tensor

    @cached_property
    def scorer(self) -> torch.nn.Module:
        """The model the metrics' many passes run through: ``runtime.inference_copy``, the same function."""
        return runtime.inference_copy(self.explainer.model)

    @cached_property
    def cam_size(self) -> tuple[int, int]:
        """``(h, w)`` of the explained layer, where the controls make their maps."""
        extra = tuple(e[:1] for e in self.extra_inputs)
        height, width = self.explainer.game(self.images[:1], extra_inputs=extra).activations.shape[-2:]
        return height, width


def load_benchmark(name: str, n_images: int, seed: int) -> Benchmark:
    """``n_images`` held-out scenes of the model's world, generated from ``seed``."""
    entry = zoo.load(name)
    explainer = entry.explainer()
    scenes = zoo.scenes(name, n_images, seed)
    if isinstance(scenes, data.VQAScenes):
        return Benchmark(name, explainer, scenes.images, (scenes.questions,),
                         scenes.evidence_masks, torch.zeros(n_images, 0, 4, dtype=torch.long))
    return Benchmark(name, explainer, scenes.images, (), scenes.masks, scenes.boxes)


def piece_path(out: Path, table: str, model: str, method: str, utility: str) -> Path:
    """Where one piece's per-image values live."""
    return out / "pieces" / table / model / f"{method}__{utility}.csv.gz"


def run(out: str | Path, settings: Settings, models: Sequence[str] | None = None,
        progress: bool = True) -> pd.DataFrame:
    """Compute every missing piece into ``out``; return the per-image values of all pieces."""
    out = Path(out)
    _check_settings(out, settings)
    plan = tables(settings)
    models = [m for m in dict.fromkeys(m for table in plan for m in table.models)
              if models is None or m in models]
    for model in models:
        groups = _missing(out, plan, model)
        if not groups:
            continue
        bench = load_benchmark(model, settings.n_images, settings.seed)
        starts = {key: range(0, max(t.n_images for t in wanted), settings.chunk) for key, wanted in groups.items()}
        bar = tqdm(total=sum(map(len, starts.values())), desc=model, disable=not progress)
        needs_reference = any("cosine" in t.metrics for wanted in groups.values() for t in wanted)
        reference = _reference(out, bench, settings, bar) if needs_reference else None
        shared: dict[int, dict] = {}  # per chunk: the passes every method's metrics share (metrics.evaluate)
        for (method, utility), wanted in groups.items():
            bar.set_postfix_str(f"{method} / {utility}")
            frames: list[pd.DataFrame] = []
            timings: dict[str, float] = {}
            for start in starts[method, utility]:
                rows = slice(start, start + settings.chunk)
                frames.append(_score_chunk(bench, method, utility, [t for t in wanted if t.n_images > start],
                                           rows, settings.seed, reference, timings, shared.setdefault(start, {})))
                bar.update()
            _write_pieces(out, model, method, utility, pd.concat(frames, ignore_index=True), wanted)
            _log_profile(out, model, method, utility, timings, max(t.n_images for t in wanted))
        bar.close()
    return load(out)


def _missing(out: Path, plan: list[Table], model: str) -> dict[tuple[str, str], list[Table]]:
    """``{(method, utility): tables}``: the pieces of ``model`` not yet written, by the explanation they need."""
    groups: dict[tuple[str, str], list[Table]] = {}
    for table in plan:
        if model not in table.models:
            continue
        for method, utility in runs(table):
            if not piece_path(out, table.name, model, method, utility).exists():
                groups.setdefault((method, utility), []).append(table)
    return groups


def _reference(out: Path, bench: Benchmark, settings: Settings, bar: tqdm) -> Tensor:
    """SHAP-CAM alpha with ``reference_permutations`` orderings (logit utility), cached as ``reference/<model>.pt``."""
    path = out / "reference" / f"{bench.name}.pt"
    if path.exists():
        return torch.load(path)
    bar.set_postfix_str(f"reference SHAP-CAM_{settings.reference_permutations}")
    began, alphas = time.perf_counter(), []
    for rows in torch.arange(settings.reference_images).split(4):  # [4, P, K] marginals at a time
        extra = tuple(e[rows] for e in bench.extra_inputs)
        alphas.append(bench.explainer(bench.images[rows], "shap", extra_inputs=extra, batch_size=65536,
                                      n_permutations=settings.reference_permutations, seed=settings.seed + 1)
                      .alpha.cpu())
        bar.refresh()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torch.cat(alphas), path)
    _log_profile(out, bench.name, f"shap_{settings.reference_permutations}", "logit",
                 {"explain": time.perf_counter() - began}, settings.reference_images)
    return torch.cat(alphas)


def _log_profile(out: Path, model: str, method: str, utility: str, timings: dict[str, float], n_images: int) -> None:
    """Append where one piece's time went (``explain``: the method; then one stage per metric, a pass several
    metrics share charged to the first) to ``out/profile.csv``: the profile ``results/README.md`` reports."""
    path = out / "profile.csv"
    rows = pd.DataFrame([{"model": model, "method": method, "utility": utility, "stage": stage,
                          "seconds": round(seconds, 3), "images": n_images} for stage, seconds in timings.items()])
    rows.to_csv(path, mode="a", header=not path.exists(), index=False)


def _score_chunk(bench: Benchmark, method: str, utility: str, wanted: list[Table], rows: slice,
                 seed: int, reference: Tensor | None, timings: dict[str, float],
                 shared: dict | None = None) -> pd.DataFrame:
    """Explain one chunk of images with one method (or make a control's maps) and score it with every
    metric its pieces need; the control's rerun for Coherency makes its map again. Seconds per stage are
    added to ``timings``."""
    name, options = method_call(method, seed)
    images, extra = bench.images[rows], tuple(e[rows] for e in bench.extra_inputs)
    needed = list(dict.fromkeys(m for table in wanted for m in table.metrics))
    common: dict[str, Any] = dict(extra_inputs=extra, boxes=bench.boxes[rows], masks=bench.masks[rows], seed=seed,
                  road_percentages=ROAD_PERCENTAGES, timings=timings, shared=shared)
    if method in CONTROLS:
        image_ids = torch.arange(len(bench.images))[rows]
        make = lambda masked: controls.saliency(method, bench.masks[rows], bench.cam_size, image_ids, seed)  # noqa: E731
        table = metrics.evaluate(bench.scorer, images, make(images), metrics.applicable(needed, False),
                                 rerun=make, **common)
    else:
        began = time.perf_counter()
        explanation = bench.explainer(images, name, utility=utility, extra_inputs=extra, **options)
        timings["explain"] = timings.get("explain", 0.0) + time.perf_counter() - began
        table = metrics.evaluate(bench.scorer, images, explanation, needed,
                                 reference_alpha=None if reference is None else reference[rows],
                                 explainer=bench.explainer, method_options=options, **common)
    table["image"] += rows.start
    return table


def _write_pieces(out: Path, model: str, method: str, utility: str, values: pd.DataFrame,
                  wanted: list[Table]) -> None:
    """Split one method's values into its tables' pieces; each file appears whole or not at all."""
    for table in wanted:
        piece = values[values.metric.isin(table.metrics) & (values.image < table.n_images)]
        piece = piece.assign(table=table.name, model=model, method=method, utility=utility)[COLUMNS]
        path = piece_path(out, table.name, model, method, utility)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        piece.to_csv(partial, index=False, float_format="%.7g", compression={"method": "gzip", "mtime": 0})
        partial.replace(path)


def _check_settings(out: Path, settings: Settings) -> None:
    """Record the settings in ``out/settings.json``; refuse to resume a run made with other settings."""
    path = out / "settings.json"
    mine = json.loads(json.dumps(asdict(settings)))
    if path.exists() and json.loads(path.read_text()) != mine:
        raise ValueError(f"{out} holds a run with settings {path.read_text()}; this run has {mine}. "
                         "Use another --out, or delete the folder to start afresh.")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(mine, indent=1))


def load(out: str | Path) -> pd.DataFrame:
    """Every piece's per-image values in ``out``, in one tidy DataFrame (the book reads results this way)."""
    paths = sorted((Path(out) / "pieces").glob("*/*/*.csv.gz"))
    if not paths:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat([pd.read_csv(path) for path in paths], ignore_index=True)


# ---------------------------------------------------------------------------------------------
# The papers' claims, checked
# ---------------------------------------------------------------------------------------------

FLOAT_TIE = 1e-3  # percent: differences of means below this are float noise
# What the runner tests, fixed before the full run on the look-alike benchmark (the claims of the issue that
# built ``reproduce``, and the ReST claims of the ShapleyCAM paper); ``checks`` has a row per claim and model.
CLAIMS = (
    "controls: the oracle map beats the random map on each metric of each table (is the metric informative here?)",
    "table1: SHAP-CAM_P ordered in P on IC, AD and ADD",
    "table2: cos(LIFT-CAM, SHAP-CAM_10000) > 0.999 on a linear head and > 0.9 on a nonlinear one",
    "table2: LIFT-CAM closer to SHAP-CAM_10000 than Grad-CAM (paired cosine)",
    "table2: Ablation-CAM's local-accuracy gap non-zero, LIFT-CAM's zero to float precision",
    "tables 3, 4, 6 and road: LIFT-CAM at least as faithful as Grad-CAM on every metric (paired)",
    "shapleycam: ShapleyCAM no worse than Grad-CAM on AD, both with ReST (paired)",
    "shapleycam: ReST lowers Grad-CAM's AD compared with the logit (paired)",
    "shapleycam: ShapleyCAM no worse than Grad-CAM on ADCC, both with ReST (paired bootstrap of ADCC)",
    "arcc: ShapleyCAM no worse than Grad-CAM on ARCC, both with ReST (paired bootstrap of ARCC)",
)


def checks(values: pd.DataFrame, summary: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The issue's expectations, one row each: claim, model, value with interval, expectation, verdict, and
    whether the metric is informative here (its oracle beats random), first the controls' own rows."""
    rows = []
    mean = summary.set_index(["table", "model", "method", "utility", "metric"])
    for model in values.model.unique():
        here = values[values.model == model]
        control_rows = _control_checks(here, model)
        informative = {(row["table"], row["metric"]): row["holds"] for row in control_rows}
        rows += control_rows
        rows += _table1_checks(here, mean, model, settings, informative)
        if "table2" in set(here.table):
            rows += _table2_checks(here, mean, model, settings)
        for table in ("table3", "table4", "table6", "road"):
            for metric in dict.fromkeys(here[here.table == table].metric):
                check = _lift_vs_gradcam(here, model, table, metric, informative.get((table, metric)))
                if check is not None:
                    rows.append(check)
        if {"shapleycam", "arcc"} & set(here.table):
            rows += _shapleycam_checks(here, mean, model, informative)
    found = pd.DataFrame(rows)
    found["control"] = found.claim.str.contains(": controls: ")
    first = ["claim", "table", "metric", "model"]
    return found[first + [c for c in found.columns if c not in first]]


def _measured(found: dict) -> dict:
    """A paired comparison's columns of ``checks.csv``: the improvement, its interval, ``n`` and the minimum
    detectable effect."""
    return dict(value=found["improvement"], low=found["low"], high=found["high"], n=found["n"], mde=found["mde"])


def _control_checks(values: pd.DataFrame, model: str) -> list[dict]:
    """Does each metric rank the oracle above random, with a paired interval that excludes 0? A metric that
    does not is uninformative on this benchmark: no verdict about a method is drawn from it. A dataset-level
    metric (ADCC, ARCC) is tested itself, by the paired bootstrap of the combination."""
    rows = []
    for table in dict.fromkeys(values.table):
        here = values[values.table == table]
        if not {"oracle", "random"} <= set(here.method):
            continue
        measured = list(dict.fromkeys(here[here.method == "oracle"].metric))
        combined = [m.name for m in metrics.METRICS.values() if m.combine and set(m.combines) <= set(measured)]
        for metric in measured + combined:
            found = compare.improvement(here, metric, {"method": "oracle"}, {"method": "random"})
            rows.append(dict(claim=f"{table}: controls: the oracle beats random on {metric} (improvement, paired)",
                             model=model, **_measured(found),
                             expected="> 0 (the metric sees the evidence)", holds=found["verdict"] == "better",
                             verdict=found["verdict"], informative=found["verdict"] == "better",
                             table=table, metric=metric))
    return rows


def _lift_vs_gradcam(values: pd.DataFrame, model: str, table: str, metric: str,
                     informative: bool | None) -> dict | None:
    """LIFT-CAM at least as faithful as Grad-CAM: the paired improvement must not be significantly negative;
    not judged on a metric that fails the controls' test."""
    select = values[values.table == table]
    if not {"lift", "gradcam"} <= set(select.method) or metric not in set(select[select.method == "lift"].metric):
        return None
    found = compare.improvement(select, metric, {"method": "lift"}, {"method": "gradcam"})
    verdict = found["verdict"] if informative is not False else (
        f"not used: {metric} does not rank the oracle above random here ({found['verdict']})")
    if informative is None:  # no controls' test: a metric of alpha, or a table without controls
        untested = "explanation" in metrics.METRICS[metric].needs
        verdict += " (untested metric: controls have no alpha)" if untested else " (untested: no controls here)"
    return dict(claim=f"{table}: LIFT-CAM at least as faithful as Grad-CAM on {metric} (improvement, paired)",
                table=table, metric=metric, model=model, **_measured(found),
                expected=">= 0 (not significantly < 0)",
                holds=found["verdict"] != "worse" if informative is not False else None,
                verdict=verdict, informative=informative)


def _table1_checks(values: pd.DataFrame, mean: pd.DataFrame, model: str, settings: Settings,
                   informative: dict) -> list[dict]:
    """SHAP-CAM_P: IC and ADD rise, AD falls, as P grows (Table 1's order).

    Means within ``FLOAT_TIE`` (percent) count as equal: on an additive game (a linear head) every ordering
    gives the exact Shapley value, so every P scores the same and no order can show. Whether IC, AD and ADD
    are informative comes from the controls of Table 3 (the same metrics on the same scenes).
    """
    if "table1" not in set(values.table):
        return []
    rows = []
    first, last = (f"shap_{p}" for p in (settings.permutations[0], settings.permutations[-1]))
    for metric in ("ic", "ad", "add"):
        means = [mean.loc[("table1", model, f"shap_{p}", "logit", metric), "mean"] for p in settings.permutations]
        sign = 1 if metrics.METRICS[metric].higher_is_better else -1
        steps = [sign * (b - a) for a, b in pairwise(means)]
        flat = all(abs(step) < FLOAT_TIE for step in steps)
        ordered = all(step > -FLOAT_TIE for step in steps)
        found = compare.improvement(values[values.table == "table1"], metric, {"method": last}, {"method": first})
        order = "flat: every P scores the same (exact Shapley values)" if flat else (
            "ordered" if ordered else "not ordered")
        rows.append(dict(claim=f"table1: SHAP-CAM_P ordered on {metric} "
                     f"({' / '.join(f'{m:.4g}' for m in means)} for P = {settings.permutations}); "
                     f"value: improvement of {last} over {first}", table="table1", metric=metric, model=model,
                     **_measured(found), expected="monotone in P, as in the paper", holds=ordered,
                     verdict=f"{order}; {found['verdict']}", informative=informative.get(("table3", metric))))
    return rows


def _table2_checks(values: pd.DataFrame, mean: pd.DataFrame, model: str, settings: Settings) -> list[dict]:
    """cos(LIFT, SHAP_ref) > 0.9 (1.0 on a linear head); LIFT closer than Grad-CAM; Ablation-CAM's gap non-zero."""
    linear = has_linear_head(model)
    cosine = mean.loc[("table2", model, "lift", "logit", "cosine")]
    threshold = 0.999 if linear else 0.9
    rows = [dict(claim=f"table2: cos(LIFT-CAM, SHAP-CAM_{settings.reference_permutations}), "
                 f"{'linear' if linear else 'nonlinear'} head", table="table2", metric="cosine", model=model,
                 value=cosine["mean"],
                 low=cosine["low"], high=cosine["high"], expected=f"> {threshold} (lower bound)",
                 holds=bool(cosine["low"] > threshold), verdict="above" if cosine["low"] > threshold else "below")]
    found = compare.improvement(values[values.table == "table2"], "cosine", {"method": "lift"}, {"method": "gradcam"})
    rows.append(dict(claim="table2: cosine of LIFT-CAM minus cosine of Grad-CAM (paired)", table="table2",
                     metric="cosine", model=model,
                     **_measured(found), expected="> 0",
                     holds=found["verdict"] == "better", verdict=found["verdict"]))
    for method, expected in (("ablation", "> 0.001"), ("lift", "< 0.001 (float precision)")):
        gap = mean.loc[("table2", model, method, "logit", "local_accuracy_gap")]
        nonzero = gap["low"] > 1e-3
        rows.append(dict(claim=f"table2: {method} local-accuracy gap |sum alpha - (v(N) - v(0))|", table="table2",
                         metric="local_accuracy_gap", model=model,
                         value=gap["mean"], low=gap["low"], high=gap["high"], expected=expected,
                         holds=bool(nonzero if method == "ablation" else gap["mean"] < 1e-3),
                         verdict="non-zero" if nonzero else "zero"))
    return rows


def _shapleycam_checks(values: pd.DataFrame, mean: pd.DataFrame, model: str, informative: dict) -> list[dict]:
    """ShapleyCAM vs Grad-CAM with ReST (AD, ADCC, ARCC), and the utility's effect on Grad-CAM's AD
    (ShapleyCAM paper); ADCC and ARCC are compared by a paired bootstrap of the dataset-level combination."""
    shapley, grad = {"method": "shapleycam", "utility": "rest"}, {"method": "gradcam", "utility": "rest"}
    claims = [("shapleycam", "AD of Grad-CAM minus AD of ShapleyCAM, ReST (paired)", "ad", shapley, grad,
               ">= 0 (ShapleyCAM no worse)", lambda v: v != "worse"),
              ("shapleycam", "AD of Grad-CAM with logit minus with ReST (paired)", "ad", grad,
               {"method": "gradcam", "utility": "logit"}, "> 0 (ReST helps)", lambda v: v == "better"),
              ("shapleycam", "ADCC of ShapleyCAM minus Grad-CAM, ReST (paired bootstrap of ADCC)", "adcc", shapley,
               grad, ">= 0 (ShapleyCAM no worse)", lambda v: v != "worse"),
              ("arcc", "ARCC of ShapleyCAM minus Grad-CAM, ReST (paired bootstrap of ARCC)", "arcc", shapley, grad,
               ">= 0 (ShapleyCAM no worse)", lambda v: v != "worse")]
    rows = []
    for table, claim, metric, first, second, expected, holds in claims:
        select = values[values.table == table]
        if not set(metrics.METRICS[metric].combines or (metric,)) <= set(select.metric):
            continue
        found = compare.improvement(select, metric, first, second)
        informative_here = informative.get((table, metric))
        rows.append(dict(claim=f"{table}: {claim}", table=table, metric=metric, model=model,
                         **_measured(found), expected=expected,
                         holds=holds(found["verdict"]) if informative_here is not False else None,
                         verdict=found["verdict"] if informative_here is not False else
                         f"not used: {metric} fails the controls' test here ({found['verdict']})",
                         informative=informative_here))
    return rows


def has_linear_head(model: str) -> bool:
    """Is the model's head global average pooling + one linear layer (CAM's setting)? Asks method 'cam'."""
    entry = zoo.load(model)
    try:
        entry.explainer()(zoo.scenes(model, 1, 0).images, "cam")
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def settings_for(quick: bool, n_images: int | None, seed: int, benchmark: str = DEFAULT_BENCHMARK,
                 reference_images: int | None = None) -> Settings:
    """``--quick``: 8 images, P in 1/10/100, a SHAP-CAM_1000 reference; full: ``FULL_IMAGES`` images,
    and SHAP-CAM_10000 (with ROAD and the correlations) on the first ``FULL_REFERENCE_IMAGES``."""
    if quick:
        n_images = n_images or 8
        return Settings(n_images, (1, 10, 100), 1000, n_images, seed, chunk=8, benchmark=benchmark)
    n_images = n_images or FULL_IMAGES
    reference = reference_images or min(n_images, FULL_REFERENCE_IMAGES)
    return Settings(n_images, (1, 10, 100), 10000, reference, seed, benchmark=benchmark)


def parser() -> argparse.ArgumentParser:
    """``reproduce [--quick] [--images N] [--out DIR] [--seed S] [--benchmark B] [--models M ...] [--no-progress]``."""
    parse = argparse.ArgumentParser(prog="python -m cam_lib reproduce", description=__doc__.splitlines()[0])
    parse.add_argument("--quick", action="store_true", help="a few images and a small SHAP reference (minutes)")
    parse.add_argument("--images", type=int, default=None,
                       help=f"scenes per model (default {FULL_IMAGES}, quick 8)")
    parse.add_argument("--reference-images", type=int, default=None,
                       help=f"scenes of the SHAP-CAM_10000 reference, ROAD and ARCC (default {FULL_REFERENCE_IMAGES})")
    parse.add_argument("--out", default="runs/reproduce", help="output folder (default runs/reproduce)")
    parse.add_argument("--seed", type=int, default=BENCHMARK_SEED,
                       help=f"scenes and orderings (default {BENCHMARK_SEED})")
    parse.add_argument("--benchmark", choices=list(BENCHMARKS), default=DEFAULT_BENCHMARK,
                       help="the classifiers: " + "; ".join(f"{key}: {', '.join(models)}" for key, models
                                                            in BENCHMARKS.items()) + f" (default {DEFAULT_BENCHMARK})")
    parse.add_argument("--models", nargs="+", default=None, help="a subset of the benchmark's classifiers and "
                       f"{VQA} (default: all three)")
    parse.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parse


def main(argv: Sequence[str] | None = None) -> int:
    """Run, then write ``summary.csv``, ``checks.csv`` and ``README.md`` into ``--out``."""
    args = parser().parse_args(argv)
    settings = settings_for(args.quick, args.images, args.seed, args.benchmark, args.reference_images)
    models = _models(args.models, args.benchmark)
    began = time.perf_counter()
    values = run(args.out, settings, models, progress=not args.no_progress)
    summary = metrics.summarise(values, seed=settings.seed)
    found = checks(values, summary, settings)
    out = Path(args.out)
    summary.to_csv(out / "summary.csv", index=False, float_format="%.6g")
    found.to_csv(out / "checks.csv", index=False, float_format="%.6g")
    argv = sys.argv[1:] if argv is None else list(argv)
    write_readme(out, ["python", "-m", "cam_lib", "reproduce", *argv], settings, models,
                 time.perf_counter() - began, found)
    print(f"wrote {out / 'summary.csv'}, {out / 'checks.csv'}: "
          f"{int(found.holds.fillna(True).astype(bool).sum())} of {len(found)} checks hold")
    return 0


def _models(asked: Sequence[str] | None, benchmark: str) -> list[str]:
    """The models to run: those asked for (all of the benchmark's and VQA by default), each in this benchmark;
    a model whose weights are missing is skipped with a note (a fresh clone has them all)."""
    known = [*BENCHMARKS[benchmark], VQA]
    for name in asked or ():
        if name not in known:
            home = [key for key, models in BENCHMARKS.items() if name in models]
            hint = f"add --benchmark {home[0]}" if home else f"choose from {known}"
            raise SystemExit(f"model {name!r} is not in the {benchmark!r} benchmark: {hint}")
    chosen = list(asked or known)
    for name in chosen:
        if not zoo_has(name):
            print(f"skipping {name}: no weights (train them with python -m cam_lib.zoo train {name})")
    return [name for name in chosen if zoo_has(name)]


def zoo_has(name: str) -> bool:
    """Can the zoo load this model here (its weights are present)?"""
    try:
        zoo.load(name)
    except (FileNotFoundError, KeyError, ValueError):
        return False
    return True


def write_readme(out: Path, command: list[str], settings: Settings, models: list[str], wall_time: float,
                 found: pd.DataFrame) -> None:
    """What made these files: command, seed, dates, wall times (every invocation, in ``invocations.csv``),
    machine, the tables and the checks' verdicts."""
    log = out / "invocations.csv"
    invocation = pd.DataFrame([{"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                                "command": " ".join(command), "models": " ".join(models),
                                "wall_seconds": round(wall_time, 1), "machine": _machine()}])
    invocations = pd.concat([pd.read_csv(log), invocation]) if log.exists() else invocation
    invocations.to_csv(log, index=False)
    is_control = found.control
    lines = [
        f"# Reproduction of the LIFT-CAM and ShapleyCAM tables on the {settings.benchmark} benchmark", "",
        f"- command: `{' '.join(command)}`",
        f"- seed: {settings.seed} (scenes `cam_lib.data`, seed {settings.seed}; SHAP-CAM orderings seed "
        f"{settings.seed}, reference seed {settings.seed + 1})",
        f"- images per model: {settings.n_images}; models: {', '.join(sorted(set(found.model)))}",
        f"- SHAP-CAM_P for P in {list(settings.permutations)}; reference SHAP-CAM_{settings.reference_permutations} "
        f"on the first {settings.reference_images} images (Table 2)",
        f"- date: {invocation.date[0]}; machine: {invocation.machine[0]}",
        f"- weights (sha256, first 12): {', '.join(f'{m} {_weights_hash(m)}' for m in sorted(set(found.model)))}",
        f"- wall time: {invocations.wall_seconds.sum() / 60:.1f} min in {len(invocations)} invocation(s) "
        "(a resumed invocation skips the pieces already written; see `invocations.csv`)",
        "", "Files: `pieces/<table>/<model>/<method>__<utility>.csv.gz` (per image; `cam_lib.reproduce.load`),",
        "`summary.csv` (mean, 95 % bootstrap interval, n), `checks.csv` (the claims below).", "",
        "## Tables", "", _markdown(pd.DataFrame([{k: ", ".join(v) if isinstance(v, tuple) else v
                                                   for k, v in asdict(table).items()} for table in tables(settings)])),
        "",
        "## Controls: which metrics can tell a map from noise here", "",
        "Each metric is informative on this benchmark only if it ranks the oracle map (the ground-truth evidence)",
        "above the random map with a paired 95 % interval that excludes 0; claims about methods are judged",
        "only on informative metrics.", "",
        _markdown(_control_table(found)), "",
        "## Claims tested (fixed before the run)", "", *[f"- {claim}" for claim in CLAIMS], "",
        "Each check gives the paired difference with its 95 % bootstrap interval, the number of images `n` and",
        "the minimum detectable effect `mde` at that n (80 % power): a tie with a large mde says little.", "",
        "## Checks", "", _markdown(found[~is_control].drop(columns=["control"])), "",
        "## What does not reproduce here", "",
        *([f"- {row.model}: {row.claim}: {row.value:.4g} (expected {row.expected}; {row.verdict})"
           for row in found[~is_control & found.holds.eq(False)].itertuples()] or ["- every check above holds"]),
        "",
        *_profile_section(out),
    ]
    (out / "README.md").write_text("\n".join(lines))


def _profile_section(out: Path) -> list[str]:
    """Where the run's time went (``profile.csv``): seconds by stage (a method's explanations, each metric) and
    by method, summed over models and invocations."""
    path = out / "profile.csv"
    if not path.exists():
        return []
    profile = pd.read_csv(path)
    total = profile.seconds.sum()

    def share(column: str) -> pd.DataFrame:
        seconds = profile.groupby(column).seconds.sum().sort_values(ascending=False)
        return pd.DataFrame({column: seconds.index, "seconds": seconds.round(1).to_numpy(),
                             "share %": (100 * seconds / total).round(1).to_numpy()})
    return ["## Profile", "",
            f"{total / 60:.1f} min of measured work (`profile.csv`: model, method, utility, stage, seconds, images).",
            "A stage is a method's explanations (`explain`) or one metric; a model pass that several metrics",
            "share is charged to the first that needs it.", "",
            _markdown(share("stage")), "", _markdown(share("method")), "",
            "Where the time went before this runner was made to fit 1,000 scenes (the same profile, 32 scenes of",
            "`lookalike-vgg`, one thread): insertion/deletion 37 %, faithfulness correlation 33 %, ROAD 20 %,",
            "explanations 7 % (Score-CAM most of it). Since then the metrics' passes run through",
            "`runtime.inference_copy` (batch norm folded into the convolutions, channels-last: about twice as",
            "fast on a CPU); the passes that do not depend on the map (`Y`, the 64 patch-subset drops of",
            "faithfulness correlation) are made once per chunk of scenes and shared by every method",
            "(`metrics.evaluate(shared=...)`); and the SHAP-CAM_10000 reference, ROAD and ARCC run on the first",
            "`reference_images` scenes. `benchmarks/metrics_speed.py` measures each speed-up against the old way.", ""]


def _control_table(found: pd.DataFrame) -> pd.DataFrame:
    """The controls' rows: does each (table, metric) rank the oracle above random? "yes" / "no (verdict)"."""
    rows = found[found.control]
    return pd.DataFrame({"table": rows.table, "metric": rows.metric, "model": rows.model,
                         "oracle - random": rows.value, "low": rows.low, "high": rows.high,
                         "informative": rows.verdict.map(lambda v: "yes" if v == "better" else f"no ({v})")})


def load_settings(out: str | Path) -> Settings:
    """The settings a run in ``out`` was made with (``settings.json``); ``.classifiers`` names its models."""
    path = Path(out) / "settings.json"
    if not path.exists():
        raise FileNotFoundError(f"no run in {out}: make one with python -m cam_lib reproduce --out {out}")
    found = json.loads(path.read_text())
    return Settings(**{**found, "permutations": tuple(found["permutations"])})


def _weights_hash(model: str) -> str:
    """Which weights made the numbers: the start of the sha256 of ``cam_lib/weights/<model>.pt``."""
    path = zoo.WEIGHTS / f"{model}.pt"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.exists() else "missing"


def _machine() -> str:
    """Where the numbers were computed, in a few words."""
    accelerator = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU only"
    return f"{platform.machine()}, {torch.get_num_threads()} torch threads, {accelerator}"


def _markdown(frame: pd.DataFrame) -> str:
    """A plain Markdown table (no extra dependency)."""
    def cell(value: object) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    return "\n".join([header, rule, *("| " + " | ".join(cell(v) for v in row) + " |"
                                       for row in frame.itertuples(index=False))])
