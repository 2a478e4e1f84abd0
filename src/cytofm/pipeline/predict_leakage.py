"""``cytofm predict``'s leakage flags: an item the model was trained on, of a specimen it was trained on, or
that its encoder saw in pretraining is flagged (and left out of the metrics unless asked), since a number
on seen cases measures memory, not transfer."""

from __future__ import annotations

import numpy as np

from cytofm.data.provenance.hashing import ImageHash
from cytofm.eval import pretraining_guard
from cytofm.eval.leakage import SeenImages
from cytofm.eval.saved_model import SavedModel
from cytofm.features.derived import CELL_UNIT
from cytofm.features.store import item_attrs


def leakage_flags(model: SavedModel, rows: list[dict], use: str = "ensemble") -> list[dict]:
    """Per item: its source among the model's training items (the same bytes, or a pHash within
    ``SEEN_BITS`` of one: a re-encoded copy), its specimen among the training specimens, its source in the
    encoder's pretraining record. The hashes come from the store, where extraction wrote them."""
    items = model.trained_items(use)
    trained = SeenImages.from_hashes([i.source_sha256 for i in items], [i.source_phash for i in items])
    specimens, group = model.trained_specimens(use), model.group_column
    hashes = [_image_hash(r) for r in rows]
    copies = trained.seen(hashes)
    seen = pretraining_guard.seen_by_encoder(model.encoder_spec, hashes)
    return [{"trained_on": bool(copies[k]),
             "specimen_trained_on": bool(group and r.get(group) and r[group] in specimens),
             "seen_in_pretraining": bool(seen[k]),
             "checked_by": "bytes" if h is None or not h.phash else "bytes+phash"}
            for k, (r, h) in enumerate(zip(rows, hashes, strict=True))]


def _image_hash(row: dict) -> ImageHash | None:
    """The content hash and pHash the extraction stored for an item's source, or None without a SHA-256.
    The pHash is '' for a whole slide (pools hold fields and patches) and for a store written before
    extraction stored it; such items are checked by their bytes alone."""
    a = item_attrs(row["h5"]) or {}
    sha = str(a.get("source_sha256", ""))
    return ImageHash(sha, str(a.get("source_phash", "")), np.zeros(0, np.float32)) if sha else None


def specimen_check_line(model: SavedModel, table: list[dict]) -> str | None:
    """What the summary says when no predicted item has a specimen to check, in words a user can act on;
    None when there is nothing to say: the model recorded no specimens, or it classifies cells grouped by
    their field, which cytofm chose itself (a cell's field is its source image, which the item check by
    content already compares)."""
    group = model.group_column
    trained = model.trained_specimens("refit")
    if not group or not trained or any(r.get("specimen") for r in table):
        return None
    if model.unit == CELL_UNIT and group == "field":
        return None
    return (f"specimen leakage not checked: the model's training items were grouped by their '{group}' "
            f"({len(trained)} specimen(s), listed in model.json) and the input gives none; to flag new items "
            f"of a specimen the model was trained on, give --input as a manifest CSV with a '{group}' column "
            "(each item's specimen, patient or case)")
