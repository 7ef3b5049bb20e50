"""``sami train --method sami``: the SAMI training loop on accelerate.

The loop is explicit so that the order of queries is a pure function of (seed, step): step s, micro-step
k, process r always read the same queries, whatever the process count or the point of resumption. That is
what makes "micro-batch 1 x accumulation 4 equals 4 x 1", "two processes equal one" and "resume equals
uninterrupted" hold exactly, and it is why queries are never split across processes: each process scores
whole C x C blocks and DDP averages the gradients.

``train_sami`` sets a run up (``_start``), then repeats three separate things: one optimiser step
(``_optimizer_step``), its record in metrics.jsonl, the trackers and the progress bar (``_log_step``), and a
checkpoint when one is due (``_save_checkpoint``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sami.core.config import flatten, save_yaml, to_dict
from sami.core.errors import ConfigError
from sami.core.layout import CONFIG, MODEL
from sami.core.logprobs import batch_logprob_matrices
from sami.core.objective import sami_loss, sami_metrics
from sami.core.tokens import QueryTokens, count_cuts
from sami.data.records import Record, read_records
from sami.models.loading import load_model
from sami.train import sharding
from sami.train.checkpoints import (
    CHECKPOINTS,
    STATE_FILE,
    checkpoint_name,
    data_sha256,
    former_names,
    guarded_save,
    latest_checkpoint,
    log_cuts,
    numbered_checkpoints,
    resume_point,
    segment,
    write_manifest,
)
from sami.train.config import TrainConfig
from sami.train.encoding import encode_records
from sami.train.reference import Reference, lora_reference, precomputed_reference
from sami.train.runfolder import (
    METRICS,
    SaturationWatch,
    TrainingDiverged,
    TrainResult,
    append_metrics,
    metric_history,
    model_written,
    parent_config_differences,
    record_model,
    reset_accelerate_state,
    resolve_precision,
    truncate_metrics,
)

logger = logging.getLogger(__name__)


def query_stream(num_queries: int, seed: int, start: int, count: int) -> list[int]:
    """Items ``start .. start + count`` of the endless sequence of seeded per-epoch permutations."""
    out = []
    epoch, offset = divmod(start, num_queries)
    while len(out) < count:
        order = list(range(num_queries))
        random.Random(f"{seed}:{epoch}").shuffle(order)
        out.extend(order[offset:])
        epoch, offset = epoch + 1, 0
    return out[:count]


def total_steps(cfg: TrainConfig, num_queries: int, num_processes: int) -> int:
    if cfg.max_steps:
        return cfg.max_steps
    per_step = cfg.queries_per_device * cfg.gradient_accumulation * num_processes
    return max(1, math.ceil(cfg.epochs * num_queries / per_step))


def micro_batch(cfg: TrainConfig, num_queries: int, step: int, micro: int, rank: int, world: int) -> list[int]:
    b = cfg.queries_per_device
    g = step * cfg.gradient_accumulation + micro  # global micro-batch index
    return query_stream(num_queries, cfg.seed, (g * world + rank) * b, b)


def queries_read(cfg: TrainConfig, num_queries: int, steps: int, rank: int, world: int) -> list[int]:
    """Indices of the queries process ``rank`` reads in steps 0 .. steps - 1 (``micro_batch``), sorted."""
    b, micro_batches = cfg.queries_per_device, steps * cfg.gradient_accumulation
    stream = query_stream(num_queries, cfg.seed, 0, micro_batches * world * b)
    return sorted({stream[(g * world + rank) * b + k] for g in range(micro_batches) for k in range(b)})


def _micro_loss(model, cfg: TrainConfig, queries: list[QueryTokens], pad_id: int, reference: Reference | None = None):
    """Mean SAMI loss of one micro-batch (queries grouped by C), the matrices and reference diagonals.

    Returns ``(loss, matrices, refs)``: per group, a (B, C, C) matrix and its (B, C) reference diagonal
    (None without ``sami.ref_weight``), both detached, for the step's metrics.
    """
    by_c: dict[int, list[QueryTokens]] = {}
    for q in queries:
        by_c.setdefault(q.num_constitutions, []).append(q)
    total, matrices, refs = 0.0, [], []
    for c, group in by_c.items():
        # before the policy's forward: DDP expects its backward next; sami_loss refuses ref_weight without it
        ref = reference(group) if reference is not None and cfg.sami.ref_weight > 0 else None  # (B, C)
        mats = batch_logprob_matrices(model, group, layout=cfg.sami.layout, pad_token_id=pad_id)  # (B, C, C)
        weights = None
        if cfg.sami.constitution_weights is not None:
            if len(cfg.sami.constitution_weights) != c:
                raise ConfigError(
                    f"sami.constitution_weights has {len(cfg.sami.constitution_weights)} entries; records have C = {c}"
                )
            weights = torch.tensor(cfg.sami.constitution_weights)
        loss = sami_loss(
            mats,
            row_weight=cfg.sami.row_weight,
            col_weight=cfg.sami.col_weight,
            temperature=cfg.sami.temperature,
            constitution_weights=weights,
            nll_weight=cfg.sami.nll_weight,
            ref_weight=cfg.sami.ref_weight,
            ref_logprobs=ref,
        )
        total = total + loss * len(group) / len(queries)
        matrices.append(mats.detach())
        refs.append(None if ref is None else ref.detach())
    return total, matrices, refs


class FluencyWatch:
    """Warns once when ``diag_logprob`` falls more than ``margin`` nats below where training started.

    InfoNCE rises as well when every likelihood falls; a falling diagonal is the sign of that collapse
    (answers turning into gibberish) while the MI bound still looks good. One step's value depends on which
    queries it drew (on the quickstart's data it ranges over 2 nats between steps), so the watch compares
    means over ``window`` steps: the first ``window`` steps against the latest ``window``. ``margin`` 0 or
    None: never.
    """

    def __init__(self, margin: float | None, history: list[float] | None = None, window: int = 8):
        self.margin, self.window, self.warned = margin, window, False
        self.values = list(history or [])

    def update(self, step: int, diag_logprob: float) -> bool:
        """Record one step's value; True when this call warned."""
        self.values.append(diag_logprob)
        if not self.margin or self.warned or len(self.values) < 2 * self.window:
            return False
        start = sum(self.values[: self.window]) / self.window
        recent = sum(self.values[-self.window :]) / self.window
        if not recent < start - self.margin:
            return False
        self.warned = True
        logger.warning(
            "step %d: diag_logprob over the last %d steps is %.3f, %.3f nats per token below the first %d steps' "
            "%.3f (sami.fluency_margin %.3g): the responses are losing likelihood under their own constitutions, "
            "the collapse InfoNCE does not prevent; consider sami.nll_weight or sami.ref_weight, or a lower lr",
            step,
            self.window,
            recent,
            start - recent,
            self.window,
            start,
            self.margin,
        )
        return True


@dataclass
class _Run:
    """One SAMI run's moving parts, made by ``_start``."""

    cfg: TrainConfig
    out: Path
    accelerator: object
    model: object
    tokenizer: object
    optimizer: object
    scheduler: object
    records: list[Record]
    queries: list[QueryTokens]
    reference: Reference | None
    steps: int
    start: int
    segments: list[dict]
    run_info: dict = field(default_factory=dict)
    shard: sharding.Sharding | None = None  # sharding: fsdp (sami.train.sharding)
    saved_cfg: TrainConfig | None = None  # the config as given; cfg's queries_per_device may be a resume's share

    def autocast(self):
        return self.accelerator.autocast() if self.shard is None else self.shard.autocast(self.accelerator)

    @property
    def metrics_path(self) -> Path:
        return self.out / METRICS


def train_sami(cfg: TrainConfig, *, resume: bool) -> TrainResult:
    """Train ``cfg.model`` with SAMI on ``cfg.data``; the output folder is checked and locked by the caller
    (``sami.train.run.train``)."""
    from tqdm.auto import tqdm

    run = _start(cfg, resume)
    accelerator = run.accelerator
    history: list[dict] = []
    history_so_far = metric_history(run.metrics_path, "diag_logprob") if run.start else None
    fluency = FluencyWatch(cfg.sami.fluency_margin, history_so_far)
    saturation = SaturationWatch()
    bar = tqdm(total=run.steps, initial=run.start, desc="sami train", disable=not accelerator.is_local_main_process)
    run.model.train()
    for step in range(run.start, run.steps):
        record = _optimizer_step(run, step)
        history.append(record)
        if accelerator.is_main_process:
            fluency.update(step + 1, record["diag_logprob"])
            saturation.update(step + 1, record["grad_norm"], record["loss"])
        _log_step(run, record, bar)
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < run.steps:
            _save_checkpoint(accelerator, run.out, step + 1, run.saved_cfg, run.run_info, _state_saver(run))
    bar.close()
    if saturation.saturated:
        logger.warning(
            "%d of this run's %d steps had a gradient norm of exactly 0 (saturated)",
            saturation.saturated,
            run.steps - run.start,
        )
    if run.start < run.steps:  # a finished run that is resumed again has nothing to save
        _save_checkpoint(accelerator, run.out, run.steps, run.saved_cfg, run.run_info, _state_saver(run))
    model_dir = run.out / MODEL
    if run.start < run.steps or not model_written(model_dir, run.steps):
        if run.shard is None:
            save_model(accelerator, run.model, run.tokenizer, model_dir, cfg, run.steps, run.segments)
        else:
            save_full_model(run, model_dir)
    if run.shard is None:
        accelerator.end_training()
    else:  # the trackers only: end_training would also destroy the process group that later runs of a launch use
        for tracker in accelerator.trackers:
            tracker.finish()
    return TrainResult(cfg.method, run.out, model_dir, run.steps, history)


def _accelerator(cfg: TrainConfig, out: Path):
    from accelerate import Accelerator

    reset_accelerate_state()
    return Accelerator(
        # Without a GPU, processes started by `accelerate launch --multi_gpu` or torchrun still form a
        # gloo group; accelerate needs to be told to use the CPU for that.
        cpu=not torch.cuda.is_available(),
        mixed_precision=resolve_precision(cfg),
        log_with=cfg.report_to or None,
        project_dir=str(out),
    )


def _start(cfg: TrainConfig, resume: bool) -> _Run:
    """Checkpoint to resume from (checked before anything loads), model, data, optimiser, schedule, reference,
    and the loaded checkpoint's state."""
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    out = Path(cfg.output_dir)
    accelerator = _accelerator(cfg, out)
    world = accelerator.num_processes
    shard = sharding.plan(cfg, accelerator, resolve_precision(cfg))
    # before anything loads: a resume with other settings or data would not run what the folder records
    checkpoint, start, segments = resume_point(cfg, resume, accelerator.is_main_process)
    data_hash = data_sha256(cfg)
    saved_cfg = cfg
    if shard is not None:  # a sharded checkpoint resumes at another process count with the same global batch
        share = sharding.queries_per_process(checkpoint, cfg.queries_per_device, world, STATE_FILE)
        if share != cfg.queries_per_device:
            cfg = dataclasses.replace(cfg, queries_per_device=share)

    set_seed(cfg.seed)
    records = read_records(cfg.data)
    model, tokenizer = load_model(cfg.model, init_from=cfg.init_from)
    parent_config_differences(cfg)
    with count_cuts() as cuts:
        queries = encode_records(records, tokenizer, cfg)
    log_cuts(cuts, cfg)
    sharding.check_single_c(queries, shard)
    pad_id = tokenizer.pad_token_id
    steps = total_steps(cfg, len(queries), world)

    if shard is not None:
        model = sharding.shard_model(model, shard) if shard.active else model.to(accelerator.device)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=cfg.optim.lr,
        betas=tuple(cfg.optim.betas),
        eps=cfg.optim.eps,
        weight_decay=cfg.optim.weight_decay,
    )
    if shard is None:
        model, optimizer = accelerator.prepare(model, optimizer)
    reference = _reference(cfg, accelerator, model, queries, steps, pad_id, shard)
    # Not passed to prepare(): accelerate would step it once per process, and the schedule would then
    # depend on the process count. We step it once per optimiser step ourselves.
    scheduler = get_scheduler(
        cfg.optim.scheduler, optimizer, num_warmup_steps=cfg.optim.warmup_steps, num_training_steps=steps
    )
    if shard is None:
        accelerator.register_for_checkpointing(scheduler)

    if checkpoint is not None:
        if shard is None:
            accelerator.load_state(str(checkpoint))
        else:
            written_by = json.loads((checkpoint / STATE_FILE).read_text()).get("processes")
            sharding.load_state(checkpoint, model, optimizer, scheduler, shard, same_world=written_by == world)
        if start > steps:
            raise ConfigError(
                f"{checkpoint} is at step {start}, past this run's {steps} steps; raise max_steps or epochs"
            )
        logger.info("resumed from %s at step %d", checkpoint, start)
    if start < steps or not segments:
        segments.append(segment(cfg, start, steps, cuts))
    if accelerator.is_main_process:
        truncate_metrics(out / METRICS, start)
        save_yaml(saved_cfg, out / CONFIG)
    if cfg.report_to:
        flat = flatten(to_dict(cfg))  # trackers take scalars only
        accelerator.init_trackers(
            "sami", config={k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()}
        )
    return _Run(
        cfg,
        out,
        accelerator,
        model,
        tokenizer,
        optimizer,
        scheduler,
        records,
        queries,
        reference,
        steps,
        start,
        segments,
        {"data_sha256": data_hash, "segments": segments},
        shard,
        saved_cfg,
    )


def _reference(
    cfg: TrainConfig,
    accelerator,
    model,
    queries: list[QueryTokens],
    steps: int,
    pad_id: int,
    shard: sharding.Sharding | None = None,
):
    """The anchor's reference (``sami.ref_weight``), None without one; called before a checkpoint loads, while
    the model is still the starting model."""
    if cfg.sami.ref_weight <= 0:
        return None
    if cfg.model.finetune == "lora":
        return lora_reference(model, model if shard is not None else accelerator.unwrap_model(model), cfg, pad_id)
    read = queries_read(cfg, len(queries), steps, accelerator.process_index, accelerator.num_processes)
    autocast = accelerator.autocast() if shard is None else shard.autocast(accelerator)
    with autocast:
        reference = precomputed_reference(
            model,
            cfg,
            [queries[i] for i in read],
            pad_id,
            agree=lambda n: sharding.agree_on_count(n, shard, accelerator.device),
        )
    logger.info("reference: diagonal log-probs of %d queries under the starting model", len(read))
    return reference


def _optimizer_step(run: _Run, step: int) -> dict:
    """One optimiser step (0-based ``step``) over its micro-batches; returns the step's metrics record.

    A non-finite loss or gradient norm raises ``TrainingDiverged`` before anything of the step is applied.
    """
    cfg, accelerator, model = run.cfg, run.accelerator, run.model
    rank, world = accelerator.process_index, accelerator.num_processes
    pad_id = run.tokenizer.pad_token_id
    t0 = time.perf_counter()
    losses, mats, refs, tokens = [], [], [], 0
    for micro in range(cfg.gradient_accumulation):
        idx = micro_batch(cfg, len(run.queries), step, micro, rank, world)
        batch = [run.queries[i] for i in idx]
        tokens += sum(q.num_tokens(cfg.sami.layout) for q in batch)
        last = micro == cfg.gradient_accumulation - 1
        # sharded: gradients are reduce-scattered after every micro-batch, so that none is ever held whole
        with contextlib.nullcontext() if last or run.shard is not None else accelerator.no_sync(model):
            with run.autocast():
                loss, batch_mats, batch_refs = _micro_loss(model, cfg, batch, pad_id, run.reference)
            # Every process must agree to stop, or the others would wait forever in the next all-reduce.
            bad = accelerator.reduce((~torch.isfinite(loss.detach())).float().reshape(1), reduction="sum")
            if bad.item() > 0:
                raise TrainingDiverged(
                    f"non-finite SAMI loss at step {step + 1} "
                    f"(this process's queries: {[run.records[i].id for i in idx]}); "
                    f"nothing of this step was applied; last checkpoint: {latest_checkpoint(run.out)}"
                )
            if run.shard is None:
                accelerator.backward(loss / cfg.gradient_accumulation)
            else:
                (loss / cfg.gradient_accumulation).backward()
        losses.append(loss.detach())
        mats.extend(batch_mats)
        refs.extend(batch_refs)
    # The prepared model's parameters: under FSDP they are not the objects the optimiser was built on.
    # An infinite limit measures the norm without clipping.
    if run.shard is None:
        norm = accelerator.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm or math.inf)
    else:
        norm = sharding.clip_grad_norm(model, cfg.optim.max_grad_norm or math.inf)
    grad_norm = float("nan") if norm is None else float(norm)  # DeepSpeed clips internally: None
    if norm is not None and not math.isfinite(grad_norm) and accelerator.mixed_precision != "fp16":
        raise TrainingDiverged(
            f"non-finite gradient norm at step {step + 1}; nothing of this step was applied; "
            f"last checkpoint: {latest_checkpoint(run.out)}"
        )
    lr = run.scheduler.get_last_lr()[0]
    run.optimizer.step()  # under fp16 the grad scaler skips a step whose gradients overflowed
    if accelerator.optimizer_step_was_skipped:
        logger.warning("step %d skipped: fp16 gradients overflowed; the loss scale is lowered", step + 1)
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - t0
    return _step_metrics(accelerator, step + 1, losses, mats, tokens, seconds, lr, grad_norm, refs)


def _log_step(run: _Run, record: dict, bar) -> None:
    """The step's line in metrics.jsonl (main process), the trackers, and the progress bar."""
    if run.accelerator.is_main_process:
        append_metrics(run.metrics_path, record)
    if run.cfg.report_to:
        run.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])
    bar.update(1)
    if record["step"] % run.cfg.log_every == 0:
        bar.set_postfix(
            loss=f"{record['loss']:.4f}",
            mi=f"{record['mi_bound']:.3f}",
            diag=f"{record['diag_logprob']:.3f}",
            tok_s=f"{record['tokens_per_s']:.0f}",
        )


def _step_metrics(accelerator, step, losses, mats, tokens, seconds, lr, grad_norm, refs=None) -> dict:
    """Metrics of one optimiser step, averaged over micro-batches and processes.

    Per query: ``sami_metrics`` (``diag_logprob`` among them: the NLL anchor is ``-diag_logprob``), with
    ``ref_log_ratio`` and ``ref_penalty`` when reference diagonals ``refs`` (aligned with ``mats``) are given.
    """
    refs = refs or [None] * len(mats)
    per_query = [
        sami_metrics(m[b], None if r is None else r[b])
        for m, r in zip(mats, refs, strict=True)
        for b in range(m.shape[0])
    ]
    local = {k: sum(d[k] for d in per_query) / len(per_query) for k in per_query[0]}
    values = torch.tensor(
        [torch.stack(losses).mean().item()] + [local[k] for k in sorted(local)] + [float(tokens)],
        device=accelerator.device,
        dtype=torch.float64,
    )
    values = accelerator.reduce(values, reduction="sum")
    world = accelerator.num_processes
    names = ["loss"] + sorted(local)
    record = {"step": step}
    record.update({n: values[k].item() / world for k, n in enumerate(names)})
    record.update(
        {
            "tokens": int(values[-1].item()),
            "tokens_per_s": values[-1].item() / seconds,
            "lr": lr,
            "grad_norm": grad_norm,
        }
    )
    return record


def _state_saver(run: _Run):
    """What writes the training state into a checkpoint folder: accelerate's ``save_state``, or under
    ``sharding: fsdp`` each process's shards (``sami.train.sharding``) and the global batch they share."""
    if run.shard is None:
        return None
    world = run.shard.world

    def save(folder: Path) -> None:
        sharding.save_state(folder, run.model, run.optimizer, run.scheduler, run.shard)

    save.state = {"processes": world, "global_batch": run.cfg.queries_per_device * world}
    return save


def _save_checkpoint(accelerator, out: Path, step: int, cfg: TrainConfig, run_info: dict, save_state=None) -> None:
    """Write checkpoint-N into a temporary folder with its manifest, then rename it: a checkpoint is complete
    or absent, and a failed save (a full disk) leaves no partial folder behind (``sami.train.checkpoints``).
    ``save_state`` writes the training state into the folder (``_state_saver``; accelerate's by default)."""
    target = out / CHECKPOINTS / checkpoint_name(step)
    partial = out / CHECKPOINTS / f".{target.name}.partial"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    write = save_state or (lambda folder: accelerator.save_state(str(folder)))
    guarded_save(lambda: write(partial), partial, target.name, lambda: latest_checkpoint(out))
    accelerator.wait_for_everyone()  # every process has written its RNG state before the folder is sealed
    if accelerator.is_main_process:

        def seal() -> None:
            save_yaml(cfg, partial / CONFIG)
            (partial / STATE_FILE).write_text(json.dumps({"step": step, **getattr(save_state, "state", {})}))
            write_manifest(partial, step=step, **run_info)

        guarded_save(seal, partial, target.name, lambda: latest_checkpoint(out))
        shutil.rmtree(target, ignore_errors=True)
        for name in former_names(step):  # the same step under an older version's name
            shutil.rmtree(out / CHECKPOINTS / name, ignore_errors=True)
        os.replace(partial, target)
        done = numbered_checkpoints(out)
        for old in done[: max(0, len(done) - cfg.keep_checkpoints)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def save_model(
    accelerator, model, tokenizer, model_dir: Path, cfg: TrainConfig, steps: int, segments: list[dict]
) -> None:
    """The trained model as a loadable folder (full weights, or the LoRA adapter) with its config."""
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        unwrapped.save_pretrained(model_dir, state_dict=state)
        record_model(model_dir, cfg, steps, accelerator.num_processes, segments, tokenizer)
    accelerator.wait_for_everyone()


def save_full_model(run: _Run, model_dir: Path) -> None:
    """``save_model`` of a ``sharding: fsdp`` run: the weights gathered once on the main process, written into
    a temporary folder renamed ``model_dir`` when complete; a failed write (a full disk) removes it and leaves
    the checkpoints as they are."""
    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    state = sharding.full_state(run.model)  # every process takes part; the main one holds the result
    if accelerator.is_main_process:
        partial = model_dir.with_name(f".{model_dir.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)

        def write() -> None:
            run.model.save_pretrained(partial, state_dict=state)
            base = run.model.get_base_model() if hasattr(run.model, "get_base_model") else run.model
            if (partial / "config.json").is_file():  # the model's own class, not its sharded subclass
                base.config.architectures = [sharding.unsharded_class_name(base)]
                base.config.save_pretrained(partial)
            record_model(partial, run.saved_cfg, run.steps, accelerator.num_processes, run.segments, run.tokenizer)

        guarded_save(write, partial, model_dir.name, lambda: latest_checkpoint(run.out))
        shutil.rmtree(model_dir, ignore_errors=True)
        os.replace(partial, model_dir)
    accelerator.wait_for_everyone()
