"""Near-duplicate images kept on one side of every split in `probe` and `mil`, as `benchmark` keeps them
(``--no-group-duplicates`` turns it off): a re-saved, slightly brighter copy of an image must land in the
test fold of its original in every seed."""

import csv
from pathlib import Path

from typer.testing import CliRunner

from cytofm.cli.main import app

from tests.helpers import near_duplicate_store

runner = CliRunner()
N = 30
PAIR = ("i00", "i02")  # i02 is i00 three grey levels brighter: one label, two ids


def image_store(root: Path) -> Path:
    return near_duplicate_store(root, N)


def fold_of(pred_csv: Path) -> dict[tuple[int, str], int]:
    with open(pred_csv, newline="") as f:
        return {(int(r["seed"]), r["id"]): int(r["fold"]) for r in csv.DictReader(f)}


def same_fold_every_seed(folds: dict) -> bool:
    return all(folds[(s, PAIR[0])] == folds[(s, PAIR[1])] for s in (0, 1, 2))


def test_probe_and_mil_keep_a_near_duplicate_pair_in_one_fold(tmp_path):
    store = image_store(tmp_path / "s")
    args = ["--features", str(store), "--label", "label", "--folds", "5", "--seeds", "0,1,2"]
    r = runner.invoke(app, ["probe", *args, "--out", str(tmp_path / "p"), "--methods", "knn", "--knn-k", "3"])
    assert r.exit_code == 0, r.output
    assert same_fold_every_seed(fold_of(tmp_path / "p" / "predictions_knn.csv"))
    with open(tmp_path / "p" / "duplicates.csv", newline="") as f:
        pairs = list(csv.DictReader(f))
    assert [(p["id_a"], p["id_b"]) for p in pairs] == [PAIR]
    r = runner.invoke(app, ["mil", *args, "--out", str(tmp_path / "m"), "--epochs", "1"])
    assert r.exit_code == 0, r.output
    assert same_fold_every_seed(fold_of(tmp_path / "m" / "predictions_abmil.csv"))
    # turned off, the plain stratified folds of these seeds split the pair
    r = runner.invoke(app, ["probe", *args, "--out", str(tmp_path / "off"), "--methods", "knn",
                            "--knn-k", "3", "--no-group-duplicates"])
    assert r.exit_code == 0, r.output
    assert not same_fold_every_seed(fold_of(tmp_path / "off" / "predictions_knn.csv"))
