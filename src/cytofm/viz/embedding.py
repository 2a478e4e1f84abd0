"""2-D maps of frozen features (UMAP, McInnes et al. 2018; t-SNE or PCA when umap-learn is absent)."""

from __future__ import annotations

import html
import warnings
from pathlib import Path

import numpy as np


def embed_2d(x: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """(N, 2) coordinates and the method used. Features are standardised and reduced to 50 PCA
    components first (the usual UMAP/t-SNE front end for hundreds of dimensions)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x, dtype=np.float64)
    if len(x) < 3:
        raise ValueError(f"a 2-D map needs at least 3 items, got {len(x)}")
    z = StandardScaler().fit_transform(x)
    z = np.nan_to_num(z)
    n_pc = min(50, z.shape[1], len(z) - 1)
    z = (PCA(n_pc, random_state=seed).fit_transform(z) if n_pc >= 2
         else np.pad(z, ((0, 0), (0, 2 - z.shape[1]))))
    if method == "auto":
        try:
            import umap  # noqa: F401

            method = "umap"
        except ImportError:
            method = "tsne" if len(z) >= 10 else "pca"
    if method == "umap":
        import umap

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xy = umap.UMAP(n_neighbors=min(15, len(z) - 1), min_dist=0.1, random_state=seed).fit_transform(z)
    elif method == "tsne":
        from sklearn.manifold import TSNE

        xy = TSNE(2, perplexity=min(30.0, (len(z) - 1) / 3), random_state=seed, init="pca").fit_transform(z)
    elif method == "pca":
        xy = z[:, :2]
    else:
        raise ValueError(f"unknown method '{method}' (umap, tsne, pca, auto)")
    return np.asarray(xy, dtype=np.float64), method


def _palette(n: int) -> list[str]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [matplotlib.colors.to_hex(cmap(i % cmap.N)) for i in range(n)]


def scatter_png(xy: np.ndarray, labels: list[str], path: str | Path, title: str, method: str,
                color_by: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = sorted(set(labels))
    colors = dict(zip(classes, _palette(len(classes)), strict=True))
    fig, ax = plt.subplots(figsize=(7.5, 5.5), dpi=110, constrained_layout=True)
    s = float(np.clip(3000 / max(len(xy), 1), 3, 30))
    for c in classes:
        m = np.array([lab == c for lab in labels])
        ax.scatter(xy[m, 0], xy[m, 1], s=s, c=colors[c], label=f"{c} ({m.sum()})", alpha=0.8, linewidths=0)
    ax.set_xlabel(f"{method.upper()} 1")
    ax.set_ylabel(f"{method.upper()} 2")
    ax.set_title(title, fontsize=10)
    ax.legend(title=color_by, fontsize=8, title_fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5),
              frameon=False)
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def scatter_html(xy: np.ndarray, labels: list[str], ids: list[str], path: str | Path, title: str,
                 color_by: str) -> Path:
    """A self-contained interactive scatter (inline SVG; hover a point for its id and label)."""
    classes = sorted(set(labels))
    colors = dict(zip(classes, _palette(len(classes)), strict=True))
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi - lo > 0, hi - lo, 1)
    p = (xy - lo) / span
    W, H, pad = 640, 480, 20
    dots = []
    for (u, v), lab, i in zip(p, labels, ids, strict=True):
        cx, cy = pad + u * (W - 2 * pad), pad + (1 - v) * (H - 2 * pad)
        dots.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{colors[lab]}" '
                    f'class="c{classes.index(lab)}">'
                    f"<title>{html.escape(str(i))}: {html.escape(lab)}</title></circle>")
    legend = "".join(
        f'<label><input type="checkbox" checked onchange="document.querySelectorAll(\'.c{k}\').forEach('
        f"e=>e.style.display=this.checked?'':'none')\"><span style=\"color:{colors[c]}\">&#9679;</span> "
        f"{html.escape(c)} ({labels.count(c)})</label><br>" for k, c in enumerate(classes))
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           "<style>body{font-family:sans-serif;margin:16px} .wrap{display:flex;gap:16px} "
           "svg{border:1px solid #ccc} circle{opacity:.8} circle:hover{r:6;opacity:1}</style></head><body>"
           f"<h3>{html.escape(title)}</h3><div class='wrap'>"
           f"<svg width='{W}' height='{H}' viewBox='0 0 {W} {H}'>"
           + "".join(dots)
           + f"</svg><div><b>{html.escape(color_by)}</b><br>{legend}</div></div></body></html>")
    path = Path(path)
    path.write_text(doc)
    return path


def store_map(features: str | Path, color_by: str, out: str | Path, method: str = "auto",
              max_items: int = 5000, keep: set[str] | None = None, log=print) -> tuple[Path, Path, str, int]:
    """A 2-D map of a feature store's items (mean of their instance features) coloured by a manifest
    column: ``out`` (PNG) and the interactive HTML beside it; returns both paths, the method, the item count.

    ``keep`` limits the map to items whose ``color_by`` value is in it; unreadable items are skipped and
    logged.
    """
    from cytofm.features.store import load_store, read_item
    from cytofm.utils.errors import InputError

    features, out = Path(features), Path(out)
    try:
        rows = load_store(features)
    except FileNotFoundError as e:
        raise InputError(str(e)) from None
    if not rows:
        raise InputError(f"{features}: the store is empty")
    if color_by not in rows[0]:
        raise InputError(f"{features}/manifest.csv has no column '{color_by}' "
                         f"(columns: {', '.join(k for k in rows[0] if k != 'h5')})")
    if keep is not None:
        rows = [r for r in rows if r.get(color_by) in keep]
    if len(rows) > max_items:
        rows = [rows[i] for i in sorted(np.random.default_rng(0).choice(len(rows), max_items, replace=False))]
    xs, labels, ids, dims = [], [], [], set()
    for r in rows:
        try:
            f, _, _ = read_item(r["h5"])
        except Exception as e:
            log(f"skipped {r['h5']}: {e}")
            continue
        dims.add(f.shape[1])
        xs.append(f.mean(0))
        labels.append(str(r.get(color_by) or "(none)"))
        ids.append(r["id"])
    if len(dims) > 1:
        raise InputError(f"{features}: items have features of different sizes {sorted(dims)} "
                         "(mixed encoders in one store?)")
    try:
        xy, used = embed_2d(np.stack(xs) if xs else np.zeros((0, 1)), method)
    except ValueError as e:
        raise InputError(f"{features}: {e}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    title = f"{used.upper()} of {features.name} ({len(ids)} items, mean of instance features) by {color_by}"
    scatter_png(xy, labels, out, title, used, color_by)
    html = scatter_html(xy, labels, ids, out.with_suffix(".html"), title, color_by)
    return out, html, used, len(ids)
