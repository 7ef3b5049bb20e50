"""One registry type for everything a plugin can add: checkers, rewrites, judges, suites, backends, training
methods and principle libraries.

A ``Registry`` maps a name to an entry, in the order entries were registered (the order ``--help`` and the
report list them). ``register`` refuses a name already taken (``PluginError``, naming it); looking up a name
that is not there is a ``ConfigError`` that names the kind and the known names (``unknown judge 'x'; known:
a, b``), so whichever setting named it, the user reads the same line. It reads like a mapping (``in``,
iteration, ``values()``, ``items()``), which is how the rest of the code lists what is registered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Generic, TypeVar

from sami.core.errors import ConfigError, PluginError

T = TypeVar("T")


class Registry(MutableMapping[str, T], Generic[T]):
    """Named entries of one kind (``kind`` words the error messages: "judge", "evaluation suite")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; a name already taken is a ``PluginError``. Returns ``entry``."""
        if not isinstance(name, str) or not name:
            raise PluginError(f"a {self.kind} is registered under a non-empty name, got {name!r}")
        if name in self._entries:
            raise PluginError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@REGISTRY.decorator("name")`` registers the decorated function under ``name``."""
        return lambda entry: self.register(name, entry)

    def unknown(self, name: object, where: str = "") -> ConfigError:
        """The error for a name that is not registered; ``where`` (a setting, a file) leads the message."""
        known = ", ".join(self._entries) or "none"
        return ConfigError(f"{where + ': ' if where else ''}unknown {self.kind} {name!r}; known: {known}")

    def lookup(self, name: str, where: str = "") -> T:
        """The entry registered under ``name``, else ``unknown(name, where)`` raised."""
        if name not in self._entries:
            raise self.unknown(name, where)
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.lookup(name)

    def __setitem__(self, name: str, entry: T) -> None:
        self.register(name, entry)

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str, default: T | None = None) -> T | None:
        return self._entries.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
