"""A judge-free measure of degenerate text, for answers of a model that may have collapsed.

InfoNCE can be maximised by lowering every likelihood, and a collapsed model writes strings such as
``akecrasableortunately<clearible>easy</aire...`` or loops on one phrase. ``is_degenerate`` flags an answer
when any of these holds (thresholds chosen so that ordinary prose, lists, code and JSON pass):

1. it has no letter or digit at all;
2. **run-on tokens**: more than ``MAX_LONG_SHARE`` of its whitespace-separated tokens are longer than
   ``LONG_TOKEN`` characters (English words, numbers and most identifiers are shorter; URLs are rare);
3. **looping**: it has at least ``MIN_LOOP_WORDS`` words and fewer than ``MIN_DISTINCT_TRIGRAMS`` of its word
   trigrams are distinct.

The rate of degenerate answers is reported per checkpoint beside adherence and MT-Bench answers.
"""

from __future__ import annotations

import re

LONG_TOKEN = 20
MAX_LONG_SHARE = 0.2
MIN_LOOP_WORDS = 12
MIN_DISTINCT_TRIGRAMS = 0.5
_ALNUM = re.compile(r"[^\W_]")


def degenerate_reason(text: str) -> str | None:
    """Why ``text`` counts as degenerate (``empty``, ``run-on tokens``, ``looping``), or None."""
    if not _ALNUM.search(text):
        return "empty"
    tokens = text.split()
    if sum(len(t) > LONG_TOKEN for t in tokens) > MAX_LONG_SHARE * len(tokens):
        return "run-on tokens"
    words = [w.lower() for w in tokens]
    if len(words) >= MIN_LOOP_WORDS:
        trigrams = list(zip(words, words[1:], words[2:], strict=False))
        if len(set(trigrams)) < MIN_DISTINCT_TRIGRAMS * len(trigrams):
            return "looping"
    return None


def is_degenerate(text: str) -> bool:
    return degenerate_reason(text) is not None


def passes(checker, answer: str) -> bool:
    """A checker's verdict on an answer, except that a degenerate answer passes none: ``- -`` lines are not a
    bulleted answer. Adherence and the checker judge both count passes this way."""
    return not is_degenerate(answer) and bool(checker(answer))
