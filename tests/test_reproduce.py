"""The reproduction runner: a tiny quick run completes, writes tidy CSVs, and resumes without redoing work."""
import json

import pandas as pd
import pytest

from cam_lib import reproduce

ARGS = ["--quick", "--images", "2", "--models", "lookalike-vgg", "--no-progress"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    assert reproduce.main([*ARGS, "--out", str(out)]) == 0
    return out


def test_quick_run_writes_tidy_csvs(quick_run):
    values = reproduce.load(quick_run)
    assert list(values.columns) == reproduce.COLUMNS
    assert values.value.notna().all()
    assert set(values.table) == {"table1", "table2", "table3", "table4", "table5", "road", "shapleycam", "arcc"}
    assert set(values.image) == {0, 1}
    assert not values.duplicated(["table", "model", "method", "utility", "image", "metric"]).any()
    shapley = values[values.table == "shapleycam"]
    assert set(shapley.utility) == {"logit", "softmax", "rest", "none"}  # none: the controls
    assert {"shap_1", "shap_10", "shap_100"} <= set(values[values.table == "table1"].method)

    summary = pd.read_csv(quick_run / "summary.csv")
    assert list(summary.columns) == ["table", "model", "method", "utility", "metric", "mean", "low", "high", "n"]
    assert "adcc" in set(summary.metric)
    assert ((summary["low"] <= summary["mean"] + 1e-9) & (summary["mean"] <= summary["high"] + 1e-9)).all()
    assert "adcc" in set(summary[summary.table == "shapleycam"].metric)
    assert "arcc" in set(summary[summary.table == "arcc"].metric)
    checks = pd.read_csv(quick_run / "checks.csv")
    assert {"claim", "model", "value", "low", "high", "n", "mde", "expected", "holds", "verdict",
            "informative"} <= set(checks.columns)
    assert checks.table.notna().all() and checks.metric.notna().all()
    assert (checks.control == checks.claim.str.contains("controls: the oracle beats random")).all()
    assert reproduce.load_settings(quick_run).classifiers == reproduce.BENCHMARKS["lookalike"]
    compared = checks.dropna(subset=["mde"])
    assert len(compared) > 10 and (compared.mde >= 0).all() and (compared.n == 2).all()
    readme = (quick_run / "README.md").read_text()
    assert "--quick" in readme and "seed" in readme and "wall time" in readme
    assert "## Claims tested (fixed before the run)" in readme and "## Profile" in readme
    profile = pd.read_csv(quick_run / "profile.csv")
    assert {"explain", "insertion", "ad"} <= set(profile.stage) and (profile.seconds >= 0).all()
    assert set(profile.model) == {"lookalike-vgg"} and "shap_1000" in set(profile.method)  # the reference


def test_resume_skips_written_pieces(quick_run, monkeypatch):
    scored = []
    original = reproduce._score_chunk
    monkeypatch.setattr(reproduce, "_score_chunk", lambda *a, **k: scored.append(a[1:3]) or original(*a, **k))
    before = reproduce.load(quick_run)
    assert reproduce.main([*ARGS, "--out", str(quick_run)]) == 0
    assert scored == []
    reproduce.piece_path(quick_run, "table4", "lookalike-vgg", "lift", "logit").unlink()
    assert reproduce.main([*ARGS, "--out", str(quick_run)]) == 0
    assert scored == [("lift", "logit")]
    after = reproduce.load(quick_run)
    key = ["table", "model", "method", "utility", "image", "metric"]
    pd.testing.assert_frame_equal(before.sort_values(key).reset_index(drop=True),
                                  after.sort_values(key).reset_index(drop=True), rtol=1e-5)


def test_resume_refuses_other_settings(quick_run):
    assert json.loads((quick_run / "settings.json").read_text())["n_images"] == 2
    with pytest.raises(ValueError, match=r"other settings|holds a run"):
        reproduce.main(["--quick", "--images", "3", "--models", "lookalike-vgg", "--no-progress",
                        "--out", str(quick_run)])


def test_method_labels():
    assert reproduce.method_call("shap_10", 3) == ("shap", {"n_permutations": 10, "seed": 3})
    assert reproduce.method_call("gradcam++", 3) == ("gradcam++", {})


def test_controls_and_new_metrics_are_in_every_table_of_maps(quick_run):
    values = reproduce.load(quick_run)
    for table in ("table3", "table4", "table5", "road", "shapleycam", "arcc"):
        here = values[values.table == table]
        assert set(reproduce.CONTROLS) <= set(here.method), table
        assert set(here[here.method.isin(reproduce.CONTROLS)].utility) == {"none"}
    assert {"road_morf", "road_lerf", "road", "faithfulness_correlation", "channel_correlation"} == set(
        values[values.table == "road"].metric)
    assert {"pointing_game_box", "pointing_game_mask"} <= set(values[values.table == "table5"].metric)
    controls = values[values.method.isin(reproduce.CONTROLS)]
    assert "channel_correlation" not in set(controls.metric) and "coherency" in set(controls.metric)
    scorecam = values[(values.method == "scorecam") & (values.table == "table3")]
    assert set(scorecam.utility) == {"softmax", "logit"}
    checks = pd.read_csv(quick_run / "checks.csv")
    oracle = checks[checks.claim.str.contains("controls: the oracle beats random")]
    assert {"pointing_mask", "pointing_game_mask", "road", "adcc"} <= set(oracle.claim.str.extract(r"on (\w+) ")[0])
    # the oracle is the ground truth: on the localisation metrics it beats random even on 2 scenes
    energy = oracle[oracle.claim.str.startswith("table5") & oracle.claim.str.contains("pointing_mask")]
    assert energy.holds.all() and (energy["low"] > 0).all()
    judged = checks[checks.claim.str.contains("LIFT-CAM at least as faithful")]
    unused = judged[judged.informative.eq(False)]
    assert unused.verdict.str.startswith("not used").all() and unused.holds.isna().all()


def test_runs_give_controls_one_utility_and_scorecam_its_softmax():
    table = reproduce.Table("t", "", ("m",), ("gradcam", "scorecam", "oracle"), ("logit",), ("ad",), 4)
    assert reproduce.runs(table) == [("gradcam", "logit"), ("scorecam", "softmax"), ("scorecam", "logit"),
                                     ("oracle", "none")]
    table = reproduce.Table("t", "", ("m",), ("gradcam", "random"), ("logit", "rest"), ("ad",), 4)
    assert reproduce.runs(table) == [("gradcam", "logit"), ("gradcam", "rest"), ("random", "none")]


def test_models_must_belong_to_the_benchmark():
    with pytest.raises(SystemExit, match="--benchmark shapes"):
        reproduce.main(["--quick", "--models", "shapes-vgg", "--out", "unused"])
    assert reproduce.tables(reproduce.settings_for(True, 2, 7, "shapes"))[0].models == ("shapes-vgg", "shapes-resnet")
    with pytest.raises(ValueError, match="unknown benchmark"):
        reproduce.Settings(2, (1,), 10, 2, 7, benchmark="imagenet")


def test_method_order_follows_the_papers_then_the_controls():
    names = ["random", "lift", "gradcam (rest)", "gradcam", "shapleycam", "scorecam (logit)", "oracle", "x"]
    assert reproduce.method_order(names) == ["gradcam", "gradcam (rest)", "scorecam (logit)", "lift",
                                             "shapleycam", "oracle", "random"]
