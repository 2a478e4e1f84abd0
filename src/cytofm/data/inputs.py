"""Turn what a user points at (folders, CSV manifests, files) into a list of sources with metadata."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from cytofm.data.image_io import IMAGE_EXTENSIONS, SLIDE_EXTENSIONS
from cytofm.data.prepare_config import PrepareConfig
from cytofm.data.source import is_slide_file

PATH_COLUMNS = ("path", "image", "image_path", "file", "filename", "slide", "slide_path")
# Standard metadata columns, with the aliases labs commonly use.
COLUMN_ALIASES = {
    "specimen": ("specimen", "specimen_id", "patient", "patient_id", "case", "case_id", "subject"),
    "organ": ("organ", "site", "tissue"),
    "preparation": ("preparation", "prep"),
    "stain": ("stain", "staining"),
    "split": ("split", "fold_split"),
    "mpp": ("mpp", "mpp_x", "microns_per_pixel"),
}
RESERVED = {"id", "path", "coords", "kind", "width", "height", "n_patches", "n_candidates", "whole"}


class InputError(ValueError):
    """The input as a whole cannot be used (no such path, a manifest without a path column...)."""


@dataclass
class SourceItem:
    path: Path
    id: str
    kind: str  # "image" | "slide"
    meta: dict[str, str] = field(default_factory=dict)


@dataclass
class Skip:
    path: str
    reason: str


def _safe_id(rel: str) -> str:
    stem = rel.rsplit(".", 1)[0] if "." in Path(rel).name else rel
    s = re.sub(r"[^\w.-]+", "_", stem.replace("/", "__").replace("\\", "__")).strip("._")
    return s or "item"


def _kind_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in SLIDE_EXTENSIONS:
        return "slide"
    if suffix in IMAGE_EXTENSIONS:
        return "slide" if is_slide_file(path) else "image"
    return None


def _from_folder(root: Path, cfg: PrepareConfig, skips: list[Skip], notes: list[str]) -> list[SourceItem]:
    items, other = [], 0
    for p in sorted(root.rglob("*")):
        if p.is_dir() or p.name.startswith("."):
            continue
        if p.suffix.lower() == ".mrxs" or p.suffix.lower() in IMAGE_EXTENSIONS | SLIDE_EXTENSIONS:
            rel = p.relative_to(root)
            meta = {}
            if cfg.metadata.labels_from_folders:
                if len(rel.parts) < 2:
                    skips.append(Skip(str(p), "not inside a class sub-folder (labels_from_folders=true)"))
                    continue
                meta["label"] = rel.parts[0]
            kind = _kind_of(p)
            items.append(SourceItem(p, _safe_id(rel.as_posix()), kind or "image", meta))
        else:
            other += 1
    if other:
        notes.append(f"{root}: ignored {other} file(s) that are not images or slides")
    if (root / "manifest.csv").is_file():
        notes.append(f"{root}: has a manifest.csv; pass it as INPUT to carry its label and metadata columns")
    return items


def _from_manifest(path: Path, cfg: PrepareConfig, skips: list[Skip]) -> list[SourceItem]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
            header = [h.strip() for h in (rows[0].keys() if rows else [])]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: cannot read manifest ({e})") from None
    if not rows:
        raise InputError(f"{path}: manifest has no rows")
    lower = {h.lower(): h for h in header if h}
    path_col = next((lower[c] for c in PATH_COLUMNS if c in lower), None)
    if path_col is None:
        raise InputError(f"{path}: manifest has no path column (looked for: {', '.join(PATH_COLUMNS)})")
    label_col = cfg.metadata.label_column
    if label_col and label_col not in header:
        raise InputError(f"{path}: label column '{label_col}' not in manifest (columns: {', '.join(header)})")
    if label_col is None and "label" in lower:
        label_col = lower["label"]
    alias_of = {}
    for std, names in COLUMN_ALIASES.items():
        col = next((lower[n] for n in names if n in lower), None)
        if col:
            alias_of[col] = std
    items = []
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        raw = (row.get(path_col) or "").strip()
        if not raw:
            skips.append(Skip(f"{path}:{i}", "manifest row has an empty path"))
            continue
        p = Path(raw).expanduser()
        if not p.is_absolute():
            p = path.parent / p
        if not p.exists():
            skips.append(Skip(str(p), f"file not found (manifest line {i})"))
            continue
        kind = _kind_of(p)
        if kind is None:
            skips.append(Skip(str(p), f"unsupported format '{p.suffix or '(no extension)'}' (manifest line {i})"))
            continue
        meta: dict[str, str] = {}
        for col, val in row.items():
            if col is None or col == path_col:
                continue
            val = (val or "").strip()
            name = alias_of.get(col, col.strip())
            if name in RESERVED:
                name = f"src_{name}"
            meta.setdefault(name, val)
        if label_col:
            meta["label"] = (row.get(label_col) or "").strip()
        try:
            rel = p.resolve().relative_to(path.parent.resolve()).as_posix()
        except ValueError:
            rel = p.name
        items.append(SourceItem(p, _safe_id(rel), kind, meta))
    return items


def discover(inputs: list[str], cfg: PrepareConfig) -> tuple[list[SourceItem], list[Skip], list[str]]:
    """Expand INPUT arguments into sources; problems with single files become skips, not errors."""
    items: list[SourceItem] = []
    skips: list[Skip] = []
    notes: list[str] = []
    for raw in inputs:
        p = Path(raw).expanduser()
        if not p.exists():
            raise InputError(f"{raw}: no such file or folder")
        if p.is_dir() and p.suffix.lower() != ".mrxs":
            found = _from_folder(p, cfg, skips, notes)
            if not found:
                notes.append(f"{p}: no images or slides found")
            items += found
        elif p.suffix.lower() == ".csv":
            items += _from_manifest(p, cfg, skips)
        else:
            kind = _kind_of(p)
            if kind is None:
                skips.append(Skip(str(p), f"unsupported format '{p.suffix or '(no extension)'}'"))
                continue
            items.append(SourceItem(p, _safe_id(p.name), kind, {}))
    # defaults from the config fill metadata the inputs lack; ids are made unique
    defaults = {k: getattr(cfg.metadata, k) for k in ("organ", "preparation", "stain", "dataset")}
    seen: dict[str, int] = {}
    for it in items:
        for k, v in defaults.items():
            if v is not None and not it.meta.get(k):
                it.meta[k] = v
        n = seen.get(it.id, 0)
        seen[it.id] = n + 1
        if n:
            it.id = f"{it.id}-{n}"
    return items, skips, notes
