"""``sami eval gsm8k``: one greedy attempt and n sampled attempts per problem, every sample stored.

Files under ``<output_dir>/gsm8k/``:

    settings.json               problems, prompt version, sampling settings; a rerun must match it
    attempts/<model>.jsonl      {id, kind: greedy|sampled, gold, texts[], num_tokens[], finish_reasons[]}
    metrics.json                computed from the files above only (``gsm8k_metrics``)

The n samples of a problem come from one prompt expanded to n sequences in the same batch
(``SamplingParams.n``), not from n copies of the prompt (benchmarks/gsm8k_attempts.py measures both).
Answers are extracted at metric time, so the extraction rule can be changed without generating again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sami.backends.base import SamplingParams
from sami.core.stats import bounded_mean, maj_at_k, pass_at_k, rate
from sami.data.records import read_records
from sami.eval.common import LazyBackend, fmt
from sami.eval.config import EvalConfig
from sami.eval.gsm8k_data import PROMPTS, extract_answer, gsm8k_prompt, load_problems
from sami.eval.results import GSM8KResult
from sami.eval.store import JsonlStore, check_settings, finish_suite, read_jsonl

__all__ = ["extract_answer", "gsm8k_metrics", "run_gsm8k"]


def _attempt_params(cfg: EvalConfig) -> dict[str, SamplingParams]:
    g = cfg.gsm8k
    stop = PROMPTS[g.prompt].stop
    out = {"greedy": SamplingParams(max_new_tokens=g.max_new_tokens, stop=stop, seed=cfg.seed)}
    if g.samples:
        out["sampled"] = SamplingParams(
            max_new_tokens=g.max_new_tokens,
            temperature=g.temperature,
            top_p=g.top_p,
            n=g.samples,
            stop=stop,
            seed=cfg.seed,
        )
    return out


def generate_attempts(cfg: EvalConfig, name: str, model: str, problems, root: Path) -> None:
    store = JsonlStore(root / "attempts" / f"{name}.jsonl", ("id", "kind"))
    backend = LazyBackend(cfg.backend_for(model))
    try:
        for kind, params in _attempt_params(cfg).items():
            todo = [p for p in problems if not store.done(p.id, kind)]
            prompts = [gsm8k_prompt(cfg.gsm8k.prompt, p.question) for p in todo]
            stream = backend.get().generate_iter(prompts, params, desc=f"{name} {kind}") if todo else ()
            for i, completions in stream:
                store.append(
                    {
                        "id": todo[i].id,
                        "kind": kind,
                        "gold": todo[i].gold,
                        "texts": [c.text for c in completions],
                        "num_tokens": [c.num_tokens for c in completions],
                        "finish_reasons": [c.finish_reason for c in completions],
                    }
                )
    finally:
        backend.close()


def attempt_metrics(records: list[dict], mode: str, samples: int) -> GSM8KResult:
    """Accuracy of the greedy attempt; pass@k and maj@k for k = 1..samples over the sampled attempts."""
    greedy = [r for r in records if r["kind"] == "greedy"]
    sampled = [r for r in records if r["kind"] == "sampled" and len(r["texts"]) == samples]
    answers = [extract_answer(r["texts"][0], mode) for r in greedy]
    result = GSM8KResult(
        problems=len(greedy),
        extract=mode,
        greedy_accuracy=rate([a == r["gold"] for a, r in zip(answers, greedy, strict=True)]),
        greedy_unextracted=rate([a is None for a in answers]),
    )
    if not (samples and sampled):
        return result
    extracted = [[extract_answer(t, mode) for t in r["texts"]] for r in sampled]
    correct = [sum(a == r["gold"] for a in ans) for ans, r in zip(extracted, sampled, strict=True)]
    ks = range(1, samples + 1)
    return dataclasses.replace(
        result,
        sampled_problems=len(sampled),
        sample_unextracted=rate([a is None for ans in extracted for a in ans]),
        pass_at_k={str(k): bounded_mean([pass_at_k(samples, c, k) for c in correct]) for k in ks},
        maj_at_k={
            str(k): rate([maj_at_k(ans, r["gold"], k) for ans, r in zip(extracted, sampled, strict=True)]) for k in ks
        },
    )


def gsm8k_metrics(cfg: EvalConfig, mode: str | None = None) -> dict[str, GSM8KResult]:
    """Metrics of every checkpoint from ``attempts/<model>.jsonl`` only; ``mode`` overrides the extraction."""
    root = Path(cfg.output_dir) / "gsm8k"
    mode = mode or cfg.gsm8k.extract_mode
    return {
        name: attempt_metrics(read_jsonl(root / "attempts" / f"{name}.jsonl"), mode, cfg.gsm8k.samples)
        for name, _ in cfg.checkpoints()
    }


def _shown_ks(n: int) -> list[int]:
    ks = [1]
    while ks[-1] * 2 < n:
        ks.append(ks[-1] * 2)
    return ks + [n] if n > 1 else ks


def print_gsm8k(metrics: dict) -> None:
    """``metrics``: checkpoint -> what ``metrics.json`` stores for it (``GSM8KResult.to_dict``)."""
    for name, stored in metrics.items():
        m = GSM8KResult.from_dict(stored)
        print(f"{name}: {m.problems} problems, extraction {m.extract}")
        print(f"    greedy accuracy {fmt(m.greedy_accuracy)}; no answer found {fmt(m.greedy_unextracted)}")
        if m.pass_at_k is not None and m.maj_at_k is not None:
            for k in _shown_ks(len(m.pass_at_k)):
                print(f"    pass@{k:<3} {fmt(m.pass_at_k[str(k)])}   maj@{k:<3} {fmt(m.maj_at_k[str(k)])}")
            print(f"    samples with no answer found {fmt(m.sample_unextracted)}")


def run_gsm8k(cfg: EvalConfig) -> dict:
    g = cfg.gsm8k
    root = Path(cfg.output_dir) / "gsm8k"
    exclude = frozenset(r.query for path in g.exclude_queries_from for r in read_records(path))
    problems, provenance = load_problems(
        g.source,
        split=g.split,
        limit=g.limit,
        seed=cfg.seed,
        hub_config=g.hub_config,
        exclude=exclude,
        options=g.options,
    )
    params = _attempt_params(cfg)
    check_settings(
        root,
        {
            "problems": provenance,
            "count": len(problems),
            "prompt": g.prompt,
            "sampling": {
                k: {f: getattr(p, f) for f in ("max_new_tokens", "temperature", "top_p", "n", "stop", "seed")}
                for k, p in params.items()
            },
            "backend": {"kind": cfg.backend.kind, "dtype": cfg.backend.dtype},
        },
        "gsm8k",
    )
    for name, model in cfg.checkpoints():
        generate_attempts(cfg, name, model, problems, root)
    return finish_suite(cfg, "gsm8k", gsm8k_metrics)
