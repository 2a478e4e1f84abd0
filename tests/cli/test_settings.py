"""One config story for extract, probe, mil, heatmap, umap and benchmark: schema defaults < --config FILE <
options < key=value, typed (did-you-mean on typos), --print-config, enums listed by --help."""

import re

import click
import pytest
import typer
import yaml
from typer.testing import CliRunner

from cytofm.cli.main import app
from cytofm.eval.config import MilConfig, ProbeConfig
from cytofm.features.config import ExtractConfig
from cytofm.viz.config import HeatmapConfig, UmapConfig

runner = CliRunner()
SCHEMAS = {"extract": ExtractConfig, "probe": ProbeConfig, "mil": MilConfig, "heatmap": HeatmapConfig,
           "umap": UmapConfig}


def plain(s: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", s)


def _printed(args):
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return yaml.safe_load(r.stdout)


@pytest.mark.parametrize("command", list(SCHEMAS))
def test_option_defaults_are_the_schema_defaults(command):
    """--help shows the defaults the config uses: a changed default in one place would be caught here."""
    group = typer.main.get_command(app)
    cmd = group.get_command(click.Context(group), command)  # commands load on first use
    schema = SCHEMAS[command]
    checked = 0
    for p in cmd.params:
        if p.name not in schema.model_fields or p.required or p.default is None:
            continue
        d, want = p.default, schema.model_fields[p.name].default
        d = d.value if hasattr(d, "value") else d
        if isinstance(want, list):
            d = [type(want[0])(x) for x in str(d).split(",") if x] if want else ([] if d == "" else d)
        assert d == want, f"{command} --{p.name}: option default {d!r}, config default {want!r}"
        checked += 1
    assert checked >= 2


def test_precedence_defaults_file_options_overrides(tmp_path):
    cfg = tmp_path / "extract.yaml"
    cfg.write_text("input: cells\nmode: image\nbatch_size: 8\npool: mean\nworkers: 3\n")
    got = _printed(["extract", "--config", str(cfg), "--batch-size", "16", "workers=2", "--print-config"])
    assert got["input"] == "cells" and got["mode"] == "image"  # from the file
    assert got["batch_size"] == 16  # the option beats the file
    assert got["workers"] == 2  # the override beats the file
    # the file, then the defaults
    assert got["pool"] == "mean" and got["encoder"] == "cytofm" and got["precision"] == "auto"
    # key=value beats an option given on the same command line
    assert _printed(["extract", "--batch-size", "16", "batch_size=4", "--print-config"])["batch_size"] == 4
    # an option left at its default does not undo the file
    assert _printed(["extract", "--config", str(cfg), "--print-config"])["batch_size"] == 8


def test_lists_read_from_options_file_and_overrides(tmp_path):
    got = _printed(["probe", "--seeds", "3,4", "methods=linear,fewshot", "exclude=[a, b]", "--print-config"])
    assert got["seeds"] == [3, 4] and got["methods"] == ["linear", "fewshot"] and got["exclude"] == ["a", "b"]
    got = _printed(["mil", "--features", "f", "epochs=7", "lr=0.001", "--print-config"])
    assert got["epochs"] == 7 and got["lr"] == 0.001 and got["features"] == "f"
    got = _printed(["heatmap", "a.png", "b.png", "limit=3", "--tiles", "on", "--print-config"])
    assert got["inputs"] == ["a.png", "b.png"] and got["limit"] == 3 and got["tiles"] == "on"
    got = _printed(["umap", "max_items=100", "--method", "pca", "--print-config"])
    assert got["max_items"] == 100 and got["method"] == "pca"


def test_benchmark_overrides_on_top_of_its_config():
    got = _printed(["benchmark", "demo", "batch_size=8", "metric=macro_f1", "--print-config"])
    assert got["batch_size"] == 8 and got["metric"] == "macro_f1" and got["encoders"][0] == "cytofm"
    r = runner.invoke(app, ["benchmark", "demo", "bach_size=8", "--out", "x"])
    assert r.exit_code == 2 and "did you mean 'batch_size'" in r.output


@pytest.mark.parametrize("args,text", [
    (["extract", "pol=mean", "--print-config"], "unknown config key 'pol' (did you mean 'pool'?)"),
    (["extract", "--mode", "image", "--out", "o"], "give --input PATH (or `input:` in --config"),
    (["probe", "--features", "f", "--out", "o"], "give --label COLUMN"),
    (["umap", "--features", "f", "--out", "o.png"], "give --color-by COLUMN"),
    (["extract", "--config", "nope.yaml", "--print-config"], "--config nope.yaml: no such file"),
    (["probe", "--features", "f", "--label", "l", "--out", "o", "folds=many"], "config key 'folds'"),
    (["probe", "--features", "f", "--label", "l", "--out", "o", "--methods", "linear,svm"],
     "unknown probe method(s) svm"),
])
def test_refusals_are_one_clear_line(args, text):
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert text in plain(r.output) and "Traceback" not in r.output


def test_fixed_value_options_are_listed_and_enforced():
    text = plain(runner.invoke(app, ["extract", "--help"], terminal_width=200).output)
    for listed in ("image|tiles", "auto|cpu|cuda", "auto|bf16|fp32", "cls|mean|cls+mean|last4"):
        assert listed in text, listed
    assert "auto|on|off" in plain(runner.invoke(app, ["heatmap", "--help"], terminal_width=200).output)
    assert "auto|umap|tsne|pca" in plain(runner.invoke(app, ["umap", "--help"], terminal_width=200).output)
    r = runner.invoke(app, ["extract", "--mode", "tile", "--print-config"])
    assert r.exit_code == 2 and "tile" in plain(r.output) and "image" in plain(r.output)


def test_shell_completion_is_offered():
    text = plain(runner.invoke(app, ["--help"], terminal_width=200).output)
    assert "--install-completion" in text and "--show-completion" in text
    assert "--quiet" in text and "--verbose" in text
