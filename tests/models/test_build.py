"""One builder: ``cytofm.models.build`` is the only module of the package that calls ``timm.create_model``
(the encoder families, the pretraining backbone and the demo's timing all build through it)."""

from __future__ import annotations

import ast
from pathlib import Path

import cytofm
from cytofm.models.build import build_vit

SRC = Path(cytofm.__file__).parent
BUILDER = SRC / "models" / "build.py"


def create_model_calls(path: Path) -> list[int]:
    """Lines where ``path`` calls ``create_model`` (``timm.create_model(...)``, or the name imported from
    timm); the source text is parsed, so docstrings that show users the call do not count."""
    tree = ast.parse(path.read_text(), str(path))
    imported = any(isinstance(n, ast.ImportFrom) and (n.module or "").startswith("timm")
                   and any(a.name == "create_model" for a in n.names) for n in ast.walk(tree))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Attribute) and f.attr == "create_model") or (
                    imported and isinstance(f, ast.Name) and f.id == "create_model"):
                lines.append(node.lineno)
    return lines


def test_only_the_builder_calls_timm_create_model():
    offenders = {str(p.relative_to(SRC)): create_model_calls(p) for p in sorted(SRC.rglob("*.py"))
                 if p != BUILDER}
    assert {p: lines for p, lines in offenders.items() if lines} == {}
    assert create_model_calls(BUILDER)  # the walk does find the call where it is


def test_build_vit_takes_any_input_size():
    import torch

    vit = build_vit("vit_tiny_patch16_224", 32, depth=1).eval()
    assert vit.num_classes == 0
    with torch.no_grad():
        assert vit.forward_features(torch.zeros(1, 3, 48, 64)).shape == (1, 1 + 3 * 4, 192)
