"""The core: the SAMI objective, the log-prob matrix and its tokens, strict configs, locks and statistics.

Nothing here imports from another sami package."""
