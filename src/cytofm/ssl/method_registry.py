"""The SSL methods by name, each as the class that implements it (``module:Class``), a one-line description
and facts read without importing it: ``display`` (the name as the log writes it) and ``settings`` (the
method's config check, ``module:function`` in a torch-free module). Apart from the methods themselves so
that the pretraining config validates ``method:`` and the command line lists the methods without importing
torch or the methods (which import the config). Adding a method edits no list but its line here."""

from __future__ import annotations

import importlib

from cytofm.utils.registry import Registry

METHODS: Registry[type] = Registry("SSL method")
METHODS.add("ibot", "cytofm.ssl.methods.ibot:IBOTMethod",
            "iBOT: self-distillation on [CLS] tokens and masked patch tokens (Zhou et al., ICLR 2022)",
            display="iBOT", settings="cytofm.ssl.method_settings:ibot_settings")
METHODS.add("dinov2", "cytofm.ssl.methods.dinov2:DINOv2Method",
            "DINOv2: iBOT with KoLeo, Sinkhorn-Knopp centring and separate heads (Oquab et al., TMLR 2024)",
            display="DINOv2", settings="cytofm.ssl.method_settings:dinov2_settings")


def method_class(name: str) -> type:
    """The class registered as ``name`` (imported now); its ``name`` must be the registered one."""
    cls = METHODS.get(name)
    if getattr(cls, "name", None) != name:
        raise TypeError(f"{METHODS.entry(name).target} is registered as SSL method '{name}' "
                        f"but names itself {cls.name!r}")
    return cls


def check_method_settings(cfg) -> None:
    """Run the config check the method ``cfg.method`` names (``settings``), if any; it raises ValueError."""
    target = METHODS.entry(cfg.method).meta.get("settings")
    if target:
        module, _, attr = target.partition(":")
        getattr(importlib.import_module(module), attr)(cfg)
