"""Benchmark configs: the paper preset, skipping encoders without weights, class counts, patient groups."""

import csv

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from cytofm.cli.main import app
from cytofm.config.loader import build_config
from cytofm.eval.config import BenchmarkConfig
from cytofm.utils.display import display_name, display_path, display_text
from cytofm.utils.io import write_csv

runner = CliRunner()


def test_paper_preset_lists_the_paper_encoders_and_counts():
    cfg = build_config(BenchmarkConfig, "benchmark", "cytofm_paper")
    assert cfg.encoders == ["cytofm-paper", "uni", "ibot-imagenet", "random:vit_base_patch16_224",
                            "handcrafted"]
    (task,) = cfg.tasks
    assert task.expected_counts == {"benign": 99, "malignant": 113} and task.group_if_present[0] == "specimen"
    assert cfg.skip_missing and cfg.baselines == ["random:*", "handcrafted"]


def test_tables_carry_no_machine_paths():
    assert display_name("cytofm:/work/runs/cpu_preset") == "cytofm:cpu_preset"
    assert display_name("dinobloom:s:/home/u/w/DinoBloom-S.pth") == "dinobloom:s:DinoBloom-S.pth"
    assert display_name("random:vit_small_patch16_224") == "random:vit_small_patch16_224"
    assert display_path("/work/shared/data/herlev/manifest.csv") == "herlev/manifest.csv"
    assert display_path("../shared/data/herlev/manifest.csv") == "../shared/data/herlev/manifest.csv"
    assert (display_text("uni: add 'uni: /path' to /home/u/.config/cytofm/weights.yaml, "
                         "or put it at /w/uni.<ext>")
            == "uni: add 'uni: /path' to weights.yaml, or put it at uni.<ext>")


def test_missing_weights_skipped_counts_warned_patients_grouped(tmp_path, monkeypatch):
    monkeypatch.setenv("CYTOFM_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("CYTOFM_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setattr("cytofm.eval.cross_validation.bootstrap_ci", lambda *a, **k: {})  # not tested here
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        label = ["benign", "malignant"][i % 2]
        colour = np.array((215, 150, 170) if label == "benign" else (120, 160, 190))
        tex = np.kron(rng.uniform(0.6, 1.0, (5, 5)), np.ones((8, 8)))[..., None]
        Image.fromarray((tex * colour).astype(np.uint8)).save(tmp_path / f"{i}.png")
        rows.append({"image": f"{i}.png", "label": label, "patient": f"p{i // 4}"})
    write_csv(tmp_path / "manifest.csv", rows)
    (tmp_path / "b.yaml").write_text(
        "encoders: [uni, handcrafted]\ntasks:\n"
        "  - {name: fna, data: manifest.csv, label: label, mode: image, "
        "eval: probe, methods: [knn], folds: 3, seeds: [0], group_if_present: [specimen, patient], "
        "expected_counts: {benign: 99, malignant: 113}}\n")
    stopped = runner.invoke(app, ["benchmark", str(tmp_path / "b.yaml"), "--out", str(tmp_path / "o")],
                            terminal_width=400)
    assert stopped.exit_code == 2 and "encoder uni cannot be used" in stopped.output, stopped.output
    assert "--keep-going" in stopped.output and "Traceback" not in stopped.output
    r = runner.invoke(app, ["benchmark", str(tmp_path / "b.yaml"), "--out", str(tmp_path / "o"),
                            "--keep-going"], terminal_width=400)
    assert r.exit_code == 0, r.output
    summary = (tmp_path / "o" / "summary.md").read_text()
    assert "- skipped uni: " in summary and "huggingface.co/MahmoodLab/UNI" in summary
    assert "skipped uni" in r.output and "huggingface.co/MahmoodLab/UNI" in r.output
    assert "{'benign': 12, 'malignant': 12}, expected {'benign': 99, 'malignant': 113}" in r.output
    md = (tmp_path / "o" / "results.md").read_text()
    assert "skipped uni" in md and "groups: specimen" in md and str(tmp_path) not in md
    folds = list(csv.DictReader(open(tmp_path / "o" / "fna" / "handcrafted" / "predictions_knn.csv")))
    fold_of = {}
    for f in folds:  # every patient's images in one test fold
        fold_of.setdefault(f"p{int(f['id'].split('_')[-1] if '_' in f['id'] else f['id']) // 4}",
                           set()).add(f["fold"])
    assert all(len(v) == 1 for v in fold_of.values())
