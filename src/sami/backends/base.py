"""What every text generation backend shares: the registry and the interface.

Backends are registered by name in ``BACKENDS`` (``register_backend``; ``BackendConfig.kind`` names one) and
built by ``make_backend``. Three are built in, one module each, registered when ``sami.backends`` is imported
(which any import of one of its modules does first):

- ``sami.backends.transformers_backend``: a local model, batched with left padding and the KV cache, stop
  strings, greedy or sampled. Prompts are sorted by length so that a batch holds similar lengths.
- ``sami.backends.vllm_backend``: vLLM's offline engine for GPUs (optional extra, imported only when chosen).
- ``sami.backends.openai_backend``: any OpenAI-compatible HTTP endpoint through the ``openai`` client, whose
  retries (exponential backoff, honouring ``retry-after``) cover 429, 5xx and timeouts; requests run with
  bounded concurrency, and every answer is kept in an on-disk cache keyed by the full request, so a rerun
  never pays twice. The API key is read from the environment variable the config names and is never written.

Every backend has one small interface (``generate`` / ``generate_iter`` / ``describe``). A prompt is either raw
text (used exactly as given) or a list of chat messages (the model's chat template is applied; an endpoint
receives them as a chat request).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Protocol

from sami.backends.tools import Prompt
from sami.core.errors import ConfigError, PluginError
from sami.core.registry import Registry


@dataclass(frozen=True)
class SamplingParams:
    """How to decode. ``temperature`` 0 means greedy; ``n`` completions are drawn per prompt."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.n < 1:
            raise ValueError("max_new_tokens and n must be at least 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")
        if self.temperature == 0 and self.n > 1:
            raise ValueError("greedy decoding (temperature 0) gives one completion; set a temperature for n > 1")
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Completion:
    """One generated text. ``finish_reason``: ``stop`` (end token or a stop string) or ``length``
    (the token limit cut it). ``num_tokens`` is None where the backend does not say (an endpoint asked for
    several completions reports only their total)."""

    text: str
    finish_reason: str
    num_tokens: int | None

    def to_json(self) -> dict:
        return asdict(self)


class Backend(Protocol):
    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams, *, desc: str | None = None, progress: bool = True
    ) -> list[list[Completion]]:
        """Per prompt, in order, ``params.n`` completions."""
        ...

    def generate_iter(
        self, prompts: Sequence[Prompt], params: SamplingParams, *, desc: str | None = None, progress: bool = True
    ) -> Iterator[tuple[int, list[Completion]]]:
        """(prompt index, completions) as each batch or request finishes, in any order."""
        ...

    def describe(self) -> dict: ...


@dataclass
class BackendConfig:
    """Which backend generates, and its settings (a config section, e.g. ``teacher:`` or ``judge:``).

    kind: a registered backend (``BACKENDS``): ``transformers`` (local), ``vllm`` (local, GPU) or ``openai``
        (an OpenAI-compatible endpoint), or one a plugin registered (``sami.plugins``).
    model: embedded alias, hub id, model folder, run folder or TRL checkpoint (a LoRA adapter is merged
        into the chain it was trained on, ``sami.models.loading.load_trained``); for ``openai`` the model name the
        endpoint serves.
    batch_size: prompts per forward pass for ``transformers`` (None: 8 on CPU, 32 on a GPU).
    engine_args: ``vllm`` only: keyword arguments for ``vllm.LLM`` (``max_model_len``, ``enforce_eager``,
        ``gpu_memory_utilization``, ``tensor_parallel_size``, ...), passed as given.
    base_url / api_key_env / concurrency / timeout / max_retries / cache_dir: ``openai`` only. The key is
        read from the environment variable named by ``api_key_env``; ``cache_dir`` None is
        ``<SAMI_CACHE>/http``.
    """

    kind: str = "transformers"
    model: str = "smollm2-135m"
    revision: str | None = None
    dtype: str = "auto"
    batch_size: int | None = None
    engine_args: dict[str, Any] = field(default_factory=dict)
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float = 120.0
    max_retries: int = 5
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in BACKENDS:
            raise ValueError(f"kind must be one of {tuple(BACKENDS)}, got {self.kind!r}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("batch_size must be at least 1 (or null for the default)")
        if self.concurrency < 1 or self.timeout <= 0 or self.max_retries < 0:
            raise ValueError("concurrency must be >= 1, timeout > 0 and max_retries >= 0")
        if self.engine_args and self.kind != "vllm":
            raise ValueError(f"engine_args is for the vllm backend, not {self.kind!r}")
        BACKENDS[self.kind].check(self)


def _no_check(cfg: BackendConfig) -> None:
    pass


@dataclass(frozen=True)
class BackendKind:
    """One way to generate, as ``BackendConfig.kind`` names it.

    build: ``BackendConfig -> Backend`` (local models are loaded here). check: raises ``ValueError`` for
    settings this kind cannot use, when the config is read. verdict_probabilities: whether a judge of this
    kind can read verdict letters' probabilities (``next_token_probs_iter``): ``default`` (and does unless
    told otherwise), ``possible`` (on request: an endpoint may not return log-probs) or ``no``.
    """

    name: str
    build: Callable[[BackendConfig], Backend]
    check: Callable[[BackendConfig], None] = _no_check
    verdict_probabilities: str = "no"
    help: str = ""


BACKENDS: Registry[BackendKind] = Registry("backend")
IMPORTED = "imported:"  # the model of an evaluated checkpoint whose answers ``sami eval import`` read from a file
VERDICT_PROBABILITIES: tuple[str, ...] = ("default", "possible", "no")


def close_backend(backend) -> None:
    """Release what ``backend`` holds outside Python's reach (a vLLM engine's core process), where it has a
    ``close``; the transformers and openai backends hold nothing that the garbage collector does not free."""
    close = getattr(backend, "close", None)
    if close is not None:
        close()


def register_backend(name: str, *, check=None, verdict_probabilities: str = "no", help: str = ""):
    """Decorator: register ``build(cfg) -> Backend`` as the backend ``kind: name``."""
    if verdict_probabilities not in VERDICT_PROBABILITIES:
        raise PluginError(
            f"verdict_probabilities must be one of {VERDICT_PROBABILITIES}, got {verdict_probabilities!r}"
        )

    def wrap(build: Callable[[BackendConfig], Backend]):
        BACKENDS.register(name, BackendKind(name, build, check or _no_check, verdict_probabilities, help))
        return build

    return wrap


def make_backend(cfg: BackendConfig) -> Backend:
    """Build the backend ``cfg`` names; local models are loaded here."""
    if cfg.model.startswith(IMPORTED):
        raise ConfigError(
            f"{cfg.model}: this checkpoint's answers were read from a file by sami eval import, so missing ones "
            "cannot be generated; import them too, or evaluate only the questions it answered"
        )
    return BACKENDS[cfg.kind].build(cfg)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first of the ``stop`` strings it holds, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def in_order(count: int, finished) -> list[list[Completion]]:
    """Completions from ``generate_iter`` (any order) placed back in prompt order."""
    out: list = [None] * count
    for index, completions in finished:
        out[index] = completions
    return out
