"""``sami train --method sami``: the SAMI training loop on accelerate.

The loop is explicit so that the order of queries is a pure function of (seed, step): step s, micro-step
k, process r always read the same queries, whatever the process count or the point of resumption. That is
what makes "micro-batch 1 x accumulation 4 equals 4 x 1", "two processes equal one" and "resume equals
uninterrupted" hold exactly, and it is why queries are never split across processes: each process scores
whole C x C blocks and DDP averages the gradients.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from sami.checkpoints import (
    check_resume,
    data_sha256,
    guarded_save,
    latest_intact,
    log_cuts,
    segment,
    write_manifest,
)
from sami.config import config_hash, flatten, save_yaml, to_dict
from sami.data import Record, read_records
from sami.locks import hold
from sami.logprobs import QueryTokens, batch_logprob_matrices, count_cuts, encode_query
from sami.models import load_model
from sami.objective import sami_loss, sami_metrics
from sami.reference import Reference, lora_reference, precomputed_reference
from sami.templates import build_prompt, render_constitution, response_end_token, response_text
from sami.train_config import TrainConfig

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"


class TrainingDiverged(RuntimeError):
    """The loss or gradient norm became NaN or infinite; nothing of that step was applied or saved."""


@dataclass
class TrainResult:
    method: str
    output_dir: Path
    model_dir: Path
    steps: int
    metrics: list[dict]


def encode_records(records: Sequence[Record], tokenizer, cfg: TrainConfig) -> list[QueryTokens]:
    """Apply the training template to every record and tokenise it."""
    end_token = response_end_token(cfg.template, tokenizer)
    queries = []
    for record in records:
        prompts = [
            build_prompt(
                cfg.template,
                render_constitution(c, seed=cfg.seed if cfg.shuffle_principles else None, key=f"{record.id}:{i}"),
                record.query,
                tokenizer,
            )
            for i, c in enumerate(record.constitutions)
        ]
        responses = [response_text(cfg.template, r) for r in record.responses]
        queries.append(
            encode_query(
                tokenizer,
                prompts,
                responses,
                max_prompt_tokens=cfg.max_prompt_tokens,
                max_response_tokens=cfg.max_response_tokens,
                end_token_id=end_token,
            )
        )
    return queries


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


def _precision(cfg: TrainConfig) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def _complete_checkpoints(out: Path) -> list[Path]:
    """Checkpoint folders that were sealed (their state file exists), oldest first."""
    found = sorted((out / CHECKPOINTS).glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    return [p for p in found if (p / STATE_FILE).is_file()]


def _latest_checkpoint(out: Path) -> Path | None:
    complete = _complete_checkpoints(out)
    return complete[-1] if complete else None


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
                raise ValueError(
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


class SaturationWatch:
    """Warns when the gradient norm has been exactly 0 for ``patience`` steps in a row: the model no longer
    learns (e.g. SAMI's loss sits at log C after a learning rate that blew the logits up), and ``trained N
    steps`` alone would not say so. ``saturated`` counts such steps for the run's summary."""

    def __init__(self, patience: int = 3):
        self.patience, self.run, self.saturated, self.warned = patience, 0, 0, False

    def update(self, step: int, grad_norm: float, loss: float) -> bool:
        """Record one step; True when this call warned."""
        if grad_norm != 0.0:
            self.run = 0
            return False
        self.run += 1
        self.saturated += 1
        if self.warned or self.run < self.patience:
            return False
        self.warned = True
        logger.warning(
            "step %d: the gradient norm has been exactly 0 for %d steps (loss %.6g): training is saturated and "
            "nothing changes any more; lower the learning rate or check the data",
            step,
            self.run,
            loss,
        )
        return True


def _logged(path: Path, key: str) -> list[float]:
    """``key`` of every step in a metrics.jsonl, in step order (a resumed run's history)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if key in record:
            rows.append((record["step"], record[key]))
    return [value for _, value in sorted(rows)]


def check_paths(cfg: TrainConfig) -> None:
    """The data file and the output folder, checked before anything is loaded."""
    if not cfg.data:
        raise ValueError("no data file: set `data` in the config or pass --data")
    data = Path(cfg.data)
    if data.is_dir():
        raise ValueError(f"data: {data} is a folder; expected a JSONL file (docs/DATA.md)")
    if not data.is_file():
        raise FileNotFoundError(f"data file not found: {data}")
    out = Path(cfg.output_dir)
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"output_dir: {parent} is a file; expected a folder (or a path that does not exist)")
    from sami.models import check_reference

    check_reference(cfg.init_from or cfg.model.name_or_path)


def train(cfg: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Train a student with ``cfg.method`` on ``cfg.data``; writes checkpoints, metrics and ``model/`` under
    output_dir, which no other run may write meanwhile (``sami.locks``). SFT and DPO are TRL's
    (``sami.baselines``); SAMI is the loop below."""
    check_paths(cfg)
    with hold(cfg.output_dir, folder=True, what="this training run"):
        if cfg.method != "sami":
            from sami.baselines import train_baseline

            return train_baseline(cfg, resume=resume)
        return _train_sami(cfg, resume=resume)


def _train_sami(cfg: TrainConfig, *, resume: bool) -> TrainResult:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    out = Path(cfg.output_dir)
    # accelerate keeps one global state per process; one process may train several models in turn
    # (iterated SAMI, SFT then SAMI) with different precision, so that state is reset here. The process
    # group (PartialState) is kept.
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(
        # Without a GPU, processes started by `accelerate launch --multi_gpu` or torchrun still form a
        # gloo group; accelerate needs to be told to use the CPU for that.
        cpu=not torch.cuda.is_available(),
        mixed_precision=_precision(cfg),
        log_with=cfg.report_to or None,
        project_dir=str(out),
    )
    rank, world = accelerator.process_index, accelerator.num_processes
    if not resume and _latest_checkpoint(out) is not None:
        raise FileExistsError(
            f"{out} already holds checkpoints; pass --resume to continue, or choose another output_dir"
        )
    # every process verifies; the main one moves damaged checkpoints aside
    checkpoint = latest_intact(_complete_checkpoints(out), move_aside=accelerator.is_main_process) if resume else None
    if resume and checkpoint is None:
        logger.info("no checkpoint in %s: starting from step 0", out)
    # before anything loads: a resume with other settings or data would not run what the folder records
    segments = check_resume(cfg, checkpoint, out / "config.yaml") if checkpoint is not None else []
    data_hash = data_sha256(cfg)

    set_seed(cfg.seed)
    records = read_records(cfg.data)
    model, tokenizer = load_model(cfg.model, init_from=cfg.init_from)
    parent_config_differences(cfg)
    with count_cuts() as cuts:
        queries = encode_records(records, tokenizer, cfg)
    log_cuts(cuts, cfg)
    pad_id = tokenizer.pad_token_id
    steps = total_steps(cfg, len(queries), world)

    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=cfg.optim.lr,
        betas=tuple(cfg.optim.betas),
        eps=cfg.optim.eps,
        weight_decay=cfg.optim.weight_decay,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    reference = None
    if cfg.sami.ref_weight > 0:
        if cfg.model.finetune == "lora":
            reference = lora_reference(model, accelerator.unwrap_model(model), cfg, pad_id)
        else:  # before a checkpoint is loaded: the model is still the starting model
            read = queries_read(cfg, len(queries), steps, rank, world)
            with accelerator.autocast():
                reference = precomputed_reference(model, cfg, [queries[i] for i in read], pad_id)
            logger.info("reference: diagonal log-probs of %d queries under the starting model", len(read))
    # Not passed to prepare(): accelerate would step it once per process, and the schedule would then
    # depend on the process count. We step it once per optimiser step ourselves.
    scheduler = get_scheduler(
        cfg.optim.scheduler, optimizer, num_warmup_steps=cfg.optim.warmup_steps, num_training_steps=steps
    )
    accelerator.register_for_checkpointing(scheduler)

    start = 0
    metrics_path = out / "metrics.jsonl"
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        start = json.loads((checkpoint / STATE_FILE).read_text())["step"]
        if start > steps:
            raise ValueError(
                f"{checkpoint} is at step {start}, past this run's {steps} steps; raise max_steps or epochs"
            )
        logger.info("resumed from %s at step %d", checkpoint, start)
    if start < steps or not segments:
        segments.append(segment(cfg, start, steps, cuts))
    run_info = {"data_sha256": data_hash, "segments": segments}
    if accelerator.is_main_process:
        _truncate_metrics(metrics_path, start)
        save_yaml(cfg, out / "config.yaml")
    if cfg.report_to:
        flat = flatten(to_dict(cfg))  # trackers take scalars only
        accelerator.init_trackers(
            "sami", config={k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()}
        )

    history: list[dict] = []
    fluency = FluencyWatch(cfg.sami.fluency_margin, _logged(metrics_path, "diag_logprob") if start else None)
    saturation = SaturationWatch()
    bar = tqdm(total=steps, initial=start, desc="sami train", disable=not accelerator.is_local_main_process)
    model.train()
    for step in range(start, steps):
        t0 = time.perf_counter()
        losses, mats, refs, tokens = [], [], [], 0
        for micro in range(cfg.gradient_accumulation):
            idx = micro_batch(cfg, len(queries), step, micro, rank, world)
            batch = [queries[i] for i in idx]
            tokens += sum(q.num_tokens(cfg.sami.layout) for q in batch)
            last = micro == cfg.gradient_accumulation - 1
            with contextlib.nullcontext() if last else accelerator.no_sync(model):
                with accelerator.autocast():
                    loss, batch_mats, batch_refs = _micro_loss(model, cfg, batch, pad_id, reference)
                # Every process must agree to stop, or the others would wait forever in the next all-reduce.
                bad = accelerator.reduce((~torch.isfinite(loss.detach())).float().reshape(1), reduction="sum")
                if bad.item() > 0:
                    raise TrainingDiverged(
                        f"non-finite SAMI loss at step {step + 1} "
                        f"(this process's queries: {[records[i].id for i in idx]}); "
                        f"nothing of this step was applied; last checkpoint: {_latest_checkpoint(out)}"
                    )
                accelerator.backward(loss / cfg.gradient_accumulation)
            losses.append(loss.detach())
            mats.extend(batch_mats)
            refs.extend(batch_refs)
        # The prepared model's parameters: under FSDP they are not the objects the optimiser was built on.
        # An infinite limit measures the norm without clipping.
        norm = accelerator.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm or math.inf)
        grad_norm = float("nan") if norm is None else float(norm)  # DeepSpeed clips internally: None
        if norm is not None and not math.isfinite(grad_norm) and accelerator.mixed_precision != "fp16":
            raise TrainingDiverged(
                f"non-finite gradient norm at step {step + 1}; nothing of this step was applied; "
                f"last checkpoint: {_latest_checkpoint(out)}"
            )
        lr = scheduler.get_last_lr()[0]
        optimizer.step()  # under fp16 the grad scaler skips a step whose gradients overflowed
        if accelerator.optimizer_step_was_skipped:
            logger.warning("step %d skipped: fp16 gradients overflowed; the loss scale is lowered", step + 1)
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        seconds = time.perf_counter() - t0
        record = _step_metrics(accelerator, step + 1, losses, mats, tokens, seconds, lr, grad_norm, refs)
        history.append(record)
        if accelerator.is_main_process:
            fluency.update(step + 1, record["diag_logprob"])
            saturation.update(step + 1, grad_norm, record["loss"])
        if accelerator.is_main_process:
            with metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        if cfg.report_to:
            accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step + 1)
        bar.update(1)
        if (step + 1) % cfg.log_every == 0:
            bar.set_postfix(
                loss=f"{record['loss']:.4f}",
                mi=f"{record['mi_bound']:.3f}",
                diag=f"{record['diag_logprob']:.3f}",
                tok_s=f"{record['tokens_per_s']:.0f}",
            )
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < steps:
            _save_checkpoint(accelerator, out, step + 1, cfg, run_info)
    bar.close()
    if saturation.saturated:
        logger.warning("%d of this run's %d steps had a gradient norm of exactly 0 (saturated)",
                       saturation.saturated, steps - start)  # fmt: skip
    if start < steps:  # a finished run that is resumed again has nothing to save
        _save_checkpoint(accelerator, out, steps, cfg, run_info)
    model_dir = out / "model"
    save_model(accelerator, model, tokenizer, model_dir, cfg, steps, segments)
    accelerator.end_training()
    return TrainResult(cfg.method, out, model_dir, steps, history)


def _step_metrics(accelerator, step, losses, mats, tokens, seconds, lr, grad_norm, refs=None) -> dict:
    """Metrics of one optimiser step, averaged over micro-batches and processes.

    Per query: ``sami_metrics`` (``diag_logprob`` among them: the NLL anchor is ``-diag_logprob``), with
    ``ref_log_ratio`` and ``ref_penalty`` when reference diagonals ``refs`` (aligned with ``mats``) are given.
    """
    refs = refs or [None] * len(mats)
    per_query = [sami_metrics(m[b], None if r is None else r[b]) for m, r in zip(mats, refs, strict=True)
                 for b in range(m.shape[0])]  # fmt: skip
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


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep the metrics of steps up to ``step``: later ones are recomputed and would appear twice.

    A last line cut short by a crash is dropped too.
    """
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError):
            continue
    path.write_text("".join(line + "\n" for line in kept))


def _save_checkpoint(accelerator, out: Path, step: int, cfg: TrainConfig, run_info: dict) -> None:
    """Write step-N into a temporary folder with its manifest, then rename it: a checkpoint is complete or
    absent, and a failed save (a full disk) leaves no partial folder behind (``sami.checkpoints``)."""
    target = out / CHECKPOINTS / f"step-{step}"
    partial = out / CHECKPOINTS / f".step-{step}.partial"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    guarded_save(lambda: accelerator.save_state(str(partial)), partial, target.name, lambda: _latest_checkpoint(out))
    accelerator.wait_for_everyone()  # every process has written its RNG state before the folder is sealed
    if accelerator.is_main_process:

        def seal() -> None:
            save_yaml(cfg, partial / "config.yaml")
            (partial / STATE_FILE).write_text(json.dumps({"step": step}))
            write_manifest(partial, step=step, **run_info)

        guarded_save(seal, partial, target.name, lambda: _latest_checkpoint(out))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
        done = sorted((out / CHECKPOINTS).glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
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
        tokenizer.save_pretrained(model_dir)
        save_yaml(cfg, model_dir / "sami_config.yaml")
        (model_dir / "provenance.json").write_text(
            json.dumps(provenance(cfg, steps, accelerator.num_processes, segments), indent=2)
        )
    accelerator.wait_for_everyone()


def provenance(cfg: TrainConfig, steps: int, num_processes: int, segments: list[dict] | None = None) -> dict:
    """What produced a trained model: config hash, data file hash, model source, template, versions, and the
    run's segments (a start, and each resume that extended it: ``sami.checkpoints.segment``)."""
    import hashlib
    from importlib.metadata import PackageNotFoundError, version

    def package(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "method": cfg.method,
        "config_hash": config_hash(cfg),
        "data": {"path": cfg.data, "sha256": hashlib.sha256(Path(cfg.data).read_bytes()).hexdigest()},
        "model": {"name_or_path": cfg.model.name_or_path, "revision": cfg.model.revision, "init_from": cfg.init_from},
        "template": cfg.template,
        "seed": cfg.seed,
        "steps": steps,
        "segments": segments or [],
        "num_processes": num_processes,
        "versions": {
            p: package(p) for p in ("sami-align", "torch", "transformers", "accelerate", "peft", "trl", "datasets")
        },
    }


CHAIN_KEYS = ("method", "init_from", "output_dir")  # differ from the parent run in every chain


def parent_config_differences(cfg: TrainConfig) -> dict:
    """Settings in which this run differs from the run that trained ``init_from`` (logged; empty without one).

    A chain (SFT then DPO, SFT then SAMI) is only a fair comparison when the shared settings agree or
    differ on purpose; this says which.
    """
    from sami.models import _training_config, model_folder
    from sami.train_config import NOT_USED, compare_configs

    if not cfg.init_from:
        return {}
    parent = _training_config(model_folder(cfg.init_from))
    if parent is None:
        return {}
    names = (f"{cfg.init_from} ({parent.get('method')})", f"this run ({cfg.method})")
    diffs = compare_configs({names[0]: parent, names[1]: to_dict(cfg)})
    # A chain differs from its parent by construction in these, and in each method's own section; the log
    # names the rest (the returned dict keeps everything).
    shown = {k: v for k, v in diffs.items() if k not in CHAIN_KEYS and NOT_USED not in v.values()}
    if shown:
        logger.info("starting from %s; settings that differ:\n%s", cfg.init_from, format_differences(shown))
    else:
        logger.info("starting from %s; every shared setting is the same", cfg.init_from)
    return diffs


def format_differences(diffs: dict[str, dict]) -> str:
    """One line per setting: ``key: name=value, name=value``."""
    return "\n".join(
        f"  {key}: " + ", ".join(f"{name}={value!r}" for name, value in values.items()) for key, values in diffs.items()
    )
