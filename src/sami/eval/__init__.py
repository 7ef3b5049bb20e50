"""The evaluation suite: ``sami eval mtbench|gsm8k|mi|adherence``.

Each suite generates (or scores) into append-only JSONL files under ``<output_dir>/<suite>/`` and computes
its metrics from those files alone, so a metric can be recomputed or changed without generating or judging
again, and an interrupted run resumes where it stopped (docs/EVALUATION.md).
"""
