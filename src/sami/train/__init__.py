"""``sami train``: its config, the method table, the SAMI loop, the TRL runner and its recipes, the
examples each method takes from a record, and what a run folder and its checkpoints hold."""
