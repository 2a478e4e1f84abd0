import csv

import numpy as np
import yaml
from PIL import Image
from typer.testing import CliRunner

from cytofm.cli.main import app
from cytofm.features.store import write_item

from tests.helpers import smear

runner = CliRunner()


def plain(s: str) -> str:
    return " ".join(s.split())


def _voc(path, boxes):
    objs = "".join(f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                   f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b in boxes)
    path.write_text(f"<annotation>{objs}</annotation>")


def _store(root, items, dims=8, seed=0):
    """items: [(id, image path, coords, label)] -> a feature store with random features."""
    rng = np.random.default_rng(seed)
    (root / "features").mkdir(parents=True)
    rows = []
    for k, (i, path, coords, label) in enumerate(items):
        d = dims if not isinstance(dims, list) else dims[k]
        write_item(root / "features" / f"{i}.h5", rng.normal(size=(len(coords), d)) + (3.0 * (label == "b")),
                   np.asarray(coords), {"patch_size": 32, "patch_size_level0": 32, "source_path": str(path)})
        rows.append({"id": i, "path": str(path), "h5": f"features/{i}.h5", "n_instances": len(coords),
                     "label": label})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_mil_heatmap_planted_patch_scores_and_figures(tmp_path):
    rgb, _ = smear(96, 128, cells=((80, 48, 14),))
    img = tmp_path / "field1.jpg"
    Image.fromarray(rgb).save(img)
    coords = [(x, y) for y in range(0, 96, 32) for x in range(0, 128, 32)]
    _store(tmp_path / "store", [("field1", img, coords, "a")])
    run = tmp_path / "mil"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"features": str(tmp_path / "store")}))
    w = np.full(len(coords), 0.01)
    w[coords.index((64, 32))] = 1.0  # the patch holding the cell
    np.savez(run / "attention_0.npz", field1=w / w.sum())
    (tmp_path / "ann").mkdir()
    _voc(tmp_path / "ann" / "field1.xml", [("WBC", (66, 34, 94, 62)), ("RBC", (0, 0, 20, 20))])
    r = runner.invoke(app, ["heatmap", "--mil", str(run), "--boxes", str(tmp_path / "ann"), "--out",
                            str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert ((tmp_path / "o" / "field1_heatmap.png").is_file()
            and (tmp_path / "o" / "field1_gallery.png").is_file())
    row = next(csv.DictReader(open(tmp_path / "o" / "localization.csv")))
    assert row["hit"] == "True"
    # box covers 28x28 of the 32x32 top patch: mass ~ 0.92 x 0.89 of the weight, far above uniform
    assert float(row["mass"]) > 0.6 > 0.1 > float(row["chance_mass"])
    assert "pointing game 1.000" in plain(r.output)


def test_mil_heatmap_bad_run_is_clear(tmp_path):
    r = runner.invoke(app, ["heatmap", "--mil", str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "not a `cytofm mil` run" in plain(r.output)


def test_vit_heatmap_on_images(tmp_path):
    d = tmp_path / "cells"
    d.mkdir()
    for k in range(2):
        rgb, _ = smear(48, 48, cells=((24, 24, 10),), seed=k)
        Image.fromarray(rgb).save(d / f"c{k}.png")
    (tmp_path / "ann").mkdir()
    _voc(tmp_path / "ann" / "c0.xml", [("WBC", (14, 14, 34, 34))])
    r = runner.invoke(app, ["heatmap", str(d), "--encoder", "random:vit_tiny_patch16_224", "--boxes",
                            str(tmp_path / "ann"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert {p.name for p in (tmp_path / "o").glob("*.png")} == {
        "c0_attention.png", "c0_attention_heads.png", "c1_attention.png", "c1_attention_heads.png"}
    rows = list(csv.DictReader(open(tmp_path / "o" / "localization.csv")))
    assert [r["id"] for r in rows] == ["c0"] and float(rows[0]["chance_mass"]) == 400 / 48 ** 2


def test_umap_png_html_and_report(tmp_path):
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    _store(tmp_path / "store", [(f"i{k}", img, [(0, 0)], "a" if k < 15 else "b") for k in range(30)])
    out = tmp_path / "run" / "umap_label.png"
    r = runner.invoke(app, ["umap", "--features", str(tmp_path / "store"), "--color-by", "label", "--out",
                            str(out), "--method", "pca"])
    assert r.exit_code == 0, r.output
    assert out.is_file() and "<circle" in out.with_suffix(".html").read_text()
    (tmp_path / "run" / "localization.csv").write_text("id,mass,hit,chance_mass,chance_hit\n"
                                                       "a,0.5,True,0.1,0.2\nb,0.3,False,0.1,0.2\n")
    (tmp_path / "run" / "results.md").write_text("| task | bacc |\n|---|---|\n| t | 0.9 +- 0.1 |\n")
    (tmp_path / "run" / "config.yaml").write_text("a: 1\n")
    with open(tmp_path / "run" / "metrics.csv", "w") as f:
        f.write("loss,lr,iteration,entropy_ratio\n5,0.1,10,0.9\n4,0.2,20,0.8\n")
    r = runner.invoke(app, ["report", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "run" / "report.html").read_text()
    assert ("<td>0.9 +- 0.1</td>" in html and "pointing game 0.500" in html
            and html.count("data:image/png;base64,") == 2)  # umap + curves
    assert "http://" not in html and "https://" not in html and "srcdoc" in html and "a: 1" in html


def test_umap_bad_inputs(tmp_path):
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    _store(tmp_path / "s1", [(f"i{k}", img, [(0, 0)], "a") for k in range(5)])
    r = runner.invoke(app, ["umap", "--features", str(tmp_path / "s1"), "--color-by", "stain", "--out",
                            str(tmp_path / "u.png")])
    assert r.exit_code == 2 and "no column 'stain'" in plain(r.output)
    _store(tmp_path / "s2", [(f"i{k}", img, [(0, 0)], "a") for k in range(5)], dims=[8, 8, 8, 4, 8])
    r = runner.invoke(app, ["umap", "--features", str(tmp_path / "s2"), "--color-by", "label", "--out",
                            str(tmp_path / "u.png")])
    assert r.exit_code == 2 and "different sizes" in plain(r.output)


def test_background_is_dimmed_grey_not_bright_and_has_a_legend():
    """Pixels under no kept patch were shown as the bare image, brighter than any attended patch."""
    from cytofm.viz.figures import HEAT_ALPHA, NOT_KEPT_ALPHA, compose_overlay

    rgb = np.full((1, 3, 3), 255, np.uint8)  # white glass
    heat = np.array([[np.nan, 0.0, 1.0]])
    out = compose_overlay(rgb, heat)
    grey = 1.0 * (1 - NOT_KEPT_ALPHA) + 0.5 * NOT_KEPT_ALPHA  # 0.625 by hand
    assert np.allclose(out[0, 0], grey)
    import matplotlib

    top = 1.0 * (1 - HEAT_ALPHA) + np.asarray(matplotlib.colormaps["inferno"](1.0)[:3]) * HEAT_ALPHA
    assert np.allclose(out[0, 2], top) and out[0, 0].mean() < out[0, 2].mean()


def test_heatmap_titles_never_show_a_path_and_unmatched_boxes_warn(tmp_path, monkeypatch):
    import cytofm.viz.figures as figures
    from cytofm.models.zoo import create_encoder
    from cytofm.viz.heatmaps import vit_heatmaps

    d = tmp_path / "cells"
    d.mkdir()
    rgb, _ = smear(48, 48, cells=((24, 24, 10),))
    Image.fromarray(rgb).save(d / "c0.png")
    enc = create_encoder("random:vit_tiny_patch16_224")
    enc.spec = f"cytofm:{tmp_path / 'deep' / 'weights.safetensors'}"
    titles, real = [], figures.overlay_png
    monkeypatch.setattr(figures, "overlay_png", lambda *a, **k: titles.append(a[3]) or real(*a, **k))
    vit_heatmaps(enc, [str(d / "c0.png")], tmp_path / "o", log=lambda m: None)
    assert titles == ["cytofm:weights.safetensors: c0.png"]
    (tmp_path / "ann").mkdir()
    _voc(tmp_path / "ann" / "other.xml", [("WBC", (0, 0, 4, 4))])
    r = runner.invoke(app, ["heatmap", str(d), "--encoder", "random:vit_tiny_patch16_224", "--boxes",
                            str(tmp_path / "ann"), "--out", str(tmp_path / "o2")])
    assert r.exit_code == 0 and "none of the 1 items has a <name>.xml there" in plain(r.output), r.output


def test_heatmap_that_draws_nothing_fails_with_the_reason(tmp_path):
    d = tmp_path / "cells"
    d.mkdir()
    (d / "broken.png").write_bytes(b"not a png")
    r = runner.invoke(app, ["heatmap", str(d), "--encoder", "random:vit_tiny_patch16_224", "--out",
                            str(tmp_path / "o")])
    assert (r.exit_code == 1 and "no figure was drawn" in plain(r.output)
            and "broken.png" in plain(r.output)), r.output


def test_outputs_that_are_files_or_unwritable_are_refused_before_work(tmp_path):
    import subprocess

    f = tmp_path / "a_file"
    f.write_text("x")
    r = runner.invoke(app, ["umap", "--features", str(tmp_path), "--color-by", "label", "--out",
                            str(tmp_path)])
    assert r.exit_code == 2 and "is a folder; give a file name" in plain(r.output)
    r = runner.invoke(app, ["heatmap", str(tmp_path), "--out", str(f)])
    assert r.exit_code == 2 and "is a file, not a folder" in plain(r.output)
    r = runner.invoke(app, ["mil", "--features", str(tmp_path), "--label", "l", "--out", str(f / "sub")])
    assert r.exit_code == 2 and "is a file, so no folder can be made under it" in plain(r.output)
    ro = tmp_path / "ro"
    ro.mkdir()
    locked = subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode == 0  # binds root too
    if not locked:
        ro.chmod(0o555)
    try:
        try:
            (ro / "probe").write_text("x")
            (ro / "probe").unlink()
            import pytest

            pytest.skip("cannot make a read-only folder here (neither chattr +i nor permissions bind)")
        except OSError:
            pass
        for args in (["prepare", str(d_or(tmp_path)), "--out", str(ro / "p")],
                     ["extract", "--input", str(tmp_path), "--mode", "image", "--out", str(ro / "f")],
                     ["probe", "--features", str(tmp_path), "--label", "l", "--out", str(ro / "e")]):
            r = runner.invoke(app, args)
            assert r.exit_code == 2 and f"cannot write into {ro}" in plain(r.output), (args, r.output)
            assert "Traceback" not in r.output
    finally:
        if locked:
            subprocess.run(["chattr", "-i", str(ro)])
        ro.chmod(0o755)


def d_or(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir(exist_ok=True)
    Image.fromarray(smear(48, 48)[0]).save(d / "x.png")
    return d
