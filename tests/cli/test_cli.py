import re

import pytest
from PIL import Image
from typer.testing import CliRunner

from cytofm.cli.main import app

from tests.helpers import smear

runner = CliRunner()
COMMANDS = ["prepare", "pretrain", "export", "extract", "probe", "mil", "benchmark", "heatmap", "umap",
            "report", "demo", "doctor"]


def plain(s: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", s)


def test_help_lists_every_command():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for c in COMMANDS:
        assert c in r.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command):
    r = runner.invoke(app, [command, "--help"])
    assert r.exit_code == 0, r.output
    assert "Usage" in plain(r.output)


def test_contract_options_are_declared():
    # the fixed command-line contract: users and scripts rely on these commands and options
    for cmd, opts in {"pretrain": ["--preset", "--data", "--out"], "export": ["--out"],
                      "extract": ["--encoder", "--input", "--mode", "--out"],
                      "probe": ["--features", "--label", "--out"],
                      "mil": ["--features", "--label", "--out"], "benchmark": ["--out"],
                      "umap": ["--features", "--color-by", "--out"], "demo": ["--out"],
                      "prepare": ["--out"]}.items():
        text = plain(runner.invoke(app, [cmd, "--help"], terminal_width=200).output)
        for o in opts:
            assert o in text, f"{cmd} lacks {o}"


def test_prepare_cli_end_to_end_with_override(tmp_path):
    rgb, _ = smear()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = tmp_path / "out"
    r = runner.invoke(app, ["prepare", str(tmp_path / "a.png"), "--out", str(out), "tiling.patch_size=64",
                            "--organ", "blood", "--workers", "1"])
    assert r.exit_code == 0, r.output
    text = (out / "config.yaml").read_text()
    assert "patch_size: 64" in text and "organ: blood" in text
    assert "blood" in (out / "manifest.csv").read_text()


def test_prepare_cli_rejects_unknown_key_cleanly(tmp_path):
    rgb, _ = smear()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    r = runner.invoke(app, ["prepare", str(tmp_path / "a.png"), "--out", str(tmp_path / "o"),
                            "tiling.patchsize=64"])
    assert r.exit_code == 2
    assert "unknown config key 'tiling.patchsize'" in plain(r.output)
    assert "Traceback" not in r.output


def test_prepare_cli_missing_input_and_nothing_usable(tmp_path):
    r = runner.invoke(app, ["prepare", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "no such file or folder" in plain(r.output)
    (tmp_path / "bad.png").write_bytes(b"")
    r = runner.invoke(app, ["prepare", str(tmp_path / "bad.png"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "nothing usable" in plain(r.output)
    assert "empty file" in (tmp_path / "o" / "skipped.csv").read_text()


def test_doctor_reports_versions():
    r = runner.invoke(app, ["doctor"], terminal_width=200)
    assert r.exit_code == 0
    for item in ("torch", "timm", "bf16", "OpenSlide", "weights"):
        assert item in r.output


def test_report_of_empty_folder_is_a_clear_error(tmp_path):
    r = runner.invoke(app, ["report", str(tmp_path)])
    assert r.exit_code == 2 and "nothing to report" in plain(r.output)


