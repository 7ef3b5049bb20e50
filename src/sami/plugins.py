"""Plugins: a user's module that adds checkers, judges, evaluation suites, generation backends, training
methods or principles.

A plugin is any importable module; importing it is what adds things, through the registries the package
already uses (each a ``sami.core.registry.Registry``): ``sami.data.checkers.register_checker``,
``sami.eval.judges.register_judge``, ``sami.eval.run.register_suite``, ``sami.backends.base.register_backend``,
``sami.train.methods.register_trl_method`` / ``sami.train.registry.register_method`` and
``sami.data.principles.register_library`` (a YAML file of principles, read after the built-in one). Plugins load:

- from the command line: ``sami --plugin my_module ...`` (repeatable), before the arguments are parsed, so
  that the choices of ``--method``, ``--judges``, ``--backend`` and ``sami eval SUITE`` include what they add;
- from an experiment config: ``plugins: [my_module]``, before the rest of the config is read;
- from every installed distribution that declares an entry point in the group ``sami.plugins``
  (``[project.entry-points."sami.plugins"] name = "my_module"``, or ``"my_module:setup"`` for a function
  called with no arguments), on the first ``load_plugins`` call (the command line makes one every run).

A module that fails to import is a ``PluginError`` naming it (one ``sami: error:`` line on the command line).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import Iterable

from sami.core.errors import PluginError

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "sami.plugins"
_loaded: set[str] = set()
_entry_points_loaded = False


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def load_plugin(module: str) -> None:
    """Import ``module`` once; what it registers on import becomes available everywhere."""
    if not isinstance(module, str) or not module.strip():
        raise PluginError(f"plugin names a module to import, got {module!r}")
    if module in _loaded:
        return
    try:
        importlib.import_module(module)
    except SystemExit as err:  # it would end the command without a word
        raise PluginError(f"plugin {module!r} called sys.exit({err.code!r}) while importing") from None
    except Exception as err:
        raise PluginError(f"plugin {module!r} failed to import ({_first_line(err)})") from err
    _loaded.add(module)
    logger.debug("loaded plugin %s", module)


def load_entry_point_plugins() -> None:
    """Load every ``sami.plugins`` entry point of the installed distributions (once per process)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if point.value in _loaded:
            continue
        try:
            loaded = point.load()
            if point.attr is not None and callable(loaded):
                loaded()
        except (Exception, SystemExit) as err:
            raise PluginError(
                f"plugin {point.value!r} (entry point {point.name!r} in {ENTRY_POINT_GROUP}) failed to load "
                f"({_first_line(err)})"
            ) from err
        _loaded.add(point.value)
        logger.debug("loaded plugin %s from entry point %s", point.value, point.name)


def load_plugins(modules: Iterable[str] = ()) -> None:
    """The installed entry-point plugins, then ``modules`` in order."""
    if isinstance(modules, str) or not isinstance(modules, Iterable):
        raise PluginError(f"plugins must be a list of module names, got {modules!r}")
    modules = list(modules)
    load_entry_point_plugins()
    for module in modules:
        load_plugin(module)
