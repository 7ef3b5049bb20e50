"""``sami eval adherence``: does a checkpoint follow the verifiable principles? Measured without a judge.

For every verifiable principle (``sami/data/principles.yaml``, section ``verifiable``) and every query, an
answer is generated under the principle and under its antithesis: with ``constitution: separate`` each
principle alone (a one-item constitution, weak phrasing by default), with ``together`` in the constitution of
all the chosen principles (all positive, then that principle flipped while the others stay positive; the
all-positive answer serves every principle), as a model trained on those principles saw them. Both answers
are checked with the principle's checker and the antithesis checker. Reported
per principle: the checker's pass rate under the principle and under the antithesis, and the contrast
(pass rate under the principle minus under the antithesis, paired by query) with its interval; a model
that reads the constitution has a large contrast. Beside it, per checkpoint, the rate of degenerate answers
(``sami.eval.degenerate``): a collapsed model can pass a case or format checker with gibberish, so a degenerate
answer passes no checker.

Files under ``<output_dir>/adherence/``: ``answers/<model>.jsonl`` ``{principle, side, query_index,
prompt, answer, ...}``; ``metrics.json`` (checks rerun from the stored answers).
"""

from __future__ import annotations

from pathlib import Path

from sami.backends.base import SamplingParams
from sami.core.errors import ConfigError, DataError
from sami.core.layout import answers_file
from sami.core.stats import bootstrap_mean, rate
from sami.data.principles import SIDES, load_library
from sami.data.records import json_lines
from sami.eval.common import LazyBackend, answer_prompt, answer_stop, constitution_text, fmt
from sami.eval.config import EvalConfig
from sami.eval.degenerate import is_degenerate, passes
from sami.eval.mtbench_data import load_questions
from sami.eval.results import AdherenceResult, PrincipleAdherence
from sami.eval.store import JsonlStore, check_settings, finish_suite, read_jsonl


def load_queries(source: str, limit: int | None) -> list[str]:
    if source == "mtbench":
        questions, _ = load_questions("package")
        queries = [q.turns[0] for q in questions]
    else:
        path = Path(source)
        queries = []
        for number, obj in json_lines(path, "adherence.queries file"):
            query = obj.get("query")
            if not isinstance(query, str) or not query.strip():
                raise DataError(f"{path}:{number}: field 'query' must be a non-empty string")
            queries.append(query)
    if not queries:
        raise DataError(f"adherence.queries {source!r}: no queries")
    return queries[:limit] if limit else queries


def _principles(cfg: EvalConfig):
    library = load_library(cfg.library)
    verifiable = {p.name: p for p in library.verifiable}
    names = cfg.adherence.principles or list(verifiable)
    unknown = sorted(set(names) - set(verifiable))
    if unknown:
        raise ConfigError(f"adherence.principles: {unknown} are not verifiable principles; known: {sorted(verifiable)}")
    return [verifiable[n] for n in names]


POSITIVE = ""  # the principle field of the all-positive answer in ``together`` mode


def answer_key(cfg: EvalConfig, principle: str, side: str, k: int) -> tuple[str, str, int]:
    """The stored answer that serves ``principle`` on ``side`` for query ``k``."""
    if cfg.adherence.constitution == "together" and side == "principle":
        return (POSITIVE, "principle", k)
    return (principle, side, k)


def constitution_for(cfg: EvalConfig, principles, principle: str, side: str) -> str:
    """The constitution text of one stored answer (``principle`` flipped when ``side`` is antithesis)."""
    if cfg.adherence.constitution == "separate":
        (p,) = [p for p in principles if p.name == principle]
        principles = [p]
    return constitution_text(principles, cfg.adherence.phrasing, flipped=principle if side == "antithesis" else None)


def generate(cfg: EvalConfig, name: str, model: str, principles, queries: list[str], root: Path) -> None:
    store = JsonlStore(answers_file(root, name), ("principle", "side", "query_index"))
    keys = list(
        dict.fromkeys(
            answer_key(cfg, p.name, side, k) for p in principles for side in SIDES for k in range(len(queries))
        )
    )
    todo, prompts = [], []
    for principle, side, k in keys:
        if not store.done(principle, side, k):
            todo.append((principle, side, k))
            constitution = constitution_for(cfg, principles, principle, side)
            prompts.append(answer_prompt(cfg.adherence.template, constitution, queries[k]))
    if not todo:
        return
    stop = answer_stop(cfg.adherence.template)
    params = SamplingParams(max_new_tokens=cfg.adherence.max_new_tokens, stop=stop, seed=cfg.seed)
    backend = LazyBackend(cfg.backend_for(model))
    try:
        for i, (c,) in backend.get().generate_iter(prompts, params, desc=f"{name} adherence"):
            principle, side, k = todo[i]
            store.append(
                {
                    "principle": principle,
                    "side": side,
                    "query_index": k,
                    "prompt": prompts[i],
                    "answer": c.text,
                    "num_tokens": c.num_tokens,
                    "finish_reason": c.finish_reason,
                }
            )
    finally:
        backend.close()


def adherence_metrics(cfg: EvalConfig) -> dict[str, AdherenceResult]:
    root = Path(cfg.output_dir) / "adherence"
    principles = _principles(cfg)
    out = {}
    for name, _ in cfg.checkpoints():
        rows = read_jsonl(answers_file(root, name))
        by_key = {(r["principle"], r["side"], r["query_index"]): r["answer"] for r in rows}
        per = {}
        for p in principles:
            ks = sorted({k for (_, _, k) in by_key})
            paired = [k for k in ks if all(answer_key(cfg, p.name, s, k) in by_key for s in SIDES)]
            under = {s: [by_key[answer_key(cfg, p.name, s, k)] for k in paired] for s in SIDES}
            checker_under = {s: [passes(p.checker, a) for a in under[s]] for s in SIDES}
            anti = p.antithesis_checker
            anti_under = {s: [passes(anti, a) for a in under[s]] for s in SIDES} if anti else {}
            differences = zip(checker_under["principle"], checker_under["antithesis"], strict=True)
            per[p.name] = PrincipleAdherence(
                checker={"name": p.checker.name, **p.checker.params},
                pairs=len(paired),
                checker_pass_under_principle=rate(checker_under["principle"]),
                checker_pass_under_antithesis=rate(checker_under["antithesis"]),
                contrast=bootstrap_mean([int(a) - int(b) for a, b in differences]),
                antithesis_checker_pass_under_antithesis=rate(anti_under["antithesis"]) if anti_under else None,
                antithesis_checker_pass_under_principle=rate(anti_under["principle"]) if anti_under else None,
            )
        degenerate = rate([is_degenerate(r["answer"]) for r in rows])
        out[name] = AdherenceResult(principles=per, answers=len(rows), degenerate=degenerate)
    return out


def print_adherence(metrics: dict) -> None:
    """``metrics``: checkpoint -> what ``metrics.json`` stores for it (``AdherenceResult.to_dict``)."""
    for name, stored in metrics.items():
        m = AdherenceResult.from_dict(stored)
        print(f"{name}: checker pass rate under the principle / under its antithesis; contrast (difference)")
        for principle, b in m.principles.items():
            print(
                f"    {principle:<14} {fmt(b.checker_pass_under_principle)}  /  "
                f"{fmt(b.checker_pass_under_antithesis)};  contrast {fmt(b.contrast, False)}"
            )
        print(f"    degenerate answers (sami.eval.degenerate) {fmt(m.degenerate)}")


def run_adherence(cfg: EvalConfig) -> dict:
    a = cfg.adherence
    root = Path(cfg.output_dir) / "adherence"
    principles = _principles(cfg)
    queries = load_queries(a.queries, a.limit)
    settings = {"queries": a.queries, "query_texts": queries, "principles": [p.name for p in principles]}
    settings.update(phrasing=a.phrasing, template=a.template, max_new_tokens=a.max_new_tokens, seed=cfg.seed)
    settings["constitution"] = a.constitution
    settings["backend"] = {"kind": cfg.backend.kind, "dtype": cfg.backend.dtype}
    check_settings(root, settings, "adherence")
    for name, model in cfg.checkpoints():
        generate(cfg, name, model, principles, queries, root)
    return finish_suite(cfg, "adherence", adherence_metrics)
