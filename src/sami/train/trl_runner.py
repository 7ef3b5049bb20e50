"""``sami train --method sft|dpo|kto|orpo|simpo``: the methods TRL trains, run the same way.

Nothing of these methods is re-implemented here. This module turns our ``TrainConfig`` into TRL's config (so
the shared settings cannot drift from SAMI's: ``trl_args``), feeds TRL the rows of the method's recipe
(``sami.train.trl_recipes``: examples tokenised exactly as SAMI tokenises, ``sami.train.pairs``), and writes the same
output folder as SAMI: ``config.yaml``, ``metrics.jsonl``, ``checkpoints/`` and ``model/`` with
``provenance.json`` and ``sami_config.yaml``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import torch

from sami.core.config import load_yaml, save_yaml
from sami.core.errors import ConfigError
from sami.core.layout import CONFIG, MODEL, OPTIMIZER, RNG_STATE, SCHEDULER, TRAINING_ARGS
from sami.core.locks import is_main_rank
from sami.core.tokens import count_cuts
from sami.data.records import read_records
from sami.models.loading import load_model, lora_config
from sami.train.checkpoints import (
    CHECKPOINTS,
    MANIFEST,
    STATE_FILE,
    checkpoint_name,
    complete_checkpoints,
    data_sha256,
    latest_checkpoint,
    log_cuts,
    numbered_checkpoints,
    resume_point,
    save_failed,
    segment,
    write_manifest,
)
from sami.train.config import TrainConfig
from sami.train.registry import METHODS
from sami.train.runfolder import (
    METRICS,
    SaturationWatch,
    TrainingDiverged,
    TrainResult,
    append_metrics,
    model_written,
    parent_config_differences,
    read_metrics,
    record_model,
    reset_accelerate_state,
    resolve_precision,
    truncate_metrics,
)

logger = logging.getLogger(__name__)

DATASET = "dataset"  # the tokenised examples (and TRL's cache of reference log-probs)
# Optimiser steps between checkpoints when save_every is 0: never, except the one HF's Trainer writes at the end.
NEVER = 1_000_000_000


def trl_args(cfg: TrainConfig, precision: str):
    """TRL's config for ``cfg.method`` with every shared setting taken from ``cfg``.

    Settings TRL has but our config does not (its own logging cadence, gradient checkpointing by default,
    sequence truncation, bf16 by default) are set explicitly so that TRL's defaults never decide them; the
    method's recipe adds its own section's settings.
    """
    recipe = METHODS.lookup(cfg.method).recipe
    config_class = recipe.config()
    o = cfg.optim
    common = dict(
        output_dir=str(Path(cfg.output_dir) / CHECKPOINTS),
        seed=cfg.seed,
        data_seed=cfg.seed,
        learning_rate=o.lr,
        weight_decay=o.weight_decay,
        adam_beta1=o.betas[0],
        adam_beta2=o.betas[1],
        adam_epsilon=o.eps,
        optim="adamw_torch",
        lr_scheduler_type=o.scheduler,
        warmup_steps=o.warmup_steps,
        max_grad_norm=o.max_grad_norm,  # 0 disables clipping, as in the SAMI loop
        per_device_train_batch_size=cfg.queries_per_device,
        gradient_accumulation_steps=cfg.gradient_accumulation,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        logging_steps=1,  # metrics.jsonl has one line per optimiser step, as SAMI's
        save_strategy="steps",
        save_steps=cfg.save_every or NEVER,
        save_total_limit=cfg.keep_checkpoints,
        report_to=cfg.report_to or "none",
        max_length=None,  # examples arrive tokenised and cut by max_prompt_tokens / max_response_tokens
        dataset_num_proc=None,
        disable_tqdm=False,
    )
    # load_model already enabled checkpointing as model.gradient_checkpointing says; TRL's default (on) must
    # not override it. transformers >= 5.23 renamed the field and warns about the old name.
    renamed = "activation_checkpointing" in {f.name for f in dataclasses.fields(config_class)}
    prefix = "activation_checkpointing" if renamed else "gradient_checkpointing"
    common[prefix] = cfg.model.gradient_checkpointing
    common[f"{prefix}_kwargs"] = {"use_reentrant": False}
    return config_class(**{**common, **recipe.settings(cfg)})


def build_dataset(cfg: TrainConfig, records, tokenizer):
    """The tokenised ``datasets.Dataset`` TRL trains on: the rows of ``cfg.method``'s recipe, record by record
    (shuffled once, seeded, for a trainer that reads them in order)."""
    from datasets import Dataset

    recipe = METHODS.lookup(cfg.method).recipe
    dataset = Dataset.from_list([row for r in records for row in recipe.rows(r, cfg, tokenizer)])
    return dataset.shuffle(seed=cfg.seed).flatten_indices() if recipe.shuffle else dataset


def _shared_on_disk(dataset, path: Path):
    """The dataset saved under the output folder and read back, by every process.

    TRL caches precomputed reference log-probs next to the dataset's files; an in-memory dataset has
    none, so each process would look in its own temporary folder for the file the main process wrote.
    The saved copy is also the record of exactly which tokens the run trained on.
    """
    import shutil

    from accelerate.state import PartialState
    from datasets import load_from_disk

    state = PartialState()
    if state.is_main_process:
        shutil.rmtree(path, ignore_errors=True)
        dataset.save_to_disk(str(path))
    state.wait_for_everyone()
    return load_from_disk(str(path))


def _manifest_callback(cfg: TrainConfig, run_info: dict):
    from transformers import TrainerCallback

    class Manifests(TrainerCallback):
        """Each checkpoint the HF Trainer writes gets our config and a manifest (``sami.train.checkpoints``)."""

        def on_train_begin(self, args, state, control, **kwargs):
            run_info["segments"][-1]["total_steps"] = state.max_steps

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / checkpoint_name(state.global_step)
                save_yaml(cfg, folder / CONFIG)
                write_manifest(folder, step=state.global_step, **run_info)

    return Manifests()


def _metrics_callback(path: Path, fp16: bool = False):
    from transformers import TrainerCallback

    class MetricsFile(TrainerCallback):
        """One metrics.jsonl line per logged optimiser step, named as SAMI names them where they coincide.

        A non-finite loss (or gradient norm, except under fp16 where the grad scaler skips such steps)
        stops training here: the HF Trainer logs a step before it checkpoints it, so the last checkpoint on
        disk is a good one and no model is written.
        """

        saturation = SaturationWatch()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            grad_norm = logs.get("grad_norm")
            bad_norm = grad_norm is not None and not math.isfinite(grad_norm) and not fp16
            if not math.isfinite(logs["loss"]) or bad_norm:
                raise TrainingDiverged(
                    f"non-finite loss or gradient norm at step {state.global_step} ({logs['loss']}, {grad_norm}); "
                    f"last checkpoint: {latest_checkpoint(path.parent)}"
                )
            if not state.is_world_process_zero:
                return
            if grad_norm is not None:
                self.saturation.update(state.global_step, grad_norm, logs["loss"])
            record = {"step": state.global_step, "loss": logs["loss"], "lr": logs.get("learning_rate")}
            record["grad_norm"] = grad_norm
            for key, value in logs.items():
                if key not in ("loss", "learning_rate", "grad_norm"):
                    record[key.replace("/", "_")] = value
            append_metrics(path, record)

    return MetricsFile()


def _quiet_progress(trainer) -> None:
    """Keep the HF Trainer's progress bar but not the log dict it prints beside the bar at every step.

    Those metrics go to metrics.jsonl (``_metrics_callback``); on the terminal they would only bury the bar.
    """
    from transformers import ProgressCallback

    class ProgressBar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(ProgressBar())


def _unfinished_checkpoint_failed(err: BaseException, out: Path) -> None:
    """After a failure inside the HF Trainer: a checkpoint folder it left unfinished (no trainer_state.json)
    is removed, and the error says why the save failed ("no space left on ..." for a full disk)."""
    complete = set(complete_checkpoints(out))
    for folder in numbered_checkpoints(out):
        if folder not in complete:
            raise save_failed(err, folder, folder.name, latest_checkpoint(out)) from err


def make_trainer(cfg: TrainConfig, callbacks=()):
    """TRL's trainer for ``cfg.method``, with model, data and settings made as ``sami train`` makes them."""
    from accelerate.state import PartialState
    from accelerate.utils import set_seed

    reset_accelerate_state()  # the HF Trainer builds its own Accelerator
    PartialState(cpu=not torch.cuda.is_available())
    set_seed(cfg.seed)
    records = read_records(cfg.data)
    # TRL attaches the adapters (peft_config) and gradient checkpointing (args) itself. Given an adapter it
    # builds rather than a wrapped model, DPO's reference is that network with its adapters disabled.
    model, tokenizer = load_model(cfg.model, init_from=cfg.init_from, prepare=False)
    parent_config_differences(cfg)
    kwargs = dict(
        model=model,
        args=trl_args(cfg, resolve_precision(cfg)),
        train_dataset=_shared_on_disk(build_dataset(cfg, records, tokenizer), Path(cfg.output_dir) / DATASET),
        processing_class=tokenizer,
        callbacks=list(callbacks),
        peft_config=lora_config(cfg.model) if cfg.model.finetune == "lora" else None,
    )
    recipe = METHODS.lookup(cfg.method).recipe
    if recipe.frozen_reference(cfg):
        kwargs["ref_model"], _ = load_model(cfg.model, init_from=cfg.init_from, prepare=False)  # the starting model
    trainer = recipe.trainer()(**kwargs)
    _quiet_progress(trainer)
    return trainer


def _finished(cfg: TrainConfig, checkpoint: Path, start: int) -> bool:
    """Whether ``checkpoint`` already is the end of the run ``cfg`` asks for.

    The HF Trainer resumed from its final checkpoint trains one step more than asked, so a finished run
    must not be handed to it. With ``epochs`` (no ``max_steps``) the length is the one the checkpoint's run
    was given, when this run asks for the same."""
    if cfg.max_steps:
        if start > cfg.max_steps:
            raise ConfigError(
                f"{checkpoint} is at step {start}, past this run's {cfg.max_steps} steps; raise max_steps"
            )
        return start == cfg.max_steps
    saved = load_yaml(checkpoint / CONFIG) if (checkpoint / CONFIG).is_file() else {}
    same_length = saved.get("max_steps") is None and saved.get("epochs") == cfg.epochs
    total = json.loads((checkpoint / STATE_FILE).read_text()).get("max_steps")
    return same_length and isinstance(total, int) and start >= total


# What a checkpoint holds beside the model and tokenizer files that ``trainer.save_model`` wrote into it.
TRAINER_STATE_FILES = (STATE_FILE, OPTIMIZER, SCHEDULER, TRAINING_ARGS, CONFIG, MANIFEST)


def _finished_run(cfg: TrainConfig, checkpoint: Path, steps: int, segments: list[dict]) -> TrainResult:
    """A resumed run that has nothing left to train: its ``model/`` as it is, or, for a run killed after its
    final checkpoint, written from that checkpoint's model files (the HF Trainer saved them there with the
    same ``save_model``), without loading a model."""
    import shutil

    from accelerate.state import PartialState

    out = Path(cfg.output_dir)
    model_dir = out / MODEL
    logger.info("%s is at step %d, the end of this run: nothing to train", checkpoint, steps)
    state = PartialState()
    if state.is_main_process and not model_written(model_dir, steps):
        partial = out / ".model.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(
            checkpoint,
            partial,
            ignore=lambda _, names: [n for n in names if n in TRAINER_STATE_FILES or n.startswith(RNG_STATE)],
        )
        record_model(partial, cfg, steps, state.num_processes, segments)
        shutil.rmtree(model_dir, ignore_errors=True)
        partial.rename(model_dir)
    state.wait_for_everyone()
    return TrainResult(cfg.method, out, model_dir, steps, [])


def train_baseline(cfg: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Train ``cfg.method`` on ``cfg.data`` with TRL; the output folder is laid out as SAMI's."""
    from accelerate.state import PartialState

    out = Path(cfg.output_dir)
    # before the model loads: a resume with other settings or data would not run what the folder records
    checkpoint, start, segments = resume_point(cfg, resume, is_main_rank())
    if checkpoint is not None and _finished(cfg, checkpoint, start):
        return _finished_run(cfg, checkpoint, start, segments)
    segments.append(segment(cfg, start, cfg.max_steps or 0))
    metrics_path = out / METRICS
    callbacks = [
        _metrics_callback(metrics_path, fp16=resolve_precision(cfg) == "fp16"),
        _manifest_callback(cfg, {"data_sha256": data_sha256(cfg), "segments": segments}),
    ]
    with count_cuts() as cuts:
        trainer = make_trainer(cfg, callbacks=callbacks)
    log_cuts(cuts, cfg)
    segments[-1] = segment(cfg, start, cfg.max_steps or 0, cuts)
    tokenizer = trainer.processing_class
    state = PartialState()
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        truncate_metrics(metrics_path, start)
        save_yaml(cfg, out / CONFIG)
    state.wait_for_everyone()
    try:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except Exception as err:  # a full disk reaches here as OSError, torch's RuntimeError or a SafetensorError
        _unfinished_checkpoint_failed(err, out)
        raise

    model_dir = out / MODEL
    steps = trainer.state.global_step
    trainer.save_model(str(model_dir))
    if trainer.is_world_process_zero():
        record_model(model_dir, cfg, steps, state.num_processes, segments, tokenizer)
    state.wait_for_everyone()
    history = [m for m in read_metrics(metrics_path) if m["step"] > start]
    return TrainResult(cfg.method, out, model_dir, steps, history)
