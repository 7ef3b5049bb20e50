"""The MT-Bench tables ``sami eval mtbench`` prints, from its metrics."""

from __future__ import annotations

from sami.eval.common import fmt
from sami.eval.results import MTBenchMetrics


def print_mtbench(metrics: dict) -> None:
    """``metrics``: what ``metrics.json`` stores (``MTBenchMetrics.to_dict``)."""
    m = MTBenchMetrics.from_dict(metrics)
    for n, a in m.answers.items():
        print(
            f"{n}: {a.count} answers, mean words {fmt(a.mean_words, False)}, "
            f"mean tokens {fmt(a.mean_tokens, False)}, cut by the token limit {a.cut_by_length}"
        )
    for judge, by_pair in m.pairwise.items():
        for pair, block in by_pair.items():
            o = block.overall
            print(
                f"[{judge}] {pair} ({block.verdict_source} verdicts): win {o.win} / tie {o.tie} / loss "
                f"{o.loss}, unparseable {o.unparseable}, orders disagreeing {o.inconsistent}, "
                f"not yet judged {block.pending}"
            )
            print(
                f"    hard win rate {fmt(o.hard_win_rate)}; soft {fmt(o.soft_win_rate)}; "
                f"length-controlled {fmt(o.length_controlled_win_rate)}; "
                f"style-controlled {fmt(o.style_controlled_win_rate)}"
            )
            if o.verdict_mass.n:
                print(f"    probability on the verdict letters before renormalising {fmt(o.verdict_mass, False)}")
            for category, c in block.per_category.items():
                print(
                    f"    {category:<11} {c.win}/{c.tie}/{c.loss}/{c.unparseable}  hard "
                    f"{fmt(c.hard_win_rate)}  soft {fmt(c.soft_win_rate)}"
                )
            for k, c in (block.per_flipped or {}).items():
                print(
                    f"    {k} flipped   {c.win}/{c.tie}/{c.loss}/{c.unparseable}  hard "
                    f"{fmt(c.hard_win_rate)}  soft {fmt(c.soft_win_rate)}"
                )
    for judge, d in m.judge_diagnostics.items():
        print(
            f"[{judge}] the two orders agree {fmt(d.order_agreement)}; of the verdicts that pick an answer, "
            f"the one shown first {fmt(d.first_position)}; ties {fmt(d.ties)}"
        )
    for judge, fit in m.ranking.items():
        print(f"[{judge}] Bradley-Terry ranking (strength in logits over {fit.origin}; expected win rate against it):")
        for name, r in sorted(fit.models.items(), key=lambda kv: kv[1].rank):
            print(f"    {r.rank}. {name:<12} {fmt(r.strength, False)}  {fmt(r.win_rate_vs_origin)}")
    for judge, by_model in m.ratings.items():
        for n, s in by_model.items():
            print(f"[{judge}] {n}: mean rating {fmt(s.score, False)}, unparseable {s.unparseable} of {s.n}")
