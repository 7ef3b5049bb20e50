"""sami-align: align language models to written principles with SAMI."""

from sami.core.logprobs import batch_logprob_matrices, logprob_matrix
from sami.core.objective import sami_loss, sami_metrics
from sami.core.tokens import QueryTokens, encode_query

__version__ = "0.1.0"

__all__ = [
    "QueryTokens",
    "batch_logprob_matrices",
    "encode_query",
    "logprob_matrix",
    "sami_loss",
    "sami_metrics",
    "__version__",
]
