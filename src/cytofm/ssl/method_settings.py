"""The config checks of each SSL method, named by its registry line (``settings=``): a setting that one
method takes and another refuses, or that only makes sense with others. Kept apart from the methods (which
import torch) because the config validates itself without importing torch or the methods; a new method
puts its check here, or in any torch-free module, and names it in its registry line."""

from __future__ import annotations


def ibot_settings(cfg) -> None:
    if cfg.head.separate:
        raise ValueError("head.separate: a DINOv2 setting; set method: dinov2 (or use a "
                         "dinov2_* preset) to train with it")


def dinov2_settings(cfg) -> None:
    h = cfg.head
    if not h.separate and not (h.shared and h.shared_teacher):
        raise ValueError("method dinov2 without head.separate uses one head for [CLS] and patch tokens "
                         "(the reference's separate_head: false): set head.shared: true and "
                         "head.shared_teacher: true, or head.separate: true")
