"""The ``sami`` command. Subcommands mirror the pipeline's stages; each parses into the stage's config
dataclass and calls the same function a Python user would."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from sami import __version__
from sami.train_config import TRAIN_METHODS


def _train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a student model on a SAMI data file (SAMI, or the SFT and DPO baselines)",
        description="Train a student on a JSONL data file (docs/DATA.md) with SAMI or, through TRL, with the SFT "
        "and DPO baselines; all three read the same records, templates and shared settings. Settings come from "
        "--config, then from the options below, then from -o/--set overrides; the resolved config is written to "
        "OUTPUT_DIR/config.yaml.",
    )
    p.add_argument("--config", help="YAML config (see configs/); unknown keys are errors")
    p.add_argument(
        "--method",
        choices=TRAIN_METHODS,
        help="training method (default: sami); its section of the config (sami:, sft:, dpo:) holds what only it has",
    )
    p.add_argument("--data", help="training data, one JSON record per query")
    p.add_argument("--model", help="model alias (smollm2-135m), hub id, or local folder")
    p.add_argument("--output-dir", help="where checkpoints, metrics and the final model go")
    p.add_argument(
        "--init-from",
        help="start from a trained model: OUTPUT_DIR or OUTPUT_DIR/model of any method (a LoRA adapter is merged "
        "into its base), or a checkpoints/checkpoint-N folder of an SFT or DPO run",
    )
    p.add_argument("--max-steps", type=int, help="optimiser steps (overrides epochs)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in OUTPUT_DIR")
    p.add_argument(
        "-o",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field, e.g. -o optim.lr=2e-5 -o model.finetune=lora (repeatable)",
    )


def _inspect_parsers(sub) -> None:
    p = sub.add_parser(
        "principles",
        help="list the principle library",
        description="Print the built-in principles (and those of your YAML files) with their three phrasings, "
        "by category, and the verifiable principles with their checkers.",
    )
    p.add_argument("--category", help="only this category's principles")
    p.add_argument("--library", action="append", default=[], metavar="FILE.yaml", help="your principles (repeatable)")
    p = sub.add_parser(
        "check-data",
        help="validate a data file and summarise it",
        description="Validate every record of a JSONL data file (docs/DATA.md); print counts or the first error "
        "with its file, line and field.",
    )
    p.add_argument("path", help="the JSONL file")


def _compare_parser(sub) -> None:
    p = sub.add_parser(
        "compare-configs",
        help="print every setting that differs between trained runs",
        description="Compare the resolved configs of trained runs (OUTPUT_DIR, OUTPUT_DIR/model or a config YAML) "
        "and print every setting that is not the same in all of them; a method's own section (sami:, sft:, dpo:) "
        "reads '(not used)' in runs of the other methods.",
    )
    p.add_argument("paths", nargs="+", metavar="RUN", help="run folders, model folders or config files")


def _run_config(path: str) -> dict:
    from pathlib import Path

    from sami.config import load_yaml

    p = Path(path)
    for candidate in (p, p / "config.yaml", p / "sami_config.yaml", p / "model" / "sami_config.yaml"):
        if candidate.is_file():
            return load_yaml(candidate)
    raise FileNotFoundError(f"{path}: no config.yaml or sami_config.yaml")


def _compare(paths: list[str]) -> None:
    from sami.train import format_differences
    from sami.train_config import compare_configs

    diffs = compare_configs({p: _run_config(p) for p in paths})
    if not diffs:
        print(f"the {len(paths)} configs agree on every setting")
        return
    print(f"{len(diffs)} setting(s) differ:")
    print(format_differences(diffs))


def _print_principles(args: argparse.Namespace) -> None:
    from sami.principles import load_library

    library = load_library(args.library)
    categories = [args.category] if args.category else sorted(library.categories)
    for category in categories:
        print(f"[{category}]")
        for p in library.for_category(category):
            print(f"  {p.name}\n    strong:     {p.strong}\n    weak:       {p.weak}\n    antithesis: {p.antithesis}")
    if not args.category:
        print("[verifiable]")
        for p in library.verifiable:
            print(f"  {p.name}: {p.strong}  (checker {p.checker.name} {p.checker.params})")
            print(
                f"    antithesis: {p.antithesis}  (checker {p.antithesis_checker.name} {p.antithesis_checker.params})"
            )


def _check_data(path: str) -> None:
    from collections import Counter

    from sami.data import read_records

    records = read_records(path)
    sizes = Counter(len(r.constitutions) for r in records)
    categories = Counter(r.category for r in records)
    free_text = sum(c.items[0].principle is None for r in records for c in r.constitutions)
    print(f"{path}: {len(records)} valid records")
    print("  constitutions per record: " + ", ".join(f"C={c}: {n}" for c, n in sorted(sizes.items())))
    print("  categories: " + ", ".join(f"{c}: {n}" for c, n in sorted(categories.items())))
    total = sum(len(r.constitutions) for r in records)
    print(f"  constitutions as free text: {free_text} of {total}")


def build_train_config(args: argparse.Namespace):
    from sami.config import from_dict, load_yaml, parse_override, set_path
    from sami.train_config import TrainConfig

    data = load_yaml(args.config) if args.config else {}
    for key, value in (
        ("method", args.method),
        ("data", args.data),
        ("model.name_or_path", args.model),
        ("output_dir", args.output_dir),
        ("init_from", args.init_from),
        ("max_steps", args.max_steps),
    ):
        if value is not None:
            set_path(data, key, value)
    for text in args.overrides:
        set_path(data, *parse_override(text))
    source = args.config
    if args.config and (args.overrides or any(v is not None for v in (args.method, args.data, args.model))):
        source = f"{args.config} with command-line options"
    return from_dict(TrainConfig, data, source=source)


def _print_summary(result) -> None:
    import json

    path = result.output_dir / "metrics.jsonl"
    metrics = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    if metrics:
        for m in (metrics[0], metrics[-1]):
            print(f"step {m['step']:>5}: {_step_line(result.method, m)} (on that step's training examples)")
    print(
        f"trained {result.steps} steps; metrics in {result.output_dir / 'metrics.jsonl'}; model in {result.model_dir}"
    )


def _step_line(method: str, m: dict) -> str:
    """The headline numbers of one step, per method (metrics.jsonl keys, docs/DATA.md)."""
    if method == "sami":
        return (
            f"SAMI loss {m['loss']:.4f}, MI bound {m['mi_bound']:.4f} nats, "
            f"row/col accuracy {m['row_accuracy']:.2f}/{m['col_accuracy']:.2f}"
        )
    if method == "dpo":
        return (
            f"DPO loss {m['loss']:.4f}, reward accuracy {m.get('rewards_accuracies', float('nan')):.2f}, "
            f"reward margin {m.get('rewards_margins', float('nan')):.4f}"
        )
    return f"SFT loss {m['loss']:.4f}, token accuracy {m.get('mean_token_accuracy', float('nan')):.2f}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sami", description="Align language models to written principles with SAMI.")
    parser.add_argument("--version", action="version", version=f"sami-align {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _inspect_parsers(sub)
    _compare_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        # transformers renamed its gradient-checkpointing methods; peft still calls the old names.
        warnings.filterwarnings(
            "ignore", message=r".*(is_)?gradient_checkpointing.* is deprecated", category=FutureWarning
        )
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        # accelerate reports every file of every checkpoint, and warns that tied embeddings are stored
        # once (they are re-tied on load); the progress bar and our own messages say what matters.
        logging.getLogger("accelerate").setLevel(logging.ERROR)

    from sami.models import EmbeddedModelMissing
    from sami.train import TrainingDiverged

    try:
        if args.command == "principles":
            _print_principles(args)
        elif args.command == "check-data":
            _check_data(args.path)
        elif args.command == "compare-configs":
            _compare(args.paths)
        elif args.command == "train":
            from accelerate import PartialState

            from sami.train import train

            cfg = build_train_config(args)
            result = train(cfg, resume=args.resume)
            if PartialState().is_main_process:
                _print_summary(result)
    except (ValueError, KeyError, EmbeddedModelMissing, FileNotFoundError, FileExistsError, TrainingDiverged) as err:
        # ConfigError and DataError are ValueErrors; they name the file, line or key at fault.
        print(f"sami: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
