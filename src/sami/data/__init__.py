"""Training data and what it is made of: records, principles and their checkers and rewrites, prompt
templates, prompt pools, and the bundled resources (``principles.yaml``, ``pool.jsonl``)."""
