"""The cell detectors by name (``cells.detector``, ``--cell-detector``). A detector is a function
``(rgb, mpp, cfg, scale) -> CellTable`` of a working-scale image; ``detect_source`` runs it region by
region on any source. Learned ones import their package only when called."""

from __future__ import annotations

from cytofm.utils.registry import Registry


def _lazy(module: str, name: str):
    def run(*args, **kwargs):
        import importlib

        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    return run


CELL_DETECTORS: Registry = Registry("cell detector")
CELL_DETECTORS.add("watershed", _lazy("cytofm.data.cells.watershed", "detect_watershed"),
                   "optical density, seeded watershed, nuclei by the nuclear stain; needs no weights")
CELL_DETECTORS.add("otsu", _lazy("cytofm.data.cells.watershed", "detect_otsu"),
                   "baseline: Otsu's threshold and connected components, no splitting")
CELL_DETECTORS.add("cellpose", _lazy("cytofm.data.cells.plugins", "detect_cellpose"),
                   "Cellpose, with its package and weights installed locally")
CELL_DETECTORS.add("instanseg", _lazy("cytofm.data.cells.plugins", "detect_instanseg"),
                   "InstanSeg, with its package and weights installed locally")
CELL_DETECTORS.add("stardist", _lazy("cytofm.data.cells.plugins", "detect_stardist"),
                   "StarDist 2D, with its package and model folder installed locally")
