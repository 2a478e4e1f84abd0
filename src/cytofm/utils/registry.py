"""The one registry design: encoder families, SSL methods, MIL models and whatever plugs in next register
here by name with a one-line description. A second entry under a taken name is refused (two modules
claiming one name is a bug to see at import, not a silent overwrite); an unknown name is refused with the
names there are and the closest one. Command-line choices and config validation read ``names()``, so no
list is kept by hand beside a registry. Written here rather than taken from a library because the ones
that exist (catalogue, eva's) bring a dependency or a framework for twenty lines."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from cytofm.utils.errors import UserError

T = TypeVar("T")


class RegistryError(UserError, ValueError):
    """An unknown name looked up in a registry (a user's typo), or a name registered twice (a bug)."""


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    value: T
    description: str


class Registry(Generic[T]):
    """Named entries of one kind (``kind`` names it in messages: "encoder family", "MIL model")."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, value: T, description: str) -> T:
        if not name or not description.strip():
            raise RegistryError(f"a {self.kind} needs a name and a one-line description")
        if name in self._entries:
            raise RegistryError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = Entry(name, value, description.strip())
        return value

    def register(self, name: str, description: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda value: self.add(name, value, description)

    def get(self, name: str) -> T:
        entry = self._entries.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, list(self._entries), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise RegistryError(f"unknown {self.kind} '{name}'{hint}; available: {', '.join(self._entries)}")
        return entry.value

    def names(self) -> tuple[str, ...]:
        """In registration order (the order of listings and of ``--help`` choices)."""
        return tuple(self._entries)

    def entries(self) -> tuple[Entry[T], ...]:
        return tuple(self._entries.values())

    def describe(self) -> list[str]:
        """One line per entry: its name and what it is."""
        width = max((len(n) for n in self._entries), default=0)
        return [f"{e.name:<{width}}  {e.description}" for e in self._entries.values()]

    def validate(self, name: str) -> str:
        """``name`` if registered (for config validators), else the :meth:`get` refusal."""
        self.get(name)
        return name

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
