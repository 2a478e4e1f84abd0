"""``cytofm doctor``: what this machine can do for cytofm."""

from __future__ import annotations

import os
import platform

from rich.markup import escape
from rich.table import Table

from cytofm.cli.common import out_console


def _bf16_cpu() -> str:
    import torch

    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except Exception:
        cap = "unknown"
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        native = False
    return f"{'native' if native else 'emulated (slow)'}; CPU capability {cap}"


def collect() -> list[tuple[str, str, bool]]:
    """(item, value, ok) rows; ``ok`` False marks something a user may want to fix."""
    rows: list[tuple[str, str, bool]] = []
    from cytofm import __version__

    rows.append(("cytofm", __version__, True))
    rows.append(("python", platform.python_version(), True))
    try:
        import torch

        rows.append(("torch", torch.__version__, True))
        rows.append(("CPU threads", f"{torch.get_num_threads()} (cores: {os.cpu_count()})", True))
        rows.append(("bf16 on CPU", _bf16_cpu(), True))
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                bf = torch.cuda.is_bf16_supported()
                rows.append((f"GPU {i}", f"{p.name}, {p.total_memory / 2**30:.0f} GiB, "
                                         f"bf16 {'yes' if bf else 'no (fp16)'}", True))
        else:
            rows.append(("GPU", "none (CUDA not available): training and extraction run on the CPU", True))
        rows.append(("distributed", f"gloo {'yes' if torch.distributed.is_gloo_available() else 'no'}, "
                                    f"nccl {'yes' if torch.distributed.is_nccl_available() else 'no'}", True))
    except Exception as e:
        rows.append(("torch", f"not importable: {e}", False))
    from importlib.metadata import PackageNotFoundError, version

    # versions from the installed distributions: importing umap (numba) alone takes seconds
    for dist, extra in (("timm", None), ("torchvision", None), ("h5py", None), ("scikit-learn", None),
                        ("umap-learn", "viz"), ("imagecodecs", "zstack"), ("pylibCZIrw", "zstack"),
                        ("tensorboard", None)):
        try:
            rows.append((dist, version(dist), True))
        except PackageNotFoundError:
            hint = f"pip install 'cytofm[{extra}]'" if extra else "optional"
            rows.append((dist, f"not installed ({hint})", extra is None and dist != "tensorboard"))
    from cytofm.data.sources.source import OPENSLIDE_ERROR, openslide

    if openslide is not None:
        rows.append(("OpenSlide", f"library {openslide.__library_version__}, "
                                  f"python {openslide.__version__}", True))
    else:
        rows.append(("OpenSlide", f"not available ({OPENSLIDE_ERROR}); "
                                  "whole slides need: pip install 'cytofm[wsi]'", False))
    from cytofm.models.weights import search_paths

    for name, p in search_paths():
        rows.append((name, f"{p} ({'found' if p.exists() else 'absent'})", True))
    return rows + plug_point_rows()


def plug_point_rows() -> list[tuple[str, str, bool]]:
    """A row per entry of every plug point the command line offers (``cli/plugins.py``); an encoder family
    also says its spec syntax and whether it is usable here."""
    from cytofm.cli.plugins import PLUG_POINTS

    rows: list[tuple[str, str, bool]] = []
    for point in PLUG_POINTS:
        try:
            registry = point.load()
        except (ImportError, AttributeError) as e:
            rows.append((point.kind, f"registry {point.registry} not loadable: {e}", False))
            continue
        status = _encoder_status() if point.kind == "encoder family" else {}
        for e in registry.entries():
            syntax = e.meta.get("syntax")
            state = status.get(syntax, "")
            value = "; ".join(v for v in (e.description, syntax and f"spec {syntax}", state) if v)
            rows.append((f"{point.kind} {e.name}", value, not state.startswith("needs")))
    return rows


def _encoder_status() -> dict[str, str]:
    """Spec syntax -> usable, weights found, or where to get them."""
    from cytofm.models.zoo import usable_encoders

    return dict(usable_encoders())


def doctor() -> None:
    """Report versions, CPU/GPU and bf16 support, OpenSlide, where model weights are looked for, and what
    plugs in (encoder families and whether each is usable here, SSL methods, MIL models, cell detectors)."""
    table = Table(title="cytofm doctor", show_header=True, header_style="bold")
    table.add_column("item")
    table.add_column("status")
    for item, value, ok in collect():
        item, value = escape(item), escape(value)  # spec syntaxes hold brackets
        table.add_row(item, value if ok else f"[yellow]{value}[/yellow]")
    out_console.print(table)
