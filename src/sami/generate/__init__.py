"""``sami generate``: a teacher writes constitution-conditioned responses, which are filtered."""
