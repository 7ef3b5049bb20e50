"""Whole studies: ``sami experiment`` and ``sami iterate``, their stages, the report, findings and figures."""
