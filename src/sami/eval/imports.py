"""``sami eval import``: answers and pairwise judgments made by other tools, read into an MT-Bench folder.

Each file is read as a table (pandas: JSON Lines, JSON as a list of records or as column dicts keyed by row,
CSV) and its format recognised from its columns, or named with ``ImportConfig.format``:

    fastchat-question   FastChat's question.jsonl: {question_id, category, turns}
    fastchat-answer     FastChat's model_answer/<model>.jsonl: {question_id, model_id, choices: [{turns}]}
    fastchat-pair       FastChat's model_judgment/<judge>_pair.jsonl: {question_id, model_1, model_2, g1_winner,
                        g2_winner, g1_judgment, g2_judgment, judge, turn}; game 1 shows model_1 first, game 2
                        model_2 first, and both winners are already named model_1 / model_2 / tie / error
    alpaca-eval         AlpacaEval's annotations.json: {instruction, output_1, output_2, generator_1,
                        generator_2, preference}; preference 1 prefers output_1, 2 output_2, 1.5 is a tie, and a
                        value in between (a weighted annotator) is the probability of output_2
    answers             any table of answers: question, response, and optionally model, question_id, category,
                        constitution, turn
    judgments           any table of verdicts: model_a, model_b, outcome (a / b / tie, or 1 / 0 / 0.5 for
                        model_a), and optionally question_id, question, category, turn, words_a, words_b, judge

What is read goes where ``sami eval mtbench`` keeps its own (``sami.eval.mtbench``): answers per model,
verdicts per judge and pair (one record per order, verdict A when the answer shown first wins), the questions
as a FastChat question.jsonl, and ``config.yaml`` naming every model ``NAME=imported:FILE`` and every judge in
``mtbench.imported_judges``, so that ``--recompute``, the report and the model-free judges work unchanged.

A source that judged each pair in one order only (AlpacaEval, a judgments table) is stored with the same
verdict in the mirrored order, marked ``mirrored: true``: the two orders then agree, and the item counts as one
judgement (``pairwise_metrics`` needs both orders; a mirrored item can never be an order disagreement).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from sami.backends.base import IMPORTED
from sami.core.config import from_dict, parse_override, save_yaml, set_path
from sami.core.errors import ConfigError, DataError, InputMissing
from sami.core.layout import CONFIG, IMPORT, answers_file, pair_judgments
from sami.data.records import json_lines
from sami.eval.config import EvalConfig
from sami.eval.judges import JUDGES, hard_verdict
from sami.eval.mtbench.statistics import mtbench_metrics
from sami.eval.mtbench_data import load_questions
from sami.eval.store import (
    JsonlStore,
    check_bindings,
    check_imported,
    check_settings,
    finish_suite,
    held_as_found,
)

logger = logging.getLogger(__name__)

UNKNOWN_CATEGORY = "unknown"  # a verdict's category when no file says which question it is
FIELDS: tuple[str, ...] = (
    "question_id",
    "question",
    "category",
    "constitution",
    "response",
    "model",
    "turn",
    "model_a",
    "model_b",
    "outcome",
    "words_a",
    "words_b",
    "judge",
)
# Column names a table may use for a field without being told (besides the field's own name).
ALIASES: dict[str, tuple[str, ...]] = {
    "question_id": ("id",),
    "question": ("prompt", "instruction", "query"),
    "response": ("answer", "output"),
    "model": ("model_id", "generator"),
}


@dataclass
class ImportConfig:
    """What ``sami eval import`` reads, and where it writes.

    files: question, answer and judgment files, in any of the formats of ``FORMATS``.
    output_dir: the eval folder; everything goes under ``<output_dir>/mtbench``.
    format: None recognises each file's format from its columns; a name of ``FORMATS`` reads every file so.
    columns: a table's column for a field (``FIELDS``), where it has another name than the field's own or its
        aliases (``ALIASES``): ``{response: completion}``.
    model: the model of an answers table without a model column (None: the file's name without suffix).
    judge: the name of every imported judge (None: a FastChat file's ``judge``, a table's ``judge`` or
        AlpacaEval's ``annotator`` column, else the file's name without suffix).
    questions: where the text and category of questions come from when no imported file holds them (FastChat's
        answers and judgments hold neither): ``package``, a question.jsonl or ``hub:<id>``, as
        ``mtbench.questions`` takes them; None: only the imported files.
    overrides: ``key=value`` settings of the eval config written beside the results (``-o``), e.g.
        ``mtbench.principles=[lowercase,bullet_list]`` for the principles the imported answers followed.
    """

    files: list[str] = field(default_factory=list)
    output_dir: str = "runs/eval"
    format: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    model: str | None = None
    judge: str | None = None
    questions: str | None = None
    overrides: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.files:
            raise ValueError("no files to import")
        if self.format is not None and self.format not in FORMATS:
            raise ValueError(f"format must be one of {tuple(FORMATS)}, got {self.format!r}")
        unknown = sorted(set(self.columns) - set(FIELDS))
        if unknown:
            raise ValueError(f"columns: unknown field(s) {unknown}; the fields are {FIELDS}")


class Rows:
    """One file read as a table: its rows as dicts (missing cells None), numbered from 1 in file order."""

    def __init__(self, path: Path, cfg: ImportConfig):
        self.path = path
        self.cfg = cfg
        frame, lines = read_table(path)
        self.columns = [str(c) for c in frame.columns]
        frame = frame.astype(object).where(frame.notna(), None)
        self.rows = frame.to_dict("records")
        self.lines = lines  # JSON Lines: the line of each row, which the errors name instead of its row number

    def column(self, name: str) -> str | None:
        """The table's column for field ``name``: the configured one, the field's own name, or an alias."""
        if name in self.cfg.columns:
            if self.cfg.columns[name] not in self.columns:
                column = self.cfg.columns[name]
                raise DataError(f"{self.path}: no column {column!r} (for {name}); it has {self.columns}")
            return self.cfg.columns[name]
        return next((c for c in (name, *ALIASES.get(name, ())) if c in self.columns), None)

    def error(self, number: int, name: str, problem: str) -> DataError:
        return DataError(f"{self.where(number)}: field {name!r}: {problem}")

    def where(self, number: int) -> str:
        """Row ``number`` as errors name it: ``file:line`` for JSON Lines, ``file: row N`` for other tables."""
        return f"{self.path}:{self.lines[number - 1]}" if self.lines else f"{self.path}: row {number}"

    def get(self, number: int, row: dict, name: str, required: bool = True):
        col = self.column(name)
        value = None if col is None else _plain(row[col])
        if value is None and required:
            raise self.error(number, col or name, "missing")
        return value

    def text(self, number: int, row: dict, name: str, required: bool = True) -> str | None:
        value = self.get(number, row, name, required)
        if value is not None and not isinstance(value, str):
            raise self.error(number, self.column(name) or name, f"expected text, got {value!r}")
        return value

    def __iter__(self):
        return iter(enumerate(self.rows, 1))


def read_table(path: Path):
    """A file as a DataFrame and the line each row starts on (None where a row has no line of its own): CSV by
    its suffix, else one JSON document (a list of records, or column dicts keyed by row as pandas' ``to_json()``
    writes them), else JSON Lines. Every problem names ``file:line`` where it has a line, else the file."""
    import pandas as pd

    if path.is_dir():
        raise DataError(f"{path} is a folder; expected a file of answers, judgments or questions")
    if not path.is_file():
        raise InputMissing(f"{path}: no such file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark is no part of the first column
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text") from None
    if not text.strip():
        raise DataError(f"{path}: empty file; expected a table of answers, judgments or questions")
    if path.suffix.lower() in (".csv", ".tsv"):
        try:
            frame = pd.read_csv(io.StringIO(text), sep="\t" if path.suffix.lower() == ".tsv" else ",")
        except (ValueError, pd.errors.ParserError) as err:
            raise DataError(f"{path}: not a readable table ({str(err).splitlines()[0]})") from None
        return frame, None
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    try:
        if isinstance(whole, list):
            bad = next((k for k, item in enumerate(whole, 1) if not isinstance(item, dict)), None)
            if bad is not None:
                raise DataError(f"{path}: row {bad}: expected an object (a record of fields), got {whole[bad - 1]!r}")
            return pd.DataFrame.from_records(whole), None
        if isinstance(whole, dict) and whole and all(isinstance(v, dict) for v in whole.values()):
            frame = pd.DataFrame(whole)  # column dicts keyed by row
            keys = [str(k) for k in frame.index]
            order = sorted(range(len(keys)), key=lambda i: (not keys[i].isdigit(), _row_key(keys[i])))
            return frame.iloc[order], None
    except DataError:
        raise
    except ValueError as err:
        raise DataError(f"{path}: not a JSON table ({str(err).splitlines()[0]})") from None
    lines = json_lines(path, "imported file")  # JSON Lines: a bad line is named by its number
    return pd.DataFrame.from_records([obj for _, obj in lines]), [number for number, _ in lines]


def _row_key(key: str):
    return int(key) if key.isdigit() else key


def _plain(value):
    """A cell as plain JSON data: None for NaN, Python numbers for NumPy ones, integral floats as ints."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return int(value)
    return value


def _name(text: str, what: str, where: str) -> str:
    """A model or judge name made safe as a file name: other characters become '-'."""
    name = re.sub(r"[^A-Za-z0-9._+-]+", "-", str(text)).strip("-._+")
    if not name:
        raise DataError(f"{where}: {what} {text!r} has no letter or digit to name it by")
    return name


def _question_id(value):
    return int(value) if isinstance(value, str) and value.isdigit() else value


class Collected:
    """Everything read so far: questions, answers and verdicts, with the file each came from."""

    def __init__(self) -> None:
        self.turns: dict = defaultdict(dict)  # question id -> {turn: text}
        self.categories: dict = {}  # question id -> category
        self.ids_by_text: dict[str, object] = {}  # a table's question text -> the id it was given
        self.answers: dict[str, dict] = defaultdict(dict)  # model -> (question id, turn) -> record
        self.sources: dict[str, str] = {}  # model -> the first file with its answers, else with its verdicts
        self.judged_in: dict[str, str] = {}
        self.verdicts: dict[str, dict] = defaultdict(dict)  # judge -> (question id, turn, first, second) -> record
        self.rows: dict[str, dict] = defaultdict(dict)  # judge -> (question id, turn, first, second) -> file:line

    def question(self, qid, turn: int, text: str | None, category: str | None, where: str) -> None:
        if text is not None:
            known = self.turns[qid].get(turn)
            if known is not None and known != text:
                raise DataError(f"{where}: question {qid} turn {turn} has another text than before")
            self.turns[qid][turn] = text
        if category is not None:
            if self.categories.get(qid, category) != category:
                raise DataError(f"{where}: question {qid} is in category {self.categories[qid]!r}, not {category!r}")
            self.categories[qid] = category

    def table_id(self, rows: Rows, number: int, row: dict):
        """A table row's question id: its id column, else the row number of the first row asking the same
        question (so the answers of several models to one question share an id)."""
        qid = rows.get(number, row, "question_id", required=False)
        if qid is not None:
            return _question_id(qid)
        text = rows.text(number, row, "question", required=False)
        if text is None:
            return number
        if text not in self.ids_by_text:
            used = set(self.ids_by_text.values())
            self.ids_by_text[text] = number if number not in used else max(used) + 1
        return self.ids_by_text[text]

    def answer(self, model: str, source: Path, qid, turn: int, text: str, where: str, **extra) -> None:
        if not isinstance(text, str):
            raise DataError(f"{where}: expected the answer text, got {text!r}")
        self.sources.setdefault(model, str(source))
        known = self.answers[model].get((qid, turn))
        if known is not None and known["answer"] != text:
            before = known["source"]
            raise DataError(f"{where}: {model} has another answer to question {qid} turn {turn} (in {before})")
        self.answers[model][(qid, turn)] = {"answer": text, "source": str(source), **extra}

    def verdict(self, judge: str, qid, turn: int, first: str, second: str, verdict, where: str, **extra) -> None:
        if first == second:
            raise DataError(f"{where}: a model compared with itself ({first})")
        for model in (first, second):
            self.judged_in.setdefault(model, re.sub(r"(:\d+|: row \d+)$", "", where))  # where: FILE:LINE, FILE: row N
        record = {"question_id": qid, "turn": turn, "first": first, "second": second, "verdict": verdict, **extra}
        key = (qid, turn, first, second)
        known = self.verdicts[judge].get(key)
        if known is not None and not known.get("mirrored"):
            if record.get("mirrored"):
                return  # a verdict given in this order outranks the mirror of the other order's
            if known["verdict"] != record["verdict"]:
                raise DataError(
                    f"{where}: {judge} judged question {qid} turn {turn} with {first} first before, "
                    f"with another verdict ({known['verdict']!r}, now {verdict!r})"
                )
        self.verdicts[judge][key] = record
        self.rows[judge][key] = where

    def leave_out_unanswered(self) -> list[str]:
        """Where answers were imported, a verdict on an answer that none of the files holds (a model with no
        answers, a question it did not answer) is left out: its length and style are unknown, and a rate over a
        mix of checkable and uncheckable items would read as one over the answers. Returns ``where: why`` per
        row left out. Verdicts imported without any answers are all kept."""
        if not self.answers:
            return []
        out: dict[str, str] = {}
        for judge, verdicts in self.verdicts.items():
            for key in list(verdicts):
                qid, turn, first, second = key
                missing = [m for m in (first, second) if m not in self.answers]
                unanswered = [m for m in (first, second) if m in self.answers and (qid, turn) not in self.answers[m]]
                if missing:
                    why = f"no answers of {' or '.join(map(repr, missing))} were imported"
                elif unanswered:
                    why = f"question {qid} turn {turn} has no imported answer of {' or '.join(map(repr, unanswered))}"
                else:
                    continue
                del verdicts[key]
                out.setdefault(self.rows[judge][key], f"verdict left out of the rates: {why}")
        for judge in [j for j, v in self.verdicts.items() if not v]:
            del self.verdicts[judge]
        return [f"{where}: {why}" for where, why in out.items()]

    def question_ids(self) -> set:
        ids = set(self.turns) | {qid for answers in self.answers.values() for qid, _ in answers}
        return ids | {qid for verdicts in self.verdicts.values() for qid, *_ in verdicts}

    def one_order(
        self,
        judge: str,
        qid,
        turn: int,
        first: str,
        second: str,
        verdict,
        where: str,
        probs=None,
        lengths=(None, None),
        **extra,
    ) -> None:
        """A verdict judged in one order only, stored with its mirror (the same judgement seen from the other
        position) so that both orders agree and the item counts once."""
        mirror = {"A": "B", "B": "A", "tie": "tie", None: None}
        for a, b, v, p, (la, lb), mirrored in (
            (first, second, verdict, probs, lengths, False),
            (
                second,
                first,
                mirror[verdict],
                None if probs is None else (probs[1], probs[0], probs[2]),
                lengths[::-1],
                True,
            ),
        ):
            sizes = {} if la is None or lb is None else {"words_first": la, "words_second": lb}
            probs_field = {} if p is None else {"probs": list(p)}
            self.verdict(judge, qid, turn, a, b, v, where, **probs_field, **sizes, mirrored=mirrored, **extra)

    @property
    def models(self) -> list[str]:
        names = list(self.answers)
        for records in self.verdicts.values():
            for _, _, first, second in records:
                names += [n for n in (first, second) if n not in names]
        return names


def _judge_name(cfg: ImportConfig, given, path: Path, where: str) -> str:
    """``--judge``, else the name the file gives its judge, else the file's name without suffix."""
    if isinstance(given, (list, tuple)) and given:
        given = given[0]  # FastChat: (judge model, prompt name)
    name = _name(cfg.judge or given or path.stem, "judge", where)
    if name in JUDGES:
        raise ConfigError(f"{where}: imported judge {name!r} has the name of a built-in judge; name it with --judge")
    return name


def _turn(rows: Rows, number: int, row: dict) -> int:
    turn = rows.get(number, row, "turn", required=False)
    turn = 1 if turn is None else _question_id(turn)
    if not isinstance(turn, int) or turn < 1:
        raise rows.error(number, rows.column("turn"), f"expected a turn number (1, 2, ...), got {turn!r}")
    return turn


def read_fastchat_questions(rows: Rows, got: Collected) -> None:
    for number, row in rows:
        turns = rows.get(number, row, "turns")
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise rows.error(number, "turns", "expected a list of texts")
        qid = _question_id(rows.get(number, row, "question_id"))
        category = rows.text(number, row, "category", required=False)
        for k, text in enumerate(turns, 1):
            got.question(qid, k, text, category, f"{rows.where(number)}")


def read_fastchat_answers(rows: Rows, got: Collected) -> None:
    for number, row in rows:
        qid = _question_id(rows.get(number, row, "question_id"))
        model = _name(row.get("model_id") or rows.cfg.model or rows.path.stem, "model", f"{rows.where(number)}")
        choices = rows.get(number, row, "choices")
        if (
            not isinstance(choices, list)
            or not choices
            or not isinstance(choices[0], dict)
            or not isinstance(choices[0].get("turns"), list)
        ):
            raise rows.error(number, "choices", "expected [{index, turns: [...]}, ...]")
        for turn, text in enumerate(choices[0]["turns"], 1):
            got.answer(model, rows.path, qid, turn, text, f"{rows.where(number)}: field 'choices'")


FASTCHAT_WINNERS = {"tie": "tie", "error": None}


def read_fastchat_pair(rows: Rows, got: Collected) -> None:
    for number, row in rows:
        where = f"{rows.where(number)}"
        qid = _question_id(rows.get(number, row, "question_id"))
        models = {k: _name(rows.get(number, row, k), "model", where) for k in ("model_1", "model_2")}
        judge = row.get("judge")
        name = _judge_name(rows.cfg, judge, rows.path, where)
        prompt_name = judge[1] if isinstance(judge, (list, tuple)) and len(judge) > 1 else None
        # game 1 shows model_1 as answer A, game 2 shows model_2 as answer A; winners are named by model
        for game, first, second in (("g1", "model_1", "model_2"), ("g2", "model_2", "model_1")):
            winner = rows.get(number, row, f"{game}_winner")
            letters = {first: "A", second: "B", **FASTCHAT_WINNERS}
            if winner not in letters:
                raise rows.error(number, f"{game}_winner", f"expected model_1, model_2, tie or error, got {winner!r}")
            raw = row.get(f"{game}_judgment")
            got.verdict(
                name,
                qid,
                _turn(rows, number, row),
                models[first],
                models[second],
                letters[winner],
                where,
                prompt_name=prompt_name,
                **({"raw": raw} if isinstance(raw, str) else {}),
            )


def _preference(rows: Rows, number: int, value):
    """AlpacaEval's preference as (verdict for output_1 shown first, probabilities or None)."""
    if value is None:
        return None, None  # the annotator gave no preference: unparseable
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise rows.error(number, "preference", f"expected a number in [1, 2], got {value!r}") from None
    if not isinstance(value, (int, float)) or not 1 <= value <= 2:
        raise rows.error(number, "preference", f"expected a number in [1, 2], got {value!r}")
    exact = {1: "A", 2: "B", 1.5: "tie"}
    if value in exact:
        return exact[value], None
    probs = (2 - value, value - 1, 0.0)  # a weighted annotator: the probability of output_2 is preference - 1
    return hard_verdict(probs), probs


def read_alpaca_eval(rows: Rows, got: Collected) -> None:
    for number, row in rows:
        where = f"{rows.where(number)}"
        instruction = rows.text(number, row, "instruction")
        qid = got.table_id(rows, number, row)
        category = rows.text(number, row, "category", required=False) or row.get("dataset")
        got.question(qid, 1, instruction, category, where)
        names = []
        for k in (1, 2):
            model = _name(rows.get(number, row, f"generator_{k}"), "model", where)
            got.answer(model, rows.path, qid, 1, rows.get(number, row, f"output_{k}"), f"{where}: field 'output_{k}'")
            names.append(model)
        verdict, probs = _preference(rows, number, row.get("preference"))
        judge = _judge_name(rows.cfg, row.get("annotator"), rows.path, where)
        raw = row.get("raw_completion")
        got.one_order(
            judge,
            qid,
            1,
            names[0],
            names[1],
            verdict,
            where,
            probs=probs,
            **({"raw": raw} if isinstance(raw, str) else {}),
        )


def read_answers_table(rows: Rows, got: Collected) -> None:
    for number, row in rows:
        where = f"{rows.where(number)}"
        qid = got.table_id(rows, number, row)
        turn = _turn(rows, number, row)
        model = rows.get(number, row, "model", required=False) or rows.cfg.model or rows.path.stem
        category = rows.text(number, row, "category", required=False)
        got.question(qid, turn, rows.text(number, row, "question", required=False), category, where)
        extra = {}
        constitution = rows.get(number, row, "constitution", required=False)
        if constitution is not None:
            extra["constitution"] = _constitution(rows, number, constitution)
        response = rows.text(number, row, "response")
        got.answer(_name(model, "model", where), rows.path, qid, turn, response, where, **extra)


def _constitution(rows: Rows, number: int, value):
    """A constitution as given (text), or as this project stores one: ``{principles: [{name, side, text}]}``
    (a dict, or that dict as JSON text in a CSV cell)."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, str):
        return value
    items = value.get("principles") if isinstance(value, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("text"), str) for i in items):
        raise rows.error(number, rows.column("constitution"), 'expected text or {"principles": [{name, side, text}]}')
    return value


OUTCOMES = {"a": "A", "b": "B", "tie": "tie", 1: "A", 0: "B", 0.5: "tie"}


def read_judgments_table(rows: Rows, got: Collected) -> None:
    for number, row in rows:
        where = f"{rows.where(number)}"
        qid = got.table_id(rows, number, row)
        turn = _turn(rows, number, row)
        got.question(
            qid,
            turn,
            rows.text(number, row, "question", required=False),
            rows.text(number, row, "category", required=False),
            where,
        )
        a, b = (_name(rows.get(number, row, k), "model", where) for k in ("model_a", "model_b"))
        outcome = rows.get(number, row, "outcome")
        key = outcome.strip().lower() if isinstance(outcome, str) else outcome
        if isinstance(key, str):
            key = {"1": 1, "0": 0, "0.5": 0.5}.get(key, key)
        if key not in OUTCOMES:
            raise rows.error(number, rows.column("outcome"), f"expected a, b, tie, 1, 0 or 0.5, got {outcome!r}")
        lengths = []
        for k in ("words_a", "words_b"):
            n = rows.get(number, row, k, required=False)
            if n is not None and (not isinstance(n, int) or n < 0):
                raise rows.error(number, rows.column(k), f"expected a word count, got {n!r}")
            lengths.append(n)
        judge = _judge_name(rows.cfg, rows.get(number, row, "judge", required=False), rows.path, where)
        got.one_order(judge, qid, turn, a, b, OUTCOMES[key], where, lengths=tuple(lengths))


FORMATS = {
    "fastchat-question": read_fastchat_questions,
    "fastchat-answer": read_fastchat_answers,
    "fastchat-pair": read_fastchat_pair,
    "alpaca-eval": read_alpaca_eval,
    "answers": read_answers_table,
    "judgments": read_judgments_table,
}


def recognise(rows: Rows) -> str:
    """The format of a table from its columns."""
    has = set(rows.columns)
    if {"question_id", "model_1", "model_2", "g1_winner", "g2_winner"} <= has:
        return "fastchat-pair"
    if {"question_id", "choices"} <= has:
        return "fastchat-answer"
    if {"question_id", "category", "turns"} <= has:
        return "fastchat-question"
    if {"instruction", "output_1", "output_2", "generator_1", "generator_2", "preference"} <= has:
        return "alpaca-eval"
    if all(rows.column(k) for k in ("model_a", "model_b", "outcome")):
        return "judgments"
    if rows.column("response"):
        return "answers"
    raise DataError(
        f"{rows.path}: cannot tell its format from its columns {rows.columns}; name the columns (--response-col, "
        f"...) or the format (--format, one of {tuple(FORMATS)})"
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def import_files(cfg: ImportConfig) -> tuple[EvalConfig, dict]:
    """Read every file, write the MT-Bench folder, and return its eval config and metrics."""
    got = Collected()
    formats = {}
    for name in cfg.files:
        path = Path(name)
        rows = Rows(path, cfg)
        formats[name] = cfg.format or recognise(rows)
        FORMATS[formats[name]](rows, got)
    if cfg.questions is not None:
        for q in load_questions(cfg.questions)[0]:
            if q.question_id in got.question_ids():
                for turn, text in enumerate(q.turns, 1):
                    got.question(q.question_id, turn, text, q.category, cfg.questions)
    left_out = got.leave_out_unanswered()
    if left_out:
        logger.warning("%d judgment row(s) left out of the rates:\n  %s", len(left_out), "\n  ".join(left_out))
    unknown = sorted((q for q in got.question_ids() if not got.turns.get(q)), key=str)
    if unknown:
        logger.warning(
            "%d question(s) have no text, so no judge can be run on them (%s); import FastChat's "
            "question.jsonl too, or pass --questions package",
            len(unknown),
            unknown[:5],
        )
    root = Path(cfg.output_dir) / "mtbench"
    eval_cfg = _eval_config(cfg, got, root)
    settings = {
        "files": {name: {"format": formats[name], "sha256": _sha256(Path(name))} for name in cfg.files},
        "columns": cfg.columns,
        "model": cfg.model,
        "judge": cfg.judge,
        "questions": cfg.questions,
        "protocol": eval_cfg.mtbench.protocol,  # what the answers were made under: every later run keeps it
    }
    bindings = {name: {"model": model, "key": model} for name, model in eval_cfg.checkpoints()}
    with held_as_found(root, what="this MT-Bench folder"):
        check_imported(root)
        # importing other files into it is refused
        check_settings(root / IMPORT, settings, "import")
        check_bindings(root, bindings)
        _write(got, root)
        save_yaml(eval_cfg, root / CONFIG)
        metrics = finish_suite(eval_cfg, "mtbench", mtbench_metrics)  # as every suite's run ends
    return eval_cfg, metrics


def _eval_config(cfg: ImportConfig, got: Collected, root: Path) -> EvalConfig:
    two_turns = any(turn > 1 for turns in got.turns.values() for turn in turns)
    two_turns |= any(turn > 1 for answers in got.answers.values() for _, turn in answers)
    data = {
        "output_dir": cfg.output_dir,
        "models": [f"{m}={IMPORTED}{got.sources.get(m) or got.judged_in[m]}" for m in got.models],
        "mtbench": {
            "questions": str(root / "questions.jsonl"),
            "protocol": "fastchat" if two_turns else "paper",
            "judges": [],
            "imported_judges": list(got.verdicts),
        },
    }
    for text in cfg.overrides:
        set_path(data, *parse_override(text))
    eval_cfg = from_dict(EvalConfig, data, source="sami eval import")
    eval_cfg.checkpoints()
    return eval_cfg


def _write(got: Collected, root: Path) -> None:
    category = defaultdict(lambda: UNKNOWN_CATEGORY, got.categories)
    questions = [
        {"question_id": qid, "category": category[qid], "turns": [turns[t] for t in range(1, len(turns) + 1)]}
        for qid, turns in got.turns.items()
        if sorted(turns) == list(range(1, len(turns) + 1))  # every turn's text known
    ]
    lines = "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions)
    root.mkdir(parents=True, exist_ok=True)
    (root / "questions.jsonl").write_text(lines, encoding="utf-8")
    for model, answers in got.answers.items():
        store = JsonlStore(answers_file(root, model), ("question_id", "turn"))
        records = []
        for (qid, turn), a in answers.items():
            if store.done(qid, turn):
                continue
            base = {
                "question_id": qid,
                "category": category[qid],
                "turn": turn,
                "prompt": got.turns.get(qid, {}).get(turn),
                "answer": a["answer"],
                "num_tokens": None,
                "finish_reason": None,
                "temperature": None,
            }
            records.append({**base, **{k: v for k, v in a.items() if k != "answer"}})
        store.append_many(records)
    for judge, verdicts in got.verdicts.items():
        by_pair: dict[tuple, list] = defaultdict(list)
        for (_, _, first, second), record in verdicts.items():
            by_pair[tuple(sorted((first, second)))].append(record)
        for (a, b), records in by_pair.items():
            store = JsonlStore(pair_judgments(root, judge, a, b), ("question_id", "turn", "first"))
            todo = [r for r in records if not store.done(r["question_id"], r["turn"], r["first"])]
            store.append_many(
                {
                    **{k: r[k] for k in ("question_id", "turn", "first", "second")},
                    "category": category[r["question_id"]],
                    "prompt_name": None,
                    **r,
                }
                for r in todo
            )


def mirrored_note(metrics: dict) -> list[str]:
    """Lines saying which imported pairs hold verdicts judged in one order only."""
    out = []
    for judge, by_pair in metrics["pairwise"].items():
        for pair, block in by_pair.items():
            if block.get("mirrored"):
                out.append(
                    f"[{judge}] {pair}: {block['mirrored']} of {block['overall']['n']} items were judged in one order "
                    "only; each counts as one judgement (its mirror is stored with mirrored: true)"
                )
    return out
