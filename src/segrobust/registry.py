"""Name -> implementation registries: the extension points of segrobust.

Architectures, perturbations, dataset sources, textures and report figures are looked up by the
string the config (or a rule's wildcard) uses. Adding one is one entry plus its tests; the config
schema's allowed names are checked against these registries by a unit test so the two never
drift apart.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that no registry entry has; the message lists what is allowed."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly instead
        return str(self.args[0])


class Registry(Generic[T]):
    """A mapping of names to implementations with a decorator to add entries.

    Args:
        kind: what the entries are ("architecture", "perturbation", ...), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding ``obj`` under ``name``; a second entry of the same name is an error."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """The entry called ``name``, or an error naming the allowed names."""
        try:
            return self._entries[name]
        except KeyError:
            allowed = ", ".join(sorted(self._entries))
            raise UnknownNameError(f"unknown {self.kind} {name!r}; allowed: {allowed}") from None

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def in_order(self) -> list[str]:
        """All registered names in the order they were registered (e.g. the papers' order of
        architectures, which legends keep)."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


def import_target(target: str) -> Any:
    """Import and return what a ``"module:function"`` string names: the form in which a record
    (an architecture's builder, a source's preparation) names code it needs only when used, so
    that parse time, which reads the records, imports nothing heavy.

    Raises:
        ValueError: for a string not of that form, naming it.
    """
    module, sep, name = target.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"{target!r} is not of the form 'module:function'")
    return getattr(importlib.import_module(module), name)
