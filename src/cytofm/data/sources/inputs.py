"""Turn what a user points at (folders, CSV manifests, files) into a list of sources with metadata."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.sources.item_ids import assign_ids
from cytofm.data.sources.kinds import input_suffixes, kind_of
from cytofm.utils.errors import InputError

PATH_COLUMNS = ("path", "image", "image_path", "file", "filename", "slide", "slide_path")
"""The columns that name a manifest's files, in the order they are looked for (prepare, fixed splits)."""
# Standard metadata columns, with the aliases labs commonly use. A specimen column is also kept under the
# user's own name (patient, case_id, ...), so exports can name the patient as each tool expects.
COLUMN_ALIASES = {
    "specimen": ("specimen", "specimen_id", "patient", "patient_id", "case", "case_id", "subject"),
    "organ": ("organ", "site", "tissue"),
    "preparation": ("preparation", "prep"),
    "stain": ("stain", "staining"),
    "split": ("split", "fold_split"),
    "mpp": ("mpp", "mpp_x", "microns_per_pixel"),
}
RESERVED = {"id", "path", "coords", "kind", "width", "height", "n_patches", "n_candidates", "whole", "z",
            "n_planes"}


def path_column(header) -> str | None:
    """The column of ``header`` that names the files: the first of :data:`PATH_COLUMNS`, in any case."""
    lower = {h.strip().lower(): h for h in header if h}
    return next((lower[c] for c in PATH_COLUMNS if c in lower), None)


@dataclass
class SourceItem:
    path: Path
    id: str  # the relative name until discover() turns it into the id
    kind: str  # a name of cytofm.data.sources.kinds.INPUT_KINDS
    meta: dict[str, str] = field(default_factory=dict)
    line: int = 0  # manifest line, for messages


@dataclass
class Skip:
    path: str
    reason: str


def _walk(root: Path, skips: list[Skip], notes: list[str]) -> list[Path]:
    """Every file under ``root``, following symlinked folders once each (a link back up is a loop).

    Folders that cannot be listed are recorded as skips instead of vanishing or ending the run.
    """
    files: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            st = d.stat()
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as e:
            skips.append(Skip(str(d), f"cannot read folder ({e.strerror or e}); its files are left out"))
            continue
        if (st.st_dev, st.st_ino) in seen:
            notes.append(f"{d}: already visited through another path (symlink loop or alias); not read twice")
            continue
        seen.add((st.st_dev, st.st_ino))
        for e in entries:
            p = d / e.name
            try:
                is_dir = e.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir and p.suffix.lower() != ".mrxs":
                stack.append(p)
            elif e.is_symlink() and not p.exists():
                skips.append(Skip(str(p), "broken symbolic link"))
            else:
                files.append(p)
    return sorted(files)


def _from_folder(root: Path, cfg: PrepareConfig, skips: list[Skip], notes: list[str]) -> list[SourceItem]:
    items, other, suffixes = [], 0, input_suffixes()
    for p in _walk(root, skips, notes):
        if p.name.startswith("."):
            continue
        if p.suffix.lower() in suffixes:
            rel = p.relative_to(root)
            meta = {}
            if cfg.metadata.labels_from_folders:
                if len(rel.parts) < 2:
                    skips.append(Skip(str(p), "not inside a class sub-folder (labels_from_folders=true)"))
                    continue
                meta["label"] = rel.parts[0]
            kind = kind_of(p)
            items.append(SourceItem(p, rel.as_posix(), kind or "image", meta))
        else:
            other += 1
    if other:
        notes.append(f"{root}: ignored {other} file(s) that are not images or slides")
    if (root / "manifest.csv").is_file():
        notes.append(f"{root}: has a manifest.csv; pass it as INPUT to carry its label and metadata columns")
    return items


def _from_manifest(path: Path, cfg: PrepareConfig, skips: list[Skip], notes: list[str]) -> list[SourceItem]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
            header = [h.strip() for h in (rows[0].keys() if rows else [])]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: cannot read manifest ({e})") from None
    if not rows:
        raise InputError(f"{path}: manifest has no rows")
    lower = {h.lower(): h for h in header if h}
    path_col = path_column(header)
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
        kind = kind_of(p)
        if kind is None:
            skips.append(Skip(str(p), f"unsupported format '{p.suffix or '(no extension)'}' "
                                      f"(manifest line {i})"))
            continue
        meta: dict[str, str] = {}
        for col, val in row.items():
            if col is None or col == path_col:
                continue
            val = (val or "").strip()
            name = alias_of.get(col, col.strip())
            if name == "specimen" and col.strip() != "specimen":
                meta.setdefault(col.strip(), val)  # the user's own column stays, as they named it
            if name in RESERVED:
                name = f"src_{name}"
            meta.setdefault(name, val)
        if label_col:
            meta["label"] = (row.get(label_col) or "").strip()
        try:
            rel = p.resolve().relative_to(path.parent.resolve()).as_posix()
        except ValueError:
            rel = p.name
        items.append(SourceItem(p, rel, kind, meta, line=i))
    return _merge_duplicates(path, items, cfg.metadata.duplicates, skips, notes)


def _merge_duplicates(manifest: Path, items: list[SourceItem], how: str, skips: list[Skip],
                      notes: list[str]) -> list[SourceItem]:
    """One item per file: identical repeated rows are merged with a note; rows that disagree are refused
    unless ``how`` says which to keep (``first``) or to leave the file out (``drop``)."""
    by_file: dict[str, list[SourceItem]] = {}
    for it in items:
        by_file.setdefault(os.path.abspath(it.path), []).append(it)
    keep: list[SourceItem] = []
    for group in by_file.values():
        first = group[0]
        if len(group) == 1:
            keep.append(first)
            continue
        lines = ", ".join(str(g.line) for g in group)
        cols = sorted({k for g in group[1:] for k in set(g.meta) | set(first.meta)
                       if g.meta.get(k) != first.meta.get(k)})
        if not cols:
            notes.append(f"{manifest}: lines {lines} list the same file {first.path} with the same values; "
                         "kept once")
            keep.append(first)
            continue
        diff = "; ".join(f"{c}: " + " vs ".join(repr(g.meta.get(c, "")) for g in group) for c in cols)
        if how == "refuse":
            raise InputError(f"{manifest}: lines {lines} list the same file {first.path} with different "
                             f"values ({diff}); fix the manifest, or pass metadata.duplicates=first (keep "
                             "the first row) or metadata.duplicates=drop (leave the file out)")
        if how == "first":
            notes.append(f"{manifest}: lines {lines} disagree on {first.path} ({diff}); "
                         f"kept line {first.line}")
            keep.append(first)
        else:
            skips.append(Skip(str(first.path),
                              f"manifest lines {lines} disagree ({diff}); left out (duplicates=drop)"))
    return sorted(keep, key=lambda it: it.line)


def discover(inputs: list[str], cfg: PrepareConfig, previous: dict[str, str] | None = None,
             collisions: list[dict] | None = None) -> tuple[list[SourceItem], list[Skip], list[str]]:
    """Expand INPUT arguments into sources; problems with single files become skips, not errors.

    ``previous`` maps absolute source paths to the ids an earlier run of the same output gave them
    (:func:`cytofm.data.sources.item_ids.ids_in_outputs`); clashes of names are appended to ``collisions``.
    """
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
            items += _from_manifest(p, cfg, skips, notes)
        else:
            kind = kind_of(p)
            if kind is None:
                skips.append(Skip(str(p), f"unsupported format '{p.suffix or '(no extension)'}'"))
                continue
            items.append(SourceItem(p, p.name, kind, {}))
    # the same file named twice (two inputs, or a folder and one of its files) is one source
    unique: dict[str, SourceItem] = {}
    for it in items:
        key = os.path.abspath(it.path)
        if key in unique:
            notes.append(f"{it.path}: given more than once; used once")
        else:
            unique[key] = it
    items = list(unique.values())
    # defaults from the config fill metadata the inputs lack
    defaults = {k: getattr(cfg.metadata, k) for k in ("organ", "preparation", "stain", "dataset")}
    for it in items:
        for k, v in defaults.items():
            if v is not None and not it.meta.get(k):
                it.meta[k] = v
    ids, clashes = assign_ids([(os.path.abspath(it.path), it.id) for it in items], previous)
    for it, i in zip(items, ids, strict=True):
        it.id = i
    if clashes:
        notes.append(f"{len(clashes)} file(s) share a name once made safe for ids (e.g. "
                     f"{clashes[0]['shared_name']}); each has its own id, recorded in id_collisions.csv")
        if collisions is not None:
            collisions += clashes
    return items, skips, notes
