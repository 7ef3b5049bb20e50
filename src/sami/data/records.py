"""The training data file: one JSON object per line, one query per object.

Schema (docs/DATA.md)::

    {"id": "math-0007",                     # unique in the file
     "category": "math",                    # free string; the eight MT-Bench categories are built in
     "query": "What is ...?",
     "constitutions": [c_1, ..., c_C],      # C >= 2; each a string, or {"principles": [{name, side, text}]}
                                            # (side: strong | weak | antithesis, ``STORED_SIDES``)
     "responses": [y_1, ..., y_C],          # y_j was generated under c_j
     "provenance": {...}}                   # who/what produced the record (models, templates, seeds)

Reading validates every record and stops at the first problem with ``file:line: field: what is wrong``.
Nothing is skipped silently; blank lines are the only lines that are not records.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sami.core.errors import DataError, InputMissing
from sami.data.principles import STORED_SIDES, Constitution, ConstitutionItem

CATEGORIES: tuple[str, ...] = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
FIELDS: tuple[str, ...] = ("id", "category", "query", "constitutions", "responses", "provenance")


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    id: str
    category: str
    query: str
    constitutions: tuple[Constitution, ...]
    responses: tuple[str, ...]
    provenance: dict = field(default_factory=dict, hash=False, compare=False)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "category": self.category,
            "query": self.query,
            "constitutions": [c.to_json() for c in self.constitutions],
            "responses": list(self.responses),
            "provenance": self.provenance,
        }


def _constitution(value, where: str) -> Constitution:
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{where}: empty constitution text")
        return Constitution.from_text(value)
    if not isinstance(value, dict) or set(value) != {"principles"} or not isinstance(value["principles"], list):
        raise DataError(f'{where}: expected a string or an object {{"principles": [...]}}')
    items = []
    for k, item in enumerate(value["principles"]):
        here = f"{where}.principles[{k}]"
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
            raise DataError(f"{here}: expected an object with a non-empty 'text'")
        extra = set(item) - {"name", "side", "text"}
        if extra:
            raise DataError(f"{here}: unknown fields {sorted(extra)}")
        side = item.get("side")
        if side is not None and side not in STORED_SIDES:
            raise DataError(f"{here}.side: expected one of {STORED_SIDES}, got {side!r}")
        items.append(ConstitutionItem.from_stored(item["text"], item.get("name"), side))
    if not items:
        raise DataError(f"{where}.principles: empty list")
    return Constitution(tuple(items))


def parse_record(obj, where: str) -> Record:
    """Validate one decoded JSON object; ``where`` prefixes every error (e.g. ``data.jsonl:12``)."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [f for f in FIELDS if f not in obj]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing}")
    extra = sorted(set(obj) - set(FIELDS))
    if extra:
        raise DataError(f"{where}: unknown field(s) {extra}; allowed: {list(FIELDS)}")
    for name in ("id", "category", "query"):
        if not isinstance(obj[name], str) or not obj[name].strip():
            raise DataError(f"{where}: field '{name}': expected a non-empty string, got {obj[name]!r}")
    cons, resps = obj["constitutions"], obj["responses"]
    if not isinstance(cons, list) or len(cons) < 2:
        raise DataError(f"{where}: field 'constitutions': expected a list of at least 2, got {_describe(cons)}")
    if not isinstance(resps, list) or len(resps) != len(cons):
        raise DataError(
            f"{where}: field 'responses': expected a list of {len(cons)} strings (one per constitution), "
            f"got {_describe(resps)}"
        )
    for k, r in enumerate(resps):
        if not isinstance(r, str) or not r.strip():
            raise DataError(f"{where}: field 'responses[{k}]': expected a non-empty string, got {r!r}")
    constitutions = tuple(_constitution(c, f"{where}: field 'constitutions[{k}]'") for k, c in enumerate(cons))
    seen: dict[tuple[str, ...], int] = {}
    for k, c in enumerate(constitutions):
        # training shuffles principle order and the template strips whitespace: these would be the same prompt
        key = tuple(sorted(" ".join(item.text.split()) for item in c.items))
        if key in seen:
            raise DataError(
                f"{where}: field 'constitutions[{k}]': identical to constitutions[{seen[key]}] "
                "(principle order and whitespace aside)"
            )
        seen[key] = k
    if not isinstance(obj["provenance"], dict):
        raise DataError(f"{where}: field 'provenance': expected an object, got {type(obj['provenance']).__name__}")
    return Record(obj["id"], obj["category"], obj["query"], constitutions, tuple(resps), obj["provenance"])


def _describe(value) -> str:
    return f"a list of {len(value)}" if isinstance(value, list) else type(value).__name__


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise DataError(f"key {key!r} appears twice in one object")
        obj[key] = value
    return obj


def _decode_object(raw: bytes, path: Path, line_no: int) -> dict:
    """One JSONL line: UTF-8 text holding one JSON object with no key twice; else a ``DataError`` naming
    ``file:line``. ``json.JSONDecodeError`` passes through for the caller that forgives a torn last line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}:{line_no}: not UTF-8 text (byte {err.start + 1} of the line: {err.reason})") from None
    try:
        obj = json.loads(text, object_pairs_hook=_unique_keys)
    except DataError as err:
        raise DataError(f"{path}:{line_no}: {err}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}:{line_no}: expected a JSON object")
    return obj


def _invalid_json(path: Path, line_no: int, err: json.JSONDecodeError) -> DataError:
    return DataError(f"{path}:{line_no}: invalid JSON: {err.msg} (column {err.colno})")


def json_lines(path: str | Path, what: str = "file") -> list[tuple[int, dict]]:
    """``(line number, object)`` for every non-blank line of a JSONL file; a line that is not UTF-8 text
    holding a JSON object (with no key twice) is an error naming ``file:line``. Every JSONL input of the
    project (data, pools, benchmarks) is read here, and every file a stage appends to by ``read_appended``."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{what} {path} is a folder; expected a JSONL file")
    if not path.is_file():
        raise InputMissing(f"{what} not found: {path}")
    out = []
    with path.open("rb") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append((line_no, _decode_object(line, path, line_no)))
            except json.JSONDecodeError as err:
                raise _invalid_json(path, line_no, err) from None
    return out


_READ_ONLY = contextvars.ContextVar("sami_read_only", default=False)


@contextlib.contextmanager
def read_only() -> Iterator[None]:
    """Within it, ``read_appended`` never repairs a file: a reader that holds no lock on the folder (``sami
    view``) must not cut a line that a running stage is writing, nor write to a folder it only reads."""
    token = _READ_ONLY.set(True)
    try:
        yield
    finally:
        _READ_ONLY.reset(token)


def read_appended(path: str | Path) -> list[dict]:
    """The records of a file that a resumable stage appends to (a missing file has none).

    A kill can leave the last line unfinished: invalid JSON there is cut off the file with a warning, and a
    complete last line that lost its newline gets it back, so the next append starts on a fresh line. Any
    other bad line is an error naming ``file:line``, as in ``json_lines``. Under ``read_only()`` an unfinished
    last line is left out of the records and the file is left as it is.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder; expected a JSONL file")
    if not path.is_file():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    records = []
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(_decode_object(line, path, line_no))
        except json.JSONDecodeError as err:
            if line_no == len(lines):  # no newline after it: a write interrupted by a kill (or still going on)
                if _READ_ONLY.get():
                    logger.warning("%s:%d: leaving out an unfinished last line", path, line_no)
                    break
                logger.warning("%s:%d: cutting off an unfinished last line (interrupted write)", path, line_no)
                with open(path, "r+b") as f:
                    f.truncate(len(data) - len(line))
                break
            raise _invalid_json(path, line_no, err) from None
        if line_no == len(lines) and not _READ_ONLY.get():  # complete, but the kill came before its newline
            with open(path, "ab") as f:
                f.write(b"\n")
    return records


def read_records(path: str | Path) -> list[Record]:
    """All records of a JSONL file, validated; ids must be unique."""
    path = Path(path)
    records, seen = [], {}
    for line_no, obj in json_lines(path, "data file"):
        where = f"{path}:{line_no}"
        record = parse_record(obj, where)
        if record.id in seen:
            raise DataError(f"{where}: field 'id': {record.id!r} already used on line {seen[record.id]}")
        seen[record.id] = line_no
        records.append(record)
    if not records:
        raise DataError(f"{path}: no records")
    return records


def write_records(path: str | Path, records: Iterable[Record]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
            f.flush()
