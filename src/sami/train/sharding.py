"""``sharding: fsdp``: the SAMI loop's model sharded across processes with torch's FSDP2 (``fully_shard``).

One path on CPUs and GPUs. The processes that torchrun or ``accelerate launch`` starts form one group (gloo on
CPUs, NCCL on GPUs; accelerate sets it up), a one-dimensional device mesh spans them, every decoder block
becomes its own unit and the root unit takes the rest (embeddings, final norm, LM head). Between uses each
process holds 1/N of every parameter, of its gradient and of AdamW's two moments; a block's weights are
gathered for its forward and backward and freed after. Gradients are averaged across processes as they are
sharded (reduce-scatter), so N processes with B queries each step as one process with N x B queries does.
With ``precision: bf16`` (or ``auto`` on a GPU) the gathered parameters are bf16 and gradients are reduced in
fp32 (``MixedPrecisionPolicy``); ``model.gradient_checkpointing`` composes with it. LoRA shards the same way,
the optimiser holding only the adapters.

Queries stay whole: each process scores its own queries' C x C blocks (``sami.train.sami_loop``). Every
forward pass gathers weights from every process, so every process must run the same number of them: records
of one C only (a micro-batch mixing C runs one pass per C), and the full fine-tuning reference padded to the
same number of passes everywhere (``agree_on_count``).

Checkpoints are ``torch.distributed.checkpoint`` folders (``save_state``): each process writes its own shards
of the weights and of the optimiser state, none gathers them, and a checkpoint loads at any process count
(resharding) as long as that count divides the global batch it was written with (``queries_per_process``).
The final model is gathered once, on the main process, into a normal Hugging Face folder (``full_state``).

A single process has nothing to shard and trains unsharded, with the same checkpoints. A DeepSpeed launch or
one with an accelerate FSDP config is refused: each would shard the model its own way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from sami.core.errors import ConfigError
from sami.core.layout import RNG_SHARD, SCHEDULER, SHARDS

logger = logging.getLogger(__name__)


@dataclass
class Sharding:
    """How this process trains under ``sharding: fsdp``: ``active`` when there is more than one process (the
    model is then sharded), ``mixed`` when the gathered parameters are bf16 (gradients reduced in fp32)."""

    world: int
    rank: int
    device_type: str
    active: bool
    mixed: bool

    def autocast(self, accelerator):
        """The autocast the forward passes run under: none when the policy already casts the parameters."""
        return contextlib.nullcontext() if self.mixed else accelerator.autocast()


def plan(cfg, accelerator, precision: str) -> Sharding | None:
    """``cfg.sharding`` for this launch (None for ``none``); refuses what cannot be sharded this way."""
    if cfg.sharding != "fsdp":
        return None
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise ConfigError(
            "sharding: fsdp shards with torch's FSDP2 and cannot run under a DeepSpeed launch; launch with torchrun "
            "or an accelerate config without DeepSpeed, or set sharding: none to let DeepSpeed shard"
        )
    if accelerator.distributed_type == DistributedType.FSDP:
        raise ConfigError(
            "sharding: fsdp shards SAMI itself: launch it with torchrun --nproc_per_node N or accelerate launch "
            "--multi_gpu, not with an accelerate FSDP config (which loads the weights on the first process only)"
        )
    if precision == "fp16":
        raise ConfigError("sharding: fsdp trains in bf16 or full precision, not fp16: set precision to bf16 or no")
    world = accelerator.num_processes
    if world == 1:
        logger.warning("sharding: fsdp in a single process: nothing to shard, training unsharded")
    return Sharding(
        world=world,
        rank=accelerator.process_index,
        device_type=accelerator.device.type,
        active=world > 1,
        mixed=world > 1 and precision == "bf16",
    )


def decoder_blocks(model) -> list[torch.nn.Module]:
    """The model's decoder blocks (the classes transformers names in ``_no_split_modules``), in order."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or ())
    blocks = [m for m in model.modules() if type(m).__name__ in names]
    if not blocks:
        raise ConfigError(f"sharding: fsdp found no decoder blocks in {type(base).__name__} to shard")
    return blocks


def shard_model(model, shard: Sharding):
    """Shard ``model`` in place over a mesh of all processes: each decoder block a unit, then the root."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(shard.device_type, (shard.world,))
    policy = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if shard.mixed
        else MixedPrecisionPolicy()
    )
    for block in decoder_blocks(model):
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def clip_grad_norm(model, max_norm: float) -> float:
    """Clip the gradients' global norm to ``max_norm`` (inf: measure only) and return the norm before."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if hasattr(norm, "full_tensor"):  # a sharded norm (DTensor): the same value on every process
        norm = norm.full_tensor()
    return float(norm)


def agree_on_count(count: int, shard: Sharding | None, device) -> int:
    """The largest ``count`` of any process (every process calls it): how many forward passes each makes."""
    if shard is None or not shard.active:
        return count
    value = torch.tensor([count], device=device, dtype=torch.int64)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return int(value.item())


def check_single_c(queries, shard: Sharding | None) -> None:
    counts = sorted({q.num_constitutions for q in queries})
    if shard is not None and shard.active and len(counts) > 1:
        raise ConfigError(
            f"sharding: fsdp needs every record to have the same number of constitutions, got {counts}: "
            "split the data by C or train with sharding: none"
        )


# ------------------------------------------------------------------------------------------ checkpoints


def queries_per_process(checkpoint: Path | None, per_device: int, world: int, state_file: str) -> int:
    """Queries each process scores per micro-batch: ``per_device``, or, resuming a checkpoint written by another
    number of processes, its global batch shared among ``world`` (refused when ``world`` does not divide it)."""
    if checkpoint is None:
        return per_device
    state = json.loads((checkpoint / state_file).read_text())
    written_by, global_batch = state.get("processes"), state.get("global_batch")
    if not written_by or not global_batch or written_by == world:
        return per_device
    if global_batch % world:
        raise ConfigError(
            f"cannot resume {checkpoint.name} in {world} processes: it was trained with a global batch of "
            f"{global_batch} queries per micro-batch, which {world} processes cannot share equally"
        )
    logger.info(
        "%s was written by %d processes: each of %d now scores %d of its %d queries per micro-batch",
        checkpoint.name,
        written_by,
        world,
        global_batch // world,
        global_batch,
    )
    return global_batch // world


def _options(model, full: bool = False):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # a LoRA run saves its adapters only: the frozen base is the model it started from
    frozen = any(not p.requires_grad for p in model.parameters())
    return StateDictOptions(full_state_dict=full, cpu_offload=full, ignore_frozen_params=frozen, strict=not frozen)


def _alone() -> bool:
    """No process group: a plain single process, whose checkpoints torch.distributed.checkpoint writes alone."""
    return not (torch.distributed.is_available() and torch.distributed.is_initialized())


@contextlib.contextmanager
def _quiet_when_alone():
    """Without a process group torch.distributed.checkpoint warns that it assumes a single process: it is one."""
    with warnings.catch_warnings():
        if _alone():
            warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        yield


def save_state(folder: Path, model, optimizer, scheduler, shard: Sharding) -> None:
    """Write this process's shards of the weights and the optimiser state (every process calls it), its RNG
    state, and (the main process) the schedule."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    folder.mkdir(parents=True, exist_ok=True)
    model_state, optim_state = get_state_dict(model, optimizer, options=_options(model))
    with _quiet_when_alone():
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(folder / SHARDS), no_dist=_alone())
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    torch.save(rng, folder / RNG_SHARD.format(rank=shard.rank))
    if shard.rank == 0:
        torch.save(scheduler.state_dict(), folder / SCHEDULER)


def load_state(folder: Path, model, optimizer, scheduler, shard: Sharding, same_world: bool) -> None:
    """Load a checkpoint of ``save_state`` written by any number of processes into this run's shards; the RNG
    states only when ``same_world`` (written by as many processes as now run)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    options = _options(model)
    model_state, optim_state = get_state_dict(model, optimizer, options=options)
    state = {"model": model_state, "optim": optim_state}
    with _quiet_when_alone():
        dcp.load(state, checkpoint_id=str(folder / SHARDS), no_dist=_alone())
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"], options=options)
    scheduler.load_state_dict(torch.load(folder / SCHEDULER, weights_only=True))
    rng_file = folder / RNG_SHARD.format(rank=shard.rank)
    if same_world and rng_file.is_file():
        rng = torch.load(rng_file, weights_only=True)
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])


def full_state(model) -> dict:
    """The trained weights gathered on the main process (every process calls it; the others get an empty
    dict): all of them, or a LoRA run's adapters."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(model, options=_options(model, full=True))
    # a tied parameter (the LM head sharing the embeddings) comes back as a second copy: keep its first name only
    first = {name for name, _ in model.named_parameters()}
    tied = {name for name, _ in model.named_parameters(remove_duplicate=False)} - first
    return {k: v for k, v in state.items() if k not in tied}


def unsharded_class_name(model) -> str:
    """The model's own class name: ``fully_shard`` gives a sharded model a subclass named ``FSDP<name>``, which
    would otherwise be written into config.json's ``architectures``."""
    return next(c.__name__ for c in type(model).__mro__ if not c.__name__.startswith("FSDP"))
