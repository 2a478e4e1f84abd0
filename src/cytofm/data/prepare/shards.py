"""Materialise prepared patches as webdataset tar shards (``{key}.png`` + ``{key}.json``).

For pretraining corpora too large to cut from their sources on the fly: sequential tar reads are
what webdataset-style loaders stream fastest. webdataset groups the members of one sample by the name up
to the first dot, so a dot inside an id (TCGA barcodes such as ``TCGA-AA-3968-01Z-00-DX1.0C8E...``)
is written as ``%2E`` in the key (and ``%`` as ``%25``); the JSON keeps the id as it is.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from PIL import Image

from cytofm.data.prepare.config import PrepareConfig
from cytofm.utils.io import atomic_path, strict_json
from cytofm.utils.progress import StageTask


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def shard_key(item_id: str, x: int, y: int, z: int | None = None) -> str:
    """The sample key of patch (x, y) of an item (of plane ``z`` of a z-stack): no dots, so webdataset
    keeps it whole."""
    plane = "" if z is None else f"_z{int(z)}"
    return f"{item_id.replace('%', '%25').replace('.', '%2E')}__{int(x)}_{int(y)}{plane}"


def parse_shard_key(key: str) -> tuple[str, int, int]:
    """Inverse of :func:`shard_key` (the item and the patch's x, y; a plane suffix is dropped)."""
    enc, _, xy = key.rpartition("__")
    x, _, y = xy.partition("_")
    return enc.replace("%2E", ".").replace("%25", "%"), int(x), int(y.partition("_z")[0])


def write_shards(out: Path, rows: list[dict], cfg: PrepareConfig, progress=None) -> list[Path]:
    from cytofm.data.prepare.prepared import load_prepared

    shard_dir = out / "shards"
    shard_dir.mkdir(exist_ok=True)
    items = load_prepared(out)
    total = sum(int(r["n_patches"]) for r in rows)
    task = StageTask(progress, "shards", total, rate="")
    paths: list[Path] = []
    tar = ctx = None
    n_in_shard = 0

    def _open():
        nonlocal tar, ctx, n_in_shard
        path = shard_dir / f"shard-{len(paths):06d}.tar"
        ctx = atomic_path(path)
        tmp = ctx.__enter__()
        tar = tarfile.open(tmp, "w")
        paths.append(path)
        n_in_shard = 0

    def _close():
        nonlocal tar
        if tar is not None:
            tar.close()
            ctx.__exit__(None, None, None)
            tar = None

    with task:
        for it in items:
            planes = it.planes()
            for k, (xy, arr) in enumerate(it.patches()):
                if tar is None or n_in_shard >= cfg.output.shard_size:
                    _close()
                    _open()
                z = None if planes is None else int(planes[k])
                key = shard_key(it.id, xy[0], xy[1], z)
                buf = io.BytesIO()
                Image.fromarray(arr).save(buf, format="PNG")
                _add(tar, f"{key}.png", buf.getvalue())
                meta = {"id": it.id, "x": int(xy[0]), "y": int(xy[1]), **({} if z is None else {"z": z}),
                        **it.meta}
                _add(tar, f"{key}.json", strict_json(meta, indent=None).encode())
                n_in_shard += 1
                task.update(advance=1)
    _close()
    return paths
