"""Config dataclasses from YAML and command-line overrides, strictly.

Unknown keys are errors (with the path of the key and the allowed names), values are checked against the
field types, and the resolved config, with every default written out, is saved next to what it produced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from sami.core.errors import ConfigError
from sami.core.migrate import hash_form, renamed_keys

T = TypeVar("T")


def _check(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_check(v, item, f"{where}[{k}]") for k, v in enumerate(value)]
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp) or (Any, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {_check(k, key_tp, where): _check(v, value_tp, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, where)
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 2e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if math.isnan(value):  # no setting means anything by NaN; it would surface only as a NaN loss
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")


def from_dict(cls: type[T], data: dict | None, source: str | None = None) -> T:
    """Build dataclass ``cls`` from a mapping; nested dataclasses recurse; unknown keys are errors (a key
    renamed since, ``sami.core.migrate.renamed_keys``, says what it was renamed to).

    Errors read ``source: key.path: what is wrong`` (``source`` is the config file, when there is one).
    """
    try:
        return _from_dict(cls, data, "")
    except ConfigError as err:
        text = str(err).removeprefix("top level: ") if source else str(err)  # the source names where it is
        raise ConfigError(f"{source}: {text}" if source else text) from None


def _from_dict(cls, data, where: str):
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'top level'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names), key=str)
    renamed = renamed_keys(cls)  # old key -> new key, for keys a config section used to have
    for key in unknown:
        if key in renamed:
            prefix = f"{where}." if where else ""
            raise ConfigError(f"{prefix}{key} was renamed to {prefix}{renamed[key]}")
    if unknown:
        raise ConfigError(f"{where + ': ' if where else ''}unknown key(s) {unknown}; allowed: {names}")
    kwargs = {name: _check(value, hints[name], f"{where}.{name}" if where else name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:  # a section's own error (a plugin method's ``sections.<name>``) names where it is
        raise
    except (ValueError, TypeError) as err:
        text = str(err)  # a message that names the setting by its dotted path needs no prefix
        raise ConfigError(
            text if where and text.startswith(f"{where}.") else f"{where or 'top level'}: {text}"
        ) from None


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def set_path(data: dict, dotted: str, value: Any) -> None:
    """``set_path(d, "optim.lr", 1e-5)`` sets d["optim"]["lr"], creating mappings on the way."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {key} is not a mapping")
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``key.path=value``; the value is read as YAML (so 1e-5, true, [1, 2] and null work)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key.path=value")
    key, raw = (part.strip() for part in text.split("=", 1))
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: expected key.path=value, with a key before '='")
    if not raw:
        return key, ""
    try:
        return key, yaml.safe_load(raw)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({problem}); quote it as a string") from None


def load_yaml(path, what: str = "config file") -> dict:
    """A YAML mapping from ``path`` (a path, or a package resource), read as UTF-8; every problem is a
    ``ConfigError`` naming the file (and line, for text that is not UTF-8)."""
    path = Path(path) if isinstance(path, str) else path
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; expected a YAML {what}")
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text ({err.reason})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML ({problem})") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data or {}


# the password (an API key) of a URL's user part: http://user:KEY@host/v1
_URL_SECRET = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@/\s]+@", re.IGNORECASE)


def redact_url(text: str) -> str:
    """``text`` with the password of every URL's user part replaced by ``***``."""
    return _URL_SECRET.sub(r"\1***@", text)


def redacted(data: Any) -> Any:
    """``data`` (a config as a mapping) with ``redact_url`` applied to every string in it."""
    if isinstance(data, dict):
        return {k: redacted(v) for k, v in data.items()}
    if isinstance(data, list):
        return [redacted(v) for v in data]
    return redact_url(data) if isinstance(data, str) else data


def save_yaml(cfg, path: str | Path) -> None:
    """The resolved config beside what it produced; a key in a URL's user part is not written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(redacted(to_dict(cfg)), sort_keys=False))


def config_hash(cfg) -> str:
    blob = json.dumps(hash_form(to_dict(cfg)), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def config_differences(a, b) -> dict[str, tuple[Any, Any]]:
    """Every leaf field whose value differs between two configs (or dicts): ``{"optim.lr": (a, b)}``."""
    flat_a, flat_b = (
        flatten(a if isinstance(a, dict) else to_dict(a)),
        flatten(b if isinstance(b, dict) else to_dict(b)),
    )
    keys = sorted(set(flat_a) | set(flat_b))
    missing = object()
    out = {}
    for key in keys:
        va, vb = flat_a.get(key, missing), flat_b.get(key, missing)
        if va != vb:
            out[key] = (None if va is missing else va, None if vb is missing else vb)
    return out


def flatten(d: dict, prefix: str = "") -> dict:
    """``{"optim": {"lr": 1e-5}}`` -> ``{"optim.lr": 1e-5}``."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
