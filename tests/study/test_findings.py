""" "What this run shows": sentences follow the numbers and their intervals, on hand-made summaries."""

from sami.study.findings import (
    adherence_findings,
    compare,
    findings,
    headline,
    judge_findings,
    length_findings,
    math_findings,
    mi_findings,
)


def est(value, low, high, n=8):
    return {"value": value, "low": low, "high": high, "n": n, "method": "bootstrap"}


def test_compare_reads_interval_overlap():
    assert compare(est(0.6, 0.5, 0.7), est(0.1, 0.0, 0.4)) == "above"
    assert compare(est(0.1, 0.0, 0.4), est(0.6, 0.5, 0.7)) == "below"
    assert compare(est(0.45, 0.3, 0.5), est(0.6, 0.5, 0.7)) == "overlap"  # touching intervals overlap
    assert compare({"value": None}, est(0.6, 0.5, 0.7)) == "overlap"


def mi(value, low, high, change=None):
    overall = {"mi_bound": est(value, low, high)}
    if change is not None:
        overall["diag_logprob_change"] = est(*change)
    return {"overall": overall}


def test_mi_findings_name_the_bound_and_the_fluency():
    lines = mi_findings(
        {
            "base": mi(0.01, 0.0, 0.02),
            "sft": mi(0.3, 0.0, 0.6),
            "sami": mi(0.6, 0.55, 0.65, change=(-0.1, -0.2, 0.0)),
            "dpo": mi(0.1, 0.05, 0.2, change=(-0.5, -0.6, -0.4)),
        }
    )
    assert lines[0].startswith("Held-out MI bound: SAMI 0.600 [0.550, 0.650] nats is above base's 0.010")
    assert "It is also above dpo" in lines[1] and "cannot be told apart from sft" in lines[2]
    assert "changed by -0.100 [-0.200, 0.000] nats for SAMI" in lines[3] and "stayed fluent" in lines[3]
    # a model above SAMI is named as such, never as "cannot be told apart"
    below = mi_findings({"base": mi(0.1, 0.05, 0.15), "sami": mi(0.3, 0.25, 0.35), "dpo": mi(0.6, 0.55, 0.65)})
    assert below[1] == "It is below dpo (dpo 0.600 [0.550, 0.650])." and len(below) == 2
    collapsed = mi_findings({"base": mi(0.0, 0.0, 0.01), "sami": mi(0.69, 0.68, 0.69, change=(-4.7, -5.0, -4.4))})
    assert "more than 0.3 nats below base" in collapsed[-1]


def adh(contrast, degenerate=0.0):
    return {
        "principles": {"lowercase": {"contrast": est(*contrast)}},
        "degenerate": est(degenerate, 0.0, max(degenerate, 0.2)),
    }


def test_every_principle_names_every_model():
    """Two principles: the second one's sentence still lists every model (a loop once reused the model list)."""

    def two(a, b):
        return {"principles": {"lowercase": {"contrast": est(*a)}, "bullet_list": {"contrast": est(*b)}}}

    adherence = {
        "base": two((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        "sami": two((0.9, 0.6, 1.0), (0.4, 0.1, 0.7)),
        "dpo": two((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    }
    bullets, lower = adherence_findings(adherence)
    for line in (bullets, lower):
        assert all(f"{n} " in line for n in adherence) and "Contrast above zero: sami." in line
        assert line.endswith("SAMI's is above base, dpo's.")


def test_adherence_findings_compare_contrasts():
    lines = adherence_findings(
        {"base": adh((0.0, -0.2, 0.2)), "sft": adh((0.1, 0.0, 0.3)), "sami": adh((0.8, 0.6, 1.0))}
    )
    assert "Contrast above zero: sami." in lines[0] and lines[0].endswith("SAMI's is above base, sft's.")
    assert lines[1].startswith("No model wrote a degenerate answer")
    lines = adherence_findings({"base": adh((0.0, -0.2, 0.2)), "sami": adh((0.1, -0.1, 0.4), degenerate=0.5)})
    assert "No model's contrast is above zero." in lines[0] and "SAMI's cannot be told apart from base's." in lines[0]
    assert lines[1] == "Degenerate answers: sami 50% [0, 50]."
    three = {"dpo": adh((0.8, 0.7, 0.9)), "base": adh((-0.1, -0.2, -0.05)), "sami": adh((0.1, 0.0, 0.2))}
    lines = adherence_findings(three)
    assert "SAMI's is above base's. SAMI's is below dpo's." in lines[0]


def pair(rate, unparseable=0, source="probability"):
    return {"overall": {"hard_win_rate": est(*rate), "unparseable": unparseable}, "verdict_source": source}


def test_judge_findings_call_a_preference_only_outside_one_half():
    (line,) = judge_findings(
        {
            "pairwise": {
                "checker": {
                    "sami vs dpo": pair((0.8, 0.6, 0.9)),
                    "sami vs sft": pair((0.3, 0.1, 0.45)),
                    "dpo vs sft": pair((0.5, 0.3, 0.7), unparseable=2),
                }
            },
            "constitutions": "positive",
        }
    )
    assert line.startswith(
        "Judge `checker` (probability verdicts), every question under the same positive constitution: sami "
        "preferred over dpo (80% [60, 90])"
    )
    assert "sft preferred over sami (sami's win rate 30% [10, 45])" in line
    assert "dpo vs sft: no preference detectable" in line and line.endswith("2 items unparseable.")


def test_judge_findings_split_by_flips_name_a_position_preference_and_rank():
    by_flips = {
        "0": {"hard_win_rate": est(0.5, 0.3, 0.7), "n": 8},
        "1": {"hard_win_rate": est(0.9, 0.7, 1.0), "n": 16},
    }
    mtbench = {
        "pairwise": {
            "aware": {
                "sami vs dpo": {**pair((0.75, 0.6, 0.86)), "per_flipped": by_flips},
                "dpo vs sft": {**pair((0.5, 0.3, 0.7)), "per_flipped": by_flips},
            }
        },
        "constitutions": "sampled",
        "judge_diagnostics": {"aware": {"first_position": est(0.8, 0.7, 0.9)}},
        "ranking": {
            "aware": {
                "origin": "sami",
                "models": {
                    "sami": {"rank": 1, "win_rate_vs_origin": est(0.5, 0.5, 0.5)},
                    "sft": {"rank": 3, "win_rate_vs_origin": est(0.2, 0.1, 0.3)},
                    "dpo": {"rank": 2, "win_rate_vs_origin": est(0.3, 0.2, 0.4)},
                },
            }
        },
    }
    wins, position, ranking = judge_findings(mtbench)
    assert "each question under a constitution of its own" in wins
    assert (
        "sami preferred over dpo (75% [60, 86]); by principles flipped: 0: 50% [30, 70] (n=8), 1: 90% [70, 100]" in wins
    )
    assert "dpo vs sft: no preference detectable (50% [30, 70])." in wins  # the split is given for SAMI's pairs only
    assert position.startswith("Judge `aware` prefers the answer shown first: 80% [70, 90]")
    assert (
        ranking == "Bradley-Terry ranking by `aware`: sami, dpo, sft (expected win rate against sami: dpo 30% [20, "
        "40]; sft 20% [10, 30])."
    )
    for model in ("dpo", "sft"):  # intervals that hold 1/2 give no order
        mtbench["ranking"]["aware"]["models"][model]["win_rate_vs_origin"] = est(0.45, 0.4, 0.55)
    assert judge_findings(mtbench)[2].startswith(
        "Bradley-Terry ranking by `aware`: no model can be told apart from sami"
    )


def test_length_findings_name_only_lengths_whose_intervals_are_apart():
    answers = {
        "sami": {"mean_words": est(10.4, 8.1, 12.8)},
        "dpo": {"mean_words": est(23.0, 21.3, 24.4)},
        "sft": {"mean_words": est(12.0, 9.0, 15.0)},  # overlaps sami's: not named
    }
    lines = length_findings({"answers": answers})
    assert len(lines) == 1
    assert lines[0].startswith(
        "SAMI's MT-Bench answers are shorter than those of dpo (mean words 10.4 [8.1, 12.8]; dpo 23.0"
    )
    answers["sami"]["mean_words"] = est(40.0, 35.0, 45.0)
    assert [line.split(" (")[0] for line in length_findings({"answers": answers})] == [
        "SAMI's MT-Bench answers are longer than those of dpo, sft"
    ]
    assert length_findings({"answers": {"dpo": answers["dpo"]}}) == []  # no sami: nothing to say


def test_math_findings_compare_with_base():
    def acc(greedy, at4):
        return {"greedy_accuracy": est(*greedy), "pass_at_k": {"1": est(*greedy), "4": est(*at4)}}

    lines = math_findings(
        {"base": acc((0.3, 0.2, 0.4), (0.5, 0.4, 0.6)), "sft": acc((0.6, 0.5, 0.7), (0.55, 0.45, 0.7))}
    )
    assert lines[0] == "Math: base greedy accuracy 30% [20, 40]."
    assert (
        lines[1]
        == "sft: greedy 60% [50, 70], above base; pass@4 55% [45, 70], not distinguishable from base's 50% [40, 60]."
    )


def test_findings_name_a_positive_control():
    summary = {"mtbench": {"data": {"teacher_mode": "rewrite"}, "eval": {}}}
    assert "positive control" in findings(summary)[0]
    assert findings({"mtbench": {"data": {"teacher_mode": "constitution"}, "eval": {}}}) == []


def test_the_headline_keeps_every_study_in_six_lines():
    """Four judges, MI, adherence and math make seven lines: the judges give way (three are kept), every study
    keeps its line, and each number is the estimate rounded as the report rounds it."""
    pair = {"overall": {"hard_win_rate": est(0.84, 0.68, 0.93)}}
    summary = {
        "mtbench": {
            "eval": {
                "mtbench": {"pairwise": {j: {"sami vs dpo": pair} for j in ("aware", "free", "checker", "other")}},
                "mi": {"base": mi(0.01, 0.0, 0.02), "sami": mi(0.6, 0.55, 0.65)},
                "adherence": {"sami": {"principles": {"lowercase": {"contrast": est(0.5, 0.25, 0.75)}}}},
            }
        },
        "math": {"eval": {"gsm8k": {"base": {"greedy_accuracy": est(0.2, 0.1, 0.3)}}}},
    }
    lines = headline(summary)
    assert len(lines) == 6
    assert lines[0] == "MT-Bench, aware judge, hard win rate of the first named: sami vs dpo 84% [68, 93]"
    assert [line.split(",")[1] for line in lines[:3]] == [" aware judge", " free judge", " checker judge"]
    assert lines[3] == "MI bound on held-out records, nats: base 0.01 [0.00, 0.02], sami 0.60 [0.55, 0.65]"
    assert lines[4].endswith(": lowercase 0.50 [0.25, 0.75]")
    assert lines[5] == "GSM8K greedy accuracy: base 20% [10, 30]"
    assert len(headline({"math": summary["math"]})) == 1
