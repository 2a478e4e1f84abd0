"""The SSL methods by name, each as the class that implements it (``module:Class``) and a one-line
description. Apart from the methods themselves so that the pretraining config validates ``method:`` and
the command line lists the methods without importing torch or the methods (which import the config)."""

from __future__ import annotations

from cytofm.utils.registry import Registry

METHODS: Registry[type] = Registry("SSL method")
METHODS.add("ibot", "cytofm.ssl.methods.ibot:IBOTMethod",
            "iBOT: self-distillation on [CLS] tokens and masked patch tokens (Zhou et al., ICLR 2022)")
METHODS.add("dinov2", "cytofm.ssl.methods.dinov2:DINOv2Method",
            "DINOv2: iBOT with KoLeo, Sinkhorn-Knopp centring and separate heads (Oquab et al., TMLR 2024)")


def method_class(name: str) -> type:
    """The class registered as ``name`` (imported now); its ``name`` must be the registered one."""
    cls = METHODS.get(name)
    if getattr(cls, "name", None) != name:
        raise TypeError(f"{METHODS.entry(name).target} is registered as SSL method '{name}' "
                        f"but names itself {cls.name!r}")
    return cls
