"""``sami train``: its config, the method registry and the built-in methods, the SAMI loop, the TRL runner and
its recipes, the examples each method takes from a record, and what a run folder and its checkpoints hold.

Importing any module of this package runs this file first, so the built-in methods are registered
(``sami.train.methods``) before any config names one.
"""

from sami.train import methods  # noqa: F401 (registers the built-in methods)
