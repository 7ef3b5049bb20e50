""" "What this run shows": plain sentences generated from a study's numbers and their intervals.

Pure functions over the report's ``summary.json`` (``sami.study.report.build_summary``); nothing here is written by
hand about a particular run. Two estimates count as different only when their 95% intervals do not overlap
(a conservative reading: overlapping intervals can still hide a real difference, which the sentence then
says cannot be told apart at this sample size). Thresholds the sentences use:

- ``FLUENCY_MARGIN``: a mean diagonal log-prob per token more than this many nats below the base model's is
  called a loss of fluency (the collapse the MI bound alone does not show);
- a win rate is called a preference when its interval excludes 1/2.
"""

from __future__ import annotations

from sami.core.stats import Estimate

FLUENCY_MARGIN = 0.3  # nats per token
VERBS = {"above": "above", "below": "below", "overlap": "not distinguishable from"}


def _value(e: dict | None) -> float | None:
    return None if not e else e.get("value")


def _as_stored(e: dict | Estimate | None) -> dict | None:
    return e.to_dict() if isinstance(e, Estimate) else e


def num(e: dict | Estimate | None, digits: int = 3) -> str:
    """An estimate (as stored, or an ``Estimate``) as ``value [low, high]``; ``n/a`` without a value. The report's
    tables use it too."""
    e = _as_stored(e)
    if _value(e) is None:
        return "n/a"
    return f"{e['value']:.{digits}f} [{e['low']:.{digits}f}, {e['high']:.{digits}f}]"


def pct(e: dict | Estimate | None, digits: int = 1) -> str:
    """A [0, 1] estimate (as stored, or an ``Estimate``) in percent, ``value% [low, high]``; ``n/a`` without a
    value."""
    e = _as_stored(e)
    if _value(e) is None:
        return "n/a"
    return f"{100 * e['value']:.{digits}f}% [{100 * e['low']:.{digits}f}, {100 * e['high']:.{digits}f}]"


def compare(a: dict, b: dict) -> str:
    """``above``, ``below`` or ``overlap``: where estimate ``a``'s interval lies relative to ``b``'s."""
    if _value(a) is None or _value(b) is None:
        return "overlap"
    if a["low"] > b["high"]:
        return "above"
    if a["high"] < b["low"]:
        return "below"
    return "overlap"


def excludes(e: dict, point: float) -> str | None:
    """``above`` / ``below`` when the interval lies entirely on one side of ``point``, else None."""
    if _value(e) is None:
        return None
    if e["low"] > point:
        return "above"
    if e["high"] < point:
        return "below"
    return None


def by_relation(own: dict, others: dict[str, dict]) -> list[tuple[str, list[str]]]:
    """``others``' names grouped by where ``own`` lies against each (``compare``): above, below, overlap, in that
    order, empty groups left out."""
    where = {n: compare(own, e) for n, e in others.items()}
    return [(r, [n for n in others if where[n] == r]) for r in ("above", "below", "overlap") if r in where.values()]


def mi_findings(mi: dict, method: str = "sami") -> list[str]:
    """The held-out MI bound and the fluency beside it, for ``method`` against base (and the others)."""
    if method not in mi or "base" not in mi:
        return []
    own, base = mi[method]["overall"], mi["base"]["overall"]
    where = compare(own["mi_bound"], base["mi_bound"])
    verb = {"above": "is above", "below": "is below", "overlap": "cannot be told apart from"}[where]
    lines = [
        f"Held-out MI bound: {method.upper()} {num(own['mi_bound'])} nats {verb} base's "
        f"{num(base['mi_bound'])} (95% intervals{' do not overlap' if where != 'overlap' else ' overlap'})."
    ]
    others = [n for n in mi if n not in (method, "base")]
    phrases = {"above": "It is also above", "below": "It is below", "overlap": "It cannot be told apart from"}
    for relation, names in by_relation(own["mi_bound"], {n: mi[n]["overall"]["mi_bound"] for n in others}):
        lines.append(f"{phrases[relation]} {', '.join(names)} ({_others(mi, names)}).")
    change = own.get("diag_logprob_change")
    if _value(change) is not None:
        drop = -change["value"]
        if drop > FLUENCY_MARGIN:
            state = f"more than {FLUENCY_MARGIN} nats below base: the MI bound rose partly by making text unlikely"
        elif drop > 0:
            state = f"within {FLUENCY_MARGIN} nats of base: it stayed fluent"
        else:
            state = "at or above base's: it stayed fluent"
        lines.append(
            f"Fluency: the mean log-prob per token of the held-out teacher responses under their own "
            f"constitution changed by {num(change)} nats for {method.upper()} ({state})."
        )
    return lines


def _others(mi: dict, names: list[str]) -> str:
    return "; ".join(f"{n} {num(mi[n]['overall']['mi_bound'])}" for n in names)


def adherence_findings(adherence: dict, method: str = "sami") -> list[str]:
    """Per principle: whose contrast interval excludes zero, and how ``method`` compares with each other model."""
    lines = []
    names = list(adherence)
    principles = sorted({p for m in adherence.values() for p in m["principles"]})
    for p in principles:
        contrasts = {n: adherence[n]["principles"][p]["contrast"] for n in names if p in adherence[n]["principles"]}
        shown = ", ".join(f"{n} {num(c, 2)}" for n, c in contrasts.items())
        follows = [n for n, c in contrasts.items() if excludes(c, 0.0) == "above"]
        line = f"Adherence to `{p}` (pass rate under it minus under its antithesis): {shown}. "
        line += f"Contrast above zero: {', '.join(follows)}." if follows else "No model's contrast is above zero."
        if method in contrasts:
            phrases = {"above": "is above", "below": "is below", "overlap": "cannot be told apart from"}
            others = {n: c for n, c in contrasts.items() if n != method}
            for relation, group in by_relation(contrasts[method], others):
                line += f" {method.upper()}'s {phrases[relation]} {', '.join(group)}'s."
        lines.append(line)
    degenerate = {n: m["degenerate"] for n, m in adherence.items() if _value(m.get("degenerate")) is not None}
    bad = [n for n, e in degenerate.items() if e["value"] > 0]
    if degenerate:
        if bad:
            lines.append("Degenerate answers: " + ", ".join(f"{n} {pct(degenerate[n], 0)}" for n in bad) + ".")
        else:
            lines.append("No model wrote a degenerate answer in the adherence study (sami.eval.degenerate).")
    return lines


CONSTITUTION_NOTES = {
    "sampled": "each question under a constitution of its own (each principle on its side or flipped to its "
    "antithesis by a coin drawn per question, the same for every model, and shown to the judge)",
    "positive": "every question under the same positive constitution",
}


def _preference(pair: str, estimate: dict) -> str:
    x, y = pair.split(" vs ")
    where, rate = excludes(estimate, 0.5), pct(estimate, 0)
    if where == "above":
        return f"{x} preferred over {y} ({rate})"
    if where == "below":
        return f"{y} preferred over {x} ({x}'s win rate {rate})"
    return f"{pair}: no preference detectable ({rate})"


def judge_findings(mtbench: dict) -> list[str]:
    """Per judge and pairing: a preference when the hard win rate's interval excludes 1/2, split by how many
    principles were flipped where the questions had constitutions of their own; a judge's preference for the
    answer shown first when its interval excludes 1/2; the Bradley-Terry order where three or more models met."""
    pairwise = mtbench["pairwise"]
    lines = []
    note = CONSTITUTION_NOTES.get(mtbench.get("constitutions", "positive"), "")
    for judge, by_pair in pairwise.items():
        parts = []
        for pair, block in by_pair.items():
            part = _preference(pair, block["overall"]["hard_win_rate"])
            flips = block.get("per_flipped", {})
            if len(flips) > 1 and pair.startswith("sami vs"):
                part += "; by principles flipped: " + ", ".join(
                    f"{k}: {pct(b['hard_win_rate'], 0)} (n={b['n']})" for k, b in flips.items()
                )
            parts.append(part)
        unparseable = sum(b["overall"]["unparseable"] for b in by_pair.values())
        source = next(iter(by_pair.values()), {}).get("verdict_source", "text")
        tail = f"; {unparseable} items unparseable" if unparseable else ""
        lines.append(f"Judge `{judge}` ({source} verdicts), {note}: " + "; ".join(parts) + tail + ".")
        first = mtbench.get("judge_diagnostics", {}).get(judge, {}).get("first_position")
        if first and excludes(first, 0.5):
            lines.append(
                f"Judge `{judge}` prefers the answer shown {'first' if first['value'] > 0.5 else 'second'}: "
                f"{pct(first, 0)} of its decisive verdicts pick the first (both orders are judged, so "
                "this cancels in the win rates, but the orders then disagree)."
            )
        fit = mtbench.get("ranking", {}).get(judge)
        if fit:
            models, origin = fit["models"], fit["origin"]
            order = sorted(models, key=lambda n: models[n]["rank"])
            rates = "; ".join(f"{n} {pct(models[n]['win_rate_vs_origin'], 0)}" for n in order if n != origin)
            if all(excludes(models[n]["win_rate_vs_origin"], 0.5) is None for n in order if n != origin):
                lines.append(
                    f"Bradley-Terry ranking by `{judge}`: no model can be told apart from {origin} (expected "
                    f"win rate against it: {rates})."
                )
            else:
                lines.append(
                    f"Bradley-Terry ranking by `{judge}`: {', '.join(order)} (expected win rate against "
                    f"{origin}: {rates})."
                )
    return lines


def length_findings(mtbench: dict, method: str = "sami") -> list[str]:
    """Where ``method``'s MT-Bench answers are shorter or longer than another model's (mean words, intervals apart):
    a judge that scores only the shown principles (the checker) can prefer a short answer that passes them, so
    the sentence points at the length-controlled rates and the answers themselves."""
    answers = mtbench.get("answers", {})
    if method not in answers:
        return []
    own = answers[method]["mean_words"]
    others = {n: a["mean_words"] for n, a in answers.items() if n != method}
    lines = []
    for relation, names in by_relation(own, others):
        if relation == "overlap":
            continue
        word = "shorter" if relation == "below" else "longer"
        theirs = "; ".join(f"{n} {num(others[n], 1)}" for n in names)
        lines.append(
            f"{method.upper()}'s MT-Bench answers are {word} than those of {', '.join(names)} "
            f"(mean words {num(own, 1)}; {theirs}): a preference can follow length (a model judge often favours "
            "the longer answer; the checker, one that passes the shown principles by saying little), so read the "
            "win rates beside the length-controlled ones and the answers on the page."
        )
    return lines


def math_findings(gsm8k: dict) -> list[str]:
    """Greedy accuracy and the largest pass@k of every variant against base."""
    if "base" not in gsm8k:
        return []
    base = gsm8k["base"]
    ks = sorted({int(k) for m in gsm8k.values() for k in m.get("pass_at_k", {})})
    lines = [f"Math: base greedy accuracy {pct(base['greedy_accuracy'], 0)}."]
    for name, m in gsm8k.items():
        if name == "base":
            continue
        verb = VERBS[compare(m["greedy_accuracy"], base["greedy_accuracy"])]
        line = f"{name}: greedy {pct(m['greedy_accuracy'], 0)}, {verb} base"
        if ks:
            k = str(ks[-1])
            mine, theirs = m.get("pass_at_k", {}).get(k), base.get("pass_at_k", {}).get(k)
            if mine and theirs:
                where_k = VERBS[compare(mine, theirs)]
                line += f"; pass@{k} {pct(mine, 0)}, {where_k} base's {pct(theirs, 0)}"
        lines.append(line + ".")
    return lines


def positive_control(summary: dict) -> str | None:
    """The sentence that names a rewrite-teacher study for what it is."""
    modes = summary.get("mtbench", {}).get("data", {}).get("teacher_mode")
    if modes == "rewrite":
        return (
            "The MT-Bench study's training data come from the rewrite teacher: one answer per query, rewritten "
            "deterministically to each constitution's side of verifiable principles. It is a positive control: "
            "the data carry a known, learnable signal, and the question is which method finds it."
        )
    return None


def findings(summary: dict) -> list[str]:
    """Every sentence of "What this run shows", in report order."""
    lines = []
    control = positive_control(summary)
    if control:
        lines.append(control)
    for study in ("mtbench", "math"):
        for method, m in summary.get(study, {}).get("training", {}).get("methods", {}).items():
            if m.get("saturated_steps"):
                lines.append(
                    f"Training of {method} ({study} study) saturated: {m['saturated_steps']} of its "
                    f"{m['steps']} steps had a gradient norm of exactly 0 and changed nothing."
                )
    ev = summary.get("mtbench", {}).get("eval", {})
    if "mtbench" in ev:  # the paper's headline comparison first
        lines += judge_findings(ev["mtbench"])
        lines += length_findings(ev["mtbench"])
    if "mi" in ev:
        lines += mi_findings(ev["mi"])
    if "adherence" in ev:
        lines += adherence_findings(ev["adherence"])
    gsm8k = summary.get("math", {}).get("eval", {}).get("gsm8k")
    if gsm8k:
        lines += math_findings(gsm8k)
    return lines


def headline(summary: dict, most: int = 6) -> list[str]:
    """At most ``most`` short lines for the end of ``sami experiment``: each pairwise judge's hard win rates (the
    first judges, where there are more than fit), the MI bound, SAMI's adherence contrasts and the GSM8K greedy
    accuracies; the report has the rest."""
    judges, rest = [], []
    ev = summary.get("mtbench", {}).get("eval", {})
    for judge, by_pair in ev.get("mtbench", {}).get("pairwise", {}).items():
        rates = ", ".join(f"{pair} {pct(b['overall']['hard_win_rate'], 0)}" for pair, b in by_pair.items())
        judges.append(f"MT-Bench, {judge} judge, hard win rate of the first named: {rates}")
    if "mi" in ev:
        rest.append(
            "MI bound on held-out records, nats: "
            + ", ".join(f"{n} {num(m['overall']['mi_bound'], 2)}" for n, m in ev["mi"].items())
        )
    if "sami" in ev.get("adherence", {}):
        rest.append(
            "SAMI's adherence, pass rate under the principle minus under its antithesis: "
            + ", ".join(f"{p} {num(b['contrast'], 2)}" for p, b in ev["adherence"]["sami"]["principles"].items())
        )
    gsm8k = summary.get("math", {}).get("eval", {}).get("gsm8k")
    if gsm8k:
        rest.append(
            "GSM8K greedy accuracy: " + ", ".join(f"{n} {pct(m['greedy_accuracy'], 0)}" for n, m in gsm8k.items())
        )
    return (judges[: max(most - len(rest), 1)] + rest)[:most]
