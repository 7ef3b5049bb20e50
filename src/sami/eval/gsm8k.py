"""``sami eval gsm8k``: placeholder re-export while the attempt runner is written."""

from sami.eval.gsm8k_data import extract_answer

__all__ = ["extract_answer"]
