"""Write the pretraining record of an encoder: every image it was pretrained on, hashed.

    python scripts/build_pretraining_record.py ../shared/data/bccd/images ../shared/data/herlev/images \
        ../shared/data/cric/images --out src/cytofm/weights/cytofm_vit_small_patch16.pretraining.csv.gz \
        --json src/cytofm/weights/cytofm_vit_small_patch16.json

Each argument is a folder of images; the dataset is its parent folder's name and ``relpath`` is relative to
that parent (``images/...``, as in the shared sets' manifests). ``--json`` adds ``"pretraining_record"``
(the file name, beside the weights) to an exported encoder's JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cytofm.data.provenance.hashing import hash_image
from cytofm.data.provenance.pretraining_record import write_record

EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--json", type=Path, help="encoder JSON to point at the record")
    a = ap.parse_args()
    rows = []
    for folder in a.folders:
        folder = folder.resolve()
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTS and p.is_file())
        for p in files:
            h = hash_image(p)
            rows.append({"dataset": folder.parent.name, "relpath": p.relative_to(folder.parent).as_posix(),
                         "sha256": h.sha256, "phash": h.phash})
        print(f"{folder.parent.name}: {len(files)} images")
    write_record(rows, a.out)
    print(f"wrote {a.out} ({len(rows)} images, {a.out.stat().st_size} bytes)")
    if a.json:
        meta = json.loads(a.json.read_text())
        meta["pretraining_record"] = a.out.name
        a.json.write_text(json.dumps(meta, indent=2) + "\n")
        print(f"{a.json}: pretraining_record = {a.out.name}")


if __name__ == "__main__":
    main()
