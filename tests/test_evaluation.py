"""``facekeeper eval``: the metrics on distances with known answers, pairs files, and a run on real photos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from facekeeper import evaluation as ev
from facekeeper.bundle import load_trusted_bundle
from facekeeper.engine import Engine
from facekeeper.errors import InvalidInput
from tests.conftest import LONDON

PEOPLE = ("001", "002", "003", "004", "005", "006")

# 10,000 impostor distances 0.5001 .. 1.5 and 100 genuine ones, 4 of them in the impostor range.
IMPOSTOR = np.arange(1, 10_001) / 10_000 + 0.5
GENUINE = np.array([0.2] * 96 + [0.5005, 0.505, 0.7, 0.9])


def test_fnmr_at_fmr_uses_the_nth_smallest_impostor_distance() -> None:
    p2, p3, p4, p5 = (ev.operating_point(GENUINE, IMPOSTOR, f) for f in (1e-2, 1e-3, 1e-4, 1e-5))
    assert (p2.threshold, p2.false_matches, p2.fnmr) == (pytest.approx(0.51), 100, pytest.approx(0.02))
    assert (p3.threshold, p3.false_matches, p3.fnmr) == (pytest.approx(0.501), 10, pytest.approx(0.03))
    assert (p4.threshold, p4.false_matches, p4.fnmr) == (pytest.approx(0.5001), 1, pytest.approx(0.04))
    assert p5.threshold is None and p5.fnmr is None and p5.impostor_pairs == 10_000  # 1e-5 of 10,000 < 1 pair
    assert p3.measured_fmr == pytest.approx(1e-3)


def test_calibration_points_need_ten_false_matches() -> None:
    assert [p.target_fmr for p in ev.calibration_points(GENUINE, IMPOSTOR)] == [1e-2, 1e-3]
    table = ev.calibration_table("m-v1", "synthetic", GENUINE, IMPOSTOR)
    assert table.points == ((1e-3, 0.501), (1e-2, 0.51)) and table.impostor_pairs == 10_000
    with pytest.raises(InvalidInput, match="too few impostor pairs"):
        ev.calibration_table("m-v1", "tiny", GENUINE, IMPOSTOR[:500])


def test_equal_error_rate_and_best_accuracy_on_a_known_crossing() -> None:
    genuine = np.array([0.1, 0.2, 0.3, 0.4, 0.6])
    impostor = np.array([0.5, 0.7, 0.8, 0.9, 1.0])
    assert ev.equal_error_rate(genuine, impostor) == (pytest.approx(0.2), pytest.approx(0.5))
    assert ev.best_accuracy(genuine, impostor) == (pytest.approx(0.9), pytest.approx(0.4))
    fmr, fnmr = ev.error_rates(genuine, impostor, np.array([0.0, 0.55, 2.0]))
    assert fmr.tolist() == pytest.approx([0.0, 0.2, 1.0]) and fnmr.tolist() == pytest.approx([1.0, 0.2, 0.0])


def test_all_pairs_counts_each_unordered_pair_once() -> None:
    vecs = np.array([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 4.0]])
    genuine, impostor = ev.all_pairs(vecs, np.array(["a", "a", "b", "b"]))
    assert sorted(genuine.tolist()) == [1.0, 4.0]
    assert sorted(impostor.tolist()) == pytest.approx(sorted([3.0, 5.0, np.sqrt(10), np.sqrt(18)]))


def test_lfw_pairs_file_with_and_without_header(tmp_path: Path) -> None:
    text = "2\t2\nAaron\t1\t2\nBo_Li\t3\t10\nAaron\t1\tBo_Li\t2\nCy\t4\tAaron\t3\n"
    pairs = ev.parse_lfw_pairs(text, tmp_path)
    assert [p.same for p in pairs] == [True, True, False, False]
    assert pairs[1].b == tmp_path / "Bo_Li" / "Bo_Li_0010.jpg"
    assert pairs[3].a == tmp_path / "Cy" / "Cy_0004.jpg"
    assert len(ev.parse_lfw_pairs("Aaron 1 2\n", tmp_path)) == 1
    with pytest.raises(InvalidInput, match="line 2"):
        ev.parse_lfw_pairs("1\nAaron 1\n", tmp_path)
    (tmp_path / "pairs.txt").write_text(text)
    assert ev.read_pairs(tmp_path / "pairs.txt", tmp_path / "lfw")[0].a == tmp_path / "lfw" / "Aaron" / "Aaron_0001.jpg"


def test_csv_pairs_file_with_and_without_header(tmp_path: Path) -> None:
    with_header = ev.parse_csv_pairs("a,b,same\nx/1.jpg,x/2.jpg,1\nx/1.jpg,y/1.jpg,0\n", tmp_path)
    assert [(p.a.name, p.b.name, p.same) for p in with_header] == [("1.jpg", "2.jpg", True), ("1.jpg", "1.jpg", False)]
    words = ev.parse_csv_pairs("p.jpg, q.jpg, same\np.jpg,r.jpg,different\n", tmp_path)
    assert [p.same for p in words] == [True, False] and words[0].b == tmp_path / "q.jpg"
    with pytest.raises(InvalidInput, match="same='maybe'"):
        ev.parse_csv_pairs("a.jpg,b.jpg,1\na.jpg,c.jpg,maybe\n", tmp_path)
    with pytest.raises(InvalidInput, match="columns"):
        ev.parse_csv_pairs("a,b\n", tmp_path)
    (tmp_path / "pairs.csv").write_text("x/1.jpg,x/2.jpg,1\n")
    assert ev.read_pairs(tmp_path / "pairs.csv")[0].same


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six London volunteers, two photos each, and one photo without a face."""
    root = tmp_path_factory.mktemp("people")
    for person in PEOPLE:
        shutil.copytree(LONDON / person, root / person)
    ok, png = cv2.imencode(".png", np.full((200, 200, 3), 90, np.uint8))
    assert ok
    (root / "006" / "blank.png").write_bytes(png.tobytes())
    return root


@pytest.fixture(scope="module")
def run(engine: Engine, people: Path) -> ev.Evaluation:
    shipped = load_trusted_bundle().table_for(engine.model_id)
    return ev.evaluate_folder(engine, people, shipped=shipped, groups=ev.read_groups(LONDON / "info.csv"))


def test_eval_on_a_labelled_folder_gives_the_known_answers(run: ev.Evaluation) -> None:
    assert (run.people, run.images, len(run.not_acquired)) == (6, 13, 1)
    assert run.not_acquired[0][0].name == "blank.png" and run.not_acquired[0][1] == "no-face"
    assert run.fta_rate == pytest.approx(1 / 13) and run.fte_rate >= run.fta_rate
    assert (len(run.genuine), len(run.impostor)) == (6, 60)
    assert run.genuine.max() < 0.44 < run.impostor.min()  # these volunteers are told apart at any FMR
    s = run.summary()
    assert s["eer"]["rate"] == 0 and s["best_accuracy"]["accuracy"] == 1
    assert [p["threshold"] is None for p in s["fnmr_at_fmr"]] == [True, True, True]  # 60 pairs: FMR 1e-2 unmeasurable
    assert all(row["fnmr"] == 0 and row["fmr"] == 0 for row in s["shipped_thresholds"] if row["target_fmr"] <= 1e-4)


def test_eval_breaks_errors_down_by_group(run: ev.Evaluation) -> None:
    groups = {(g.attribute, g.value): g for g in run.groups}
    assert not any(a == "face_age" for a, _ in groups)  # numeric: not a group
    female, male = groups[("face_gender", "female")], groups[("face_gender", "male")]
    assert (female.people, female.genuine_pairs, female.impostor_pairs) == (4, 4, 24)
    assert (male.people, male.genuine_pairs, male.impostor_pairs) == (2, 2, 4)
    assert groups[("face_eth", "white")].people == 4


def test_the_report_states_every_number_and_draws_the_det_curve(run: ev.Evaluation, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    md, png = ev.write_report(run, tmp_path / "report.md")
    text = md.read_text()
    assert png.read_bytes()[:4] == b"\x89PNG" and f"]({png.name})" in text
    for needle in ("| genuine comparisons | 6 |", "| impostor comparisons | 60 |", "failure to enrol",
                   "not measurable", "**EER**: 0.00%", "face_gender=female", "shipped threshold"):
        assert needle in text


def test_eval_on_a_pairs_file(engine: Engine, people: Path) -> None:
    csv = people.parent / "pairs.csv"
    csv.write_text("a,b,same\n001/neutral.jpg,001/smiling.jpg,1\n001/neutral.jpg,002/neutral.jpg,0\n"
                   "003/smiling.jpg,004/smiling.jpg,0\n006/blank.png,006/neutral.jpg,1\n")
    run = ev.evaluate_pairs(engine, ev.read_pairs(csv, people))
    assert (len(run.genuine), len(run.impostor), run.skipped_pairs) == (1, 2, 1)
    assert run.genuine[0] < 0.44 < run.impostor.min()


def test_eval_command_writes_the_report(people: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from facekeeper.cli.main import app

    out = tmp_path / "acc.md"
    result = CliRunner().invoke(app, ["--json", "eval", str(people), "--out", str(out), "--calibration-out",
                                      str(tmp_path / "table.json"), "--name", "six volunteers"])
    assert result.exit_code == 2 and "too few impostor pairs" in result.output  # 60 pairs make no table
    result = CliRunner().invoke(app, ["--json", "eval", str(people), "--out", str(out), "--name", "six volunteers"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["genuine_pairs"] == 6 and data["failure_to_acquire"]["count"] == 1
    assert out.read_text().startswith("# Accuracy on six volunteers") and out.with_suffix(".png").exists()


def test_eval_reports_fast_and_accurate_side_by_side_on_the_same_pairs(people: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from facekeeper.cli.main import app

    out = tmp_path / "modes.md"
    result = CliRunner().invoke(app, ["--json", "eval", str(people), "--out", str(out), "--groups",
                                      str(LONDON / "info.csv")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    accurate = data["accurate"]
    assert accurate["model_id"].startswith("fusion-") and accurate["genuine_pairs"] == data["genuine_pairs"] == 6
    assert accurate["impostor_pairs"] == data["impostor_pairs"] == 60 and accurate["eer"]["rate"] == 0
    assert accurate["groups"] and [r["target_fmr"] for r in accurate["shipped_thresholds"]] == [1e-5, 1e-4, 1e-3, 1e-2]
    text = out.read_text()
    for needle in ("## Fast and accurate side by side", "accurate FNMR [95% CI]", "Accurate mode per group"):
        assert needle in text
    fast_only = CliRunner().invoke(app, ["--json", "eval", str(people), "--out", str(out), "--modes", "fast"])
    assert fast_only.exit_code == 0 and "accurate" not in json.loads(fast_only.output)


def test_generalized_rates_count_a_pair_without_a_comparison_as_a_rejection() -> None:
    run = ev.Evaluation("d", "pairs", "m", "onnx", 8, np.array([0.2, 0.3, 0.9]), np.array([0.4, 0.8, 1.0]), [], [],
                        unusable_genuine=1, unusable_impostor=1, usable_impostor=np.array([False, True, True]))
    assert ev.error_rates(run.genuine, run.impostor, np.array([0.5]))[1][0] == pytest.approx(1 / 3)
    gfmr, gfnmr = run.generalized(0.5)
    assert gfnmr == pytest.approx(2 / 4)  # 0.9 rejected, and the pair that was never compared
    assert gfmr == 0  # 0.4 is between two unenrollable photos: the product never compares them
    row = run.summary()["fnmr_at_fmr"][0]
    assert {"generalized_fmr", "generalized_fnmr"} <= set(row)
    assert run.summary()["generalized"]["unusable_impostor_pairs"] == 2


def test_lfw_pairs_header_sets_the_folds_and_ten_fold_picks_each_threshold_on_the_others(tmp_path: Path) -> None:
    text = "2\t1\nA\t1\t2\nA\t1\tB\t1\nC\t1\t2\nC\t1\tD\t1\n"
    assert [p.fold for p in ev.parse_lfw_pairs(text, tmp_path)] == [0, 0, 1, 1]
    assert ev.parse_lfw_pairs("A 1 2\n", tmp_path)[0].fold is None
    scores = np.array([0.1, 0.3, 0.4, 0.9, 0.2, 0.8])  # genuine, impostor per fold
    same = np.array([True, False, True, False, True, False])
    folds = np.array([0, 0, 1, 1, 2, 2])
    # fold 0 at 0.6 (midway between fold 1 and 2's genuine 0.4 and their next score 0.8): 0.3 wrongly accepted;
    # fold 1 at 0.25 (0.2 .. 0.3): 0.4 wrongly rejected; fold 2 at 0.2 (0.1 .. 0.3): both right
    assert ev.ten_fold(scores, same, folds) == [0.5, 0.5, 1.0]


@pytest.fixture(scope="module")
def lfw(people: Path) -> Path:
    """An LFW-style tree and pairs.txt (2 folds of 3 same + 3 different) from the London photos and one blank."""
    root = people.parent / "lfw"
    for person in PEOPLE:
        (root / f"p{person}").mkdir(parents=True)
        for n, pose in ((1, "neutral"), (2, "smiling")):
            shutil.copy(LONDON / person / f"{pose}.jpg", root / f"p{person}" / f"p{person}_{n:04d}.jpg")
    ok, jpg = cv2.imencode(".jpg", np.full((200, 200, 3), 90, np.uint8))
    assert ok
    (root / "p006" / "p006_0003.jpg").write_bytes(jpg.tobytes())
    (root / "pairs.txt").write_text(
        "2\t3\np001\t1\t2\np002\t1\t2\np006\t1\t3\np001\t1\tp002\t1\np003\t1\tp004\t2\np005\t2\tp006\t3\n"
        "p003\t1\t2\np004\t1\t2\np005\t1\t2\np001\t2\tp003\t2\np002\t2\tp004\t1\np005\t1\tp006\t1\n")
    return root


def test_eval_on_an_lfw_pairs_file_gives_both_modes_generalized_rates_and_ten_fold(lfw: Path, tmp_path: Path) -> None:
    from facekeeper.cli.main import app

    out = tmp_path / "lfw.md"
    result = CliRunner().invoke(app, ["--json", "eval", str(lfw / "pairs.txt"), "--out", str(out), "--no-plot"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["genuine_pairs"], data["impostor_pairs"], data["skipped_pairs"]) == (5, 5, 2)
    assert data["generalized"]["unusable_genuine_pairs"] == 1 and data["generalized"]["unusable_impostor_pairs"] == 1
    assert data["ten_fold"]["folds"] == 2 and data["ten_fold"]["accuracy_mean"] == 1.0
    assert data["ten_fold"]["generalized_accuracy_mean"] == pytest.approx((5 / 6 + 1) / 2)  # the blank's genuine pair
    accurate = data["accurate"]
    assert accurate["genuine_pairs"] == 5 and accurate["ten_fold"]["folds"] == 2
    text = out.read_text()
    for needle in ("generalized FNMR", "10-fold accuracy", "could not be compared", "Fast and accurate side by side"):
        assert needle in text


def test_a_probe_with_several_faces_is_compared_with_the_chosen_one_and_counted(engine: Engine,
                                                                              tmp_path: Path) -> None:
    data = Path(__file__).parent / "data"
    biden = tmp_path / "biden"
    shutil.copytree(data / "people" / "joe_biden", biden)
    shutil.copy(data / "multi" / "obama_and_biden.jpg", biden / "with_obama.jpg")  # Biden's face is the larger
    shutil.copytree(LONDON / "001", tmp_path / "001")
    run = ev.evaluate_folder(engine, tmp_path)
    assert [(p.name, n) for p, n in run.picked] == [("with_obama.jpg", 3)]  # YuNet also finds a face behind them
    assert not run.not_acquired and run.images == 4 and len(run.genuine) == 2
    assert run.genuine.max() < 0.5  # the face compared is Biden's
    assert run.summary()["several_faces"] == {"count": 1, "rate": 0.25, "face_choice": "largest"}
    assert "| several faces: compared with the largest one (enrollment refuses these) | 1 (25.00%) |" in ev.markdown(
        run, None)
