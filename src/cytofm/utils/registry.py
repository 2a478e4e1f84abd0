"""The one registry design, for every plug point: encoder families, SSL methods, MIL models, cell detectors,
probes, feature formats, readouts, input kinds, z-stack readers and whatever plugs in next.

One idiom: ``REGISTRY.add("name", "package.module:attr", "one-line description", **facts)``. The target is
imported when the entry is first used (``get``), never when it is listed, so ``cytofm --help``, config
validation and ``cytofm doctor`` read names, descriptions and facts (``meta``) without importing torch or
the plug-in. A second entry under a taken name is refused (two modules claiming one name is a bug to see at
import, not a silent overwrite); an unknown name is refused with the names there are and the closest one.
Command-line choices and config validation read ``names()``, so no list is kept by hand beside a registry.
Written here rather than taken from a library because the ones that exist (catalogue, eva's) bring a
dependency or a framework for a few dozen lines."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from cytofm.utils.errors import UserError

T = TypeVar("T")


class RegistryError(UserError, ValueError):
    """An unknown name looked up in a registry (a user's typo), or a name registered twice (a bug)."""


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered plug-in: where it lives (``module:attr``), what it is, and facts read without
    importing it (``meta``: a family's spec syntax, whether a MIL model is order-invariant, ...)."""

    name: str
    target: str
    description: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    def load(self) -> T:
        module, _, attr = self.target.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    def __getattr__(self, key: str) -> Any:  # entry.syntax reads meta["syntax"]
        meta = self.__dict__.get("meta") or {}
        if key in meta:
            return meta[key]
        raise AttributeError(key)


class Registry(Generic[T]):
    """Named entries of one kind (``kind`` names it in messages: "encoder family", "MIL model")."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._loaded: dict[str, T] = {}

    def add(self, name: str, target: str, description: str, **meta: Any) -> Entry[T]:
        """Register ``target`` (``"package.module:attr"``, imported on first use) as ``name``."""
        if not name or not description.strip():
            raise RegistryError(f"a {self.kind} needs a name and a one-line description")
        module, sep, attr = target.partition(":")
        if not (module and sep and attr):
            raise RegistryError(f"{self.kind} '{name}': the target must be 'package.module:attr', "
                                f"not {target!r}")
        if name in self._entries:
            raise RegistryError(f"{self.kind} '{name}' is registered twice")
        entry: Entry[T] = Entry(name, target, description.strip(), dict(meta))
        self._entries[name] = entry
        return entry

    @contextmanager
    def temporarily(self, name: str, target: str, description: str, **meta: Any) -> Iterator[Entry[T]]:
        """An entry for the length of a block (a test, a notebook trying a plug-in), gone afterwards."""
        entry = self.add(name, target, description, **meta)
        try:
            yield entry
        finally:
            self._entries.pop(name, None)
            self._loaded.pop(name, None)

    def entry(self, name: str) -> Entry[T]:
        """The entry (nothing imported), or the refusal naming the entries there are."""
        entry = self._entries.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, list(self._entries), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise RegistryError(f"unknown {self.kind} '{name}'{hint}; available: {', '.join(self._entries)}")
        return entry

    def get(self, name: str) -> T:
        """The registered object, imported the first time it is asked for."""
        if name not in self._loaded:
            self._loaded[name] = self.entry(name).load()
        return self._loaded[name]

    def names(self) -> tuple[str, ...]:
        """In registration order (the order of listings and of ``--help`` choices)."""
        return tuple(self._entries)

    def entries(self) -> tuple[Entry[T], ...]:
        return tuple(self._entries.values())

    def describe(self) -> list[str]:
        """One line per entry: its name and what it is."""
        width = max((len(n) for n in self._entries), default=0)
        return [f"{e.name:<{width}}  {e.description}" for e in self._entries.values()]

    def help(self) -> str:
        """The entries as one ``--help`` sentence: ``name: description; ...``."""
        return "; ".join(f"{e.name}: {e.description}" for e in self._entries.values())

    def validate(self, name: str) -> str:
        """``name`` if registered (for config validators), else the :meth:`entry` refusal."""
        self.entry(name)
        return name

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
