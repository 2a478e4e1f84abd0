"""The cell detectors by name (``cells.detector``, ``--cell-detector``). A detector is a function
``(rgb, mpp, cfg, scale) -> CellTable`` of a working-scale image; ``detect_source`` runs it region by
region on any source. Learned ones import their package only when called."""

from __future__ import annotations

from cytofm.utils.registry import Registry

CELL_DETECTORS: Registry = Registry("cell detector")
CELL_DETECTORS.add("watershed", "cytofm.data.cells.watershed:detect_watershed",
                   "optical density, seeded watershed, nuclei by the nuclear stain; needs no weights")
CELL_DETECTORS.add("otsu", "cytofm.data.cells.watershed:detect_otsu",
                   "baseline: Otsu's threshold and connected components, no splitting")
CELL_DETECTORS.add("cellpose", "cytofm.data.cells.plugins:detect_cellpose",
                   "Cellpose, with its package and weights installed locally")
CELL_DETECTORS.add("instanseg", "cytofm.data.cells.plugins:detect_instanseg",
                   "InstanSeg, with its package and weights installed locally")
CELL_DETECTORS.add("stardist", "cytofm.data.cells.plugins:detect_stardist",
                   "StarDist 2D, with its package and model folder installed locally")
