"""``sami eval mtbench``: answers under a protocol, pairwise and single judging, and the metrics.

``run_mtbench`` checks the settings, then runs the three jobs, each in its module: ``answering`` (the answers of
each checkpoint), ``requests`` (every judge request not yet stored, judged), ``statistics`` (the metrics, from
the stored files only); ``printing`` prints them.

Files under ``<output_dir>/mtbench/`` (docs/EVALUATION.md):

    settings.json                         what was generated and judged; a rerun must match it
    answers/<model>.jsonl                 {question_id, category, turn, prompt, answer, num_tokens, finish_reason}
    judgments/<judge>/<x>__<y>.jsonl      {question_id, category, turn, first, second, prompt_name, verdict, and
                                          raw (text mode) | probs, mass, prefix (probability) | checked, passes}
    judgments/single/<model>.jsonl        {question_id, category, turn, prompt_name, raw, rating}
    metrics.json                          computed from the files above only (``mtbench_metrics``)

Every record is appended as soon as it exists, so an interrupted run resumes without regenerating or
re-judging anything finished.
"""

from __future__ import annotations

from pathlib import Path

from sami.core.errors import ConfigError
from sami.data.principles import load_library
from sami.eval.config import EvalConfig
from sami.eval.judges import JUDGES
from sami.eval.mtbench.answering import generate_answers, question_constitution
from sami.eval.mtbench.requests import judge_all, pairs, verdict_mode
from sami.eval.mtbench.statistics import mtbench_metrics
from sami.eval.mtbench_data import load_questions, select
from sami.eval.store import check_imported_protocol, check_settings, finish_suite


def run_mtbench(cfg: EvalConfig) -> dict:
    m = cfg.mtbench
    root = Path(cfg.output_dir) / "mtbench"
    questions, provenance = load_questions(m.questions, m.references)
    questions = select(questions, m.categories, m.per_category)
    library = load_library(cfg.library)
    library.check_names(m.principles, "mtbench.principles")
    pairs(cfg)  # an unknown mtbench.against or versus name, before any answer is generated
    check_imported_protocol(root, m.protocol)
    if m.judge_prompts != "package" and not Path(m.judge_prompts).expanduser().is_file():
        raise ConfigError(f"mtbench.judge_prompts: no such file: {m.judge_prompts}")
    settings = {
        "questions": provenance,
        "question_ids": [q.question_id for q in questions],
        "protocol": m.protocol,
        "template": m.template,
        "phrasing": m.phrasing,
        "principles": m.principles,
        "constitutions": m.constitutions,
        "verdict": verdict_mode(cfg),
        "max_new_tokens": m.max_new_tokens,
        "judge_max_new_tokens": m.judge_max_new_tokens,
        "judge": cfg.judge.kind + ":" + cfg.judge.model,
        "judge_prompts": m.judge_prompts,
        "backend": {"kind": cfg.backend.kind, "dtype": cfg.backend.dtype},
        "seed": cfg.seed,
    }
    for judge in (JUDGES[name] for name in m.judges):  # fail before answering when a judge could not judge
        if judge.check_principles is not None:
            for q in questions:
                judge.check_principles(question_constitution(cfg, library, q))
    check_settings(root, settings, "mtbench")
    for name, model in cfg.checkpoints():
        generate_answers(cfg, name, model, questions, root, library)
    judge_all(cfg, questions, root, library)
    return finish_suite(cfg, "mtbench", mtbench_metrics)
