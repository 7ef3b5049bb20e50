"""Text generation backends: one module per built-in kind, registered on import of this package.

``sami.backends.base`` holds the registry and the interface; importing any module of this package runs this
file first, so ``make_backend`` can build every built-in kind whichever module a caller imported.
"""

from sami.backends import openai_backend, transformers_backend, vllm_backend  # noqa: F401 (each registers its kind)
