"""The ``sami`` command. Subcommands mirror the pipeline's stages; each parses into the stage's config
dataclass and calls the same function a Python user would."""

from __future__ import annotations

import argparse
import errno
import logging
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path

import sami
from sami.core.errors import InputMissing
from sami.core.layout import CONFIG, MODEL, MODEL_CONFIG, PAGE, REPORT, REPORT_DIR


def _train_parser(sub) -> None:
    from sami.train.registry import METHODS

    p = sub.add_parser(
        "train",
        help="train a student model on a SAMI data file (SAMI, or SFT, DPO, KTO, ORPO, SimPO through TRL)",
        description=textwrap.fill(
            "Train a student on a JSONL data file (docs/DATA.md) with SAMI or, through TRL, with SFT, DPO (and its "
            "loss variants, dpo.loss_type), KTO, ORPO or SimPO; all read the same records, templates and shared "
            "settings. Settings come from --config, then from the options below, then from -o/--set overrides; the "
            "resolved config is written to OUTPUT_DIR/config.yaml.",
            79,
        ),
        epilog="methods (--method; a plugin's too):\n"
        + "\n".join(f"  {m.name:<8} {m.help}" for m in (METHODS.lookup(n) for n in METHODS.names())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="YAML config (see configs/); unknown keys are errors")
    p.add_argument(
        "--method",
        choices=METHODS.names(),
        help="training method (default: sami); its section of the config (sami:, sft:, dpo:, kto:, ...; "
        "sections.NAME: for a method a plugin adds) holds what only it has",
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
    _overrides_arg(p, "-o optim.lr=2e-5 -o model.finetune=lora")


def _overrides_arg(p, example: str = "-o sampling.temperature=0.4") -> None:
    p.add_argument(
        "-o",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override any config field, e.g. {example} (repeatable)",
    )


def _generate_parsers(sub) -> None:
    from sami.backends.base import BACKENDS

    p = sub.add_parser(
        "generate",
        help="have a teacher write constitution-conditioned responses for a prompt pool",
        description="For every query of the pool, draw C constitutions from its category's principles and let the "
        "teacher answer under each; filtered records go to OUT's .filtered.jsonl with their reason. Resumable: a "
        "rerun generates only the queries not yet in OUT. Settings: --config, then options, then -o overrides.",
    )
    p.add_argument("--config", help="YAML config (see configs/); unknown keys are errors")
    p.add_argument("--teacher", help="teacher model: alias, hub id or folder (or the endpoint's model name)")
    kinds = "; ".join(f"{k.name}: {k.help}" if k.help else k.name for k in BACKENDS.values())
    p.add_argument("--backend", choices=tuple(BACKENDS), help=f"how the teacher runs ({kinds})")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint (with --backend openai); key from $OPENAI_API_KEY")
    p.add_argument(
        "--pool",
        action="append",
        metavar="SPEC",
        help="prompt source, repeatable: builtin[,categories=math+coding] | file:PATH,text_field=F,category=C | "
        "hf:NAME,subset=S,split=train,text_field=F,category=C | reasoning_gym:gsm_symbolic,size=N | multi-task-v1; "
        "any source takes max=N",
    )
    p.add_argument("--num-queries", type=int, help="use the first N queries of the shuffled pool")
    p.add_argument("--out", help="output JSONL (default runs/generate/data/train.jsonl)")
    _overrides_arg(p)
    p = sub.add_parser(
        "iterate",
        help="alternate generation and SAMI training for several rounds",
        description="K rounds of (generate on fresh queries with the current student, or a fixed teacher; train "
        "from the previous round's weights). Each round's data, checkpoints and metrics live in "
        "OUTPUT_DIR/round-K/. A rerun skips finished rounds.",
    )
    p.add_argument("--config", help="YAML config with rounds, queries_per_round, generate: and train: sections")
    p.add_argument("--rounds", type=int)
    p.add_argument("--output-dir")
    _overrides_arg(p)


def _apply_overrides(data: dict, pairs, overrides) -> dict:
    from sami.core.config import parse_override, set_path

    for key, value in pairs:
        if value is not None:
            set_path(data, key, value)
    for text in overrides:
        set_path(data, *parse_override(text))
    return data


def build_generate_config(args: argparse.Namespace):
    from sami.core.config import from_dict, load_yaml, to_dict
    from sami.data.pools import parse_pool_spec
    from sami.generate.run import GenerateConfig

    data = load_yaml(args.config) if args.config else {}
    if args.pool:
        data.setdefault("pool", {})["sources"] = [to_dict(parse_pool_spec(s)) for s in args.pool]
    pairs = [
        ("teacher.model", args.teacher),
        ("teacher.kind", args.backend),
        ("teacher.base_url", args.base_url),
        ("num_queries", args.num_queries),
        ("output", args.out),
    ]
    _apply_overrides(data, pairs, args.overrides)
    return from_dict(GenerateConfig, data, source=args.config or "command line")


def _print_generate_summary(result) -> None:
    rejected = sum(result.rejected.values())
    print(
        f"wrote {result.written} records to {result.output} ({result.already_done} already there); "
        f"{rejected} filtered out" + (f" -> {result.rejected_path}" if rejected else "")
    )
    for reason, n in sorted(result.rejected.items()):
        print(f"  filtered, {reason}: {n}")
    for reason, n in sorted(result.pool_dropped.items()):
        print(f"  left out of the pool, {reason}: {n}")
    if result.tokens:
        print(f"{result.tokens} tokens in {result.seconds:.1f} s ({result.tokens / result.seconds:.1f} tokens/s)")


def _run_iterate(args: argparse.Namespace) -> None:
    from sami.core.config import from_dict, load_yaml
    from sami.study.iterate import IterateConfig, iterate

    data = load_yaml(args.config) if args.config else {}
    _apply_overrides(data, [("rounds", args.rounds), ("output_dir", args.output_dir)], args.overrides)
    cfg = from_dict(IterateConfig, data, source=args.config or "command line")
    for r in iterate(cfg):
        if r.train is None:
            print(f"round {r.round}: already finished, model in {r.model_dir}")
        else:
            last = r.train.metrics[-1] if r.train.metrics else {}
            loss = f", last SAMI loss {last['loss']:.4f}" if "loss" in last else ""
            print(f"round {r.round}: {r.data.written} new records, {r.train.steps} steps{loss}; model in {r.model_dir}")


def _inspect_parsers(sub) -> None:
    p = sub.add_parser(
        "principles",
        help="list the principle library",
        description="Print the built-in principles (and those of your YAML files) in their strong and weak "
        "phrasings with their antitheses, by category, and the verifiable principles with their checkers.",
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


def _eval_parser(sub) -> None:
    from sami.eval.run import SUITES

    p = sub.add_parser(
        "eval",
        help=f"evaluate checkpoints ({', '.join(SUITES)})",
        description="Evaluate one or more checkpoints. Every answer and judge verdict (raw text too) is appended to "
        "JSONL files under OUTPUT_DIR/SUITE as soon as it exists, so a rerun resumes without generating or "
        "judging again; metrics are computed from those files (--recompute does only that). Settings come "
        "from --config, then the options below, then -o/--set overrides. See docs/EVALUATION.md.",
    )
    suites = p.add_subparsers(dest="suite", required=True)
    for suite in SUITES.values():
        s = suites.add_parser(suite.name, help=suite.help, description=suite.help + ".")
        s.add_argument("models", nargs="*", metavar="[NAME=]MODEL", help="checkpoints: alias, hub id or folder")
        s.add_argument("--config", help="YAML config (e.g. configs/eval/paper.yaml); unknown keys are errors")
        s.add_argument("--output-dir", help="where results go (default runs/eval)")
        s.add_argument("--recompute", action="store_true", help="only recompute and print metrics from stored files")
        _overrides_arg(s, "-o backend.batch_size=16 -o judge.kind=openai")
        for option in suite.options:
            choices = option.choices() if option.choices else None
            s.add_argument(option.flag, dest=option.dest, type=option.type, choices=choices, help=option.help_text())
    _import_parser(suites)


# ``sami eval import`` options naming a table's column for a field (``sami.eval.imports.FIELDS``)
IMPORT_COLUMNS = {
    "--question-col": "question",
    "--response-col": "response",
    "--model-col": "model",
    "--id-col": "question_id",
    "--category-col": "category",
    "--constitution-col": "constitution",
    "--turn-col": "turn",
}


def _import_parser(suites) -> None:
    from sami.eval.imports import FIELDS, FORMATS

    s = suites.add_parser(
        "import",
        help="read answers and judgments made by other tools (FastChat, AlpacaEval, tables) into an eval folder",
        description="Read answers and pairwise judgments made elsewhere into OUTPUT_DIR/mtbench, as sami eval mtbench "
        "writes its own, and print the MT-Bench tables; --recompute, the report and the model-free judges then work "
        "on them. Each file's format is recognised from its columns. See docs/EVALUATION.md.",
    )
    s.add_argument("files", nargs="+", metavar="FILE", help="question, answer and judgment files (JSONL, JSON, CSV)")
    s.add_argument("--output-dir", help="the eval folder (default runs/eval)")
    s.add_argument("--format", choices=tuple(FORMATS), help="read every file in this format instead of recognising it")
    for flag, name in IMPORT_COLUMNS.items():
        s.add_argument(flag, metavar="COLUMN", help=f"a table's column holding the {name.replace('_', ' ')}")
    s.add_argument(
        "--col",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help=f"a table's column for any field, of: {', '.join(FIELDS)} (repeatable)",
    )
    s.add_argument("--model", help="the model of an answers table without a model column (default: the file name)")
    s.add_argument("--judge", help="the name of the imported judge (default: the file's own, else the file name)")
    s.add_argument("--questions", help="texts and categories of questions the files lack: package, a file, hub:ID")
    _overrides_arg(s, "-o 'mtbench.principles=[lowercase,bullet_list]' (settings of the eval config written)")


def build_import_config(args: argparse.Namespace):
    from sami.core.config import ConfigError, from_dict
    from sami.eval.imports import ImportConfig

    columns = {name: getattr(args, flag[2:].replace("-", "_")) for flag, name in IMPORT_COLUMNS.items()}
    columns = {k: v for k, v in columns.items() if v is not None}
    for text in args.col:
        name, sep, column = text.partition("=")
        if not sep or not column:
            raise ConfigError(f"--col {text!r}: expected FIELD=COLUMN")
        columns[name.strip()] = column.strip()
    data = {
        "files": list(args.files),
        "columns": columns,
        "format": args.format,
        "model": args.model,
        "judge": args.judge,
        "questions": args.questions,
        "overrides": list(args.overrides),
    }
    if args.output_dir is not None:
        data["output_dir"] = args.output_dir
    return from_dict(ImportConfig, data, source="sami eval import")


def _run_import(args: argparse.Namespace) -> dict:
    from sami.eval.imports import import_files, mirrored_note
    from sami.eval.mtbench.printing import print_mtbench

    eval_cfg, metrics = import_files(build_import_config(args))
    root = Path(eval_cfg.output_dir) / "mtbench"
    answers = sum(a["count"] for a in metrics["answers"].values())
    print(
        f"imported {answers} answers of {len(metrics['answers'])} models and the verdicts of "
        f"{len(eval_cfg.mtbench.imported_judges)} judge(s) into {root}"
    )
    print_mtbench(metrics)
    for line in mirrored_note(metrics):
        print(line)
    print(f"recompute: sami eval mtbench --config {root / CONFIG} --recompute")
    from sami.study.view import write_eval_page

    page = write_eval_page(Path(eval_cfg.output_dir), {"mtbench": eval_cfg}, {"mtbench": metrics})
    print(f"page: {page}")
    return metrics


def build_eval_config(args: argparse.Namespace):
    from sami.core.config import from_dict, load_yaml
    from sami.eval.config import EvalConfig
    from sami.eval.run import SUITES

    data = load_yaml(args.config) if args.config else {}
    options = [("output_dir", args.output_dir)]
    for option in SUITES[args.suite].options:
        value = getattr(args, option.dest)
        if value is not None:
            options += option.settings(value)
    if args.models:
        options.append(("models", list(args.models)))
    _apply_overrides(data, options, args.overrides)
    return from_dict(EvalConfig, data, source=args.config or "command line")


def run_eval(args: argparse.Namespace) -> dict:
    from sami.eval.run import compute, run, show

    if args.suite == "import":
        return _run_import(args)
    cfg = build_eval_config(args)
    metrics = compute(args.suite, cfg) if args.recompute else run(args.suite, cfg)
    show(args.suite, metrics)
    return metrics


def _experiment_parser(sub) -> None:
    p = sub.add_parser(
        "experiment",
        help="run a whole study (generation, training, evaluation, report) from one config",
        description="Run every stage of a study into OUTPUT_DIR and write OUTPUT_DIR/report/report.md. A rerun "
        "skips finished stages, resumes an interrupted one, and reruns a stage whose settings changed together "
        "with the stages that read it. See configs/quickstart.yaml.",
    )
    p.add_argument("config", help="experiment YAML (configs/quickstart.yaml, configs/mtbench-llama31-8b.yaml, ...)")
    p.add_argument(
        "--only", action="append", metavar="STAGE", help="run only this stage (repeatable), e.g. mtbench/sft"
    )
    p.add_argument("--list", action="store_true", help="list the stages and whether each is finished, then stop")
    _overrides_arg(p)


def _run_experiment(args: argparse.Namespace) -> None:
    from sami.study.experiment import (
        load_experiment_config,
        plan_experiment,
        read_summary,
        report_files_lost,
        run_experiment,
    )
    from sami.study.stages import plan, read_marker

    cfg = load_experiment_config(args.config, args.overrides)
    if args.list:
        for stage in plan(plan_experiment(cfg)[0]):
            marker = read_marker(stage.folder)
            state = "missing" if not marker else "done" if marker["fingerprint"] == stage.fingerprint else "stale"
            if state == "done" and stage.name == "report" and report_files_lost(stage.folder):
                state = "missing"  # its files are gone: the next run writes them again
            print(f"{stage.name:<24} {state:<8} {stage.folder}")
        return
    outcomes = run_experiment(cfg, only=args.only)
    for o in outcomes:
        took = f" ({o.seconds / 60:.1f} min)" if o.status != "skipped" else ""
        print(f"{o.name:<24} {o.status}{took}")
    report = Path(cfg.output_dir) / REPORT_DIR
    if (report / REPORT).is_file() and (not args.only or "report" in args.only):
        from sami.study.findings import headline

        for line in headline(read_summary(report)):
            print(line)
        print(f"report: {report / REPORT} (with every setting that differs between the methods)")
        print(f"page: {report / PAGE}")


def _view_parser(sub) -> None:
    p = sub.add_parser(
        "view",
        help="write the page (index.html) of a run or evaluation folder from its stored files",
        description="Write FOLDER/report/index.html, one self-contained page with every answer, verdict, check and "
        "curve beside the report's numbers, from the stored files only (nothing is generated or judged), and "
        "print its path. FOLDER is a run of sami experiment, an evaluation's output_dir (sami eval, sami eval "
        "import) or one suite's folder in it.",
    )
    p.add_argument("folder", help="run folder, evaluation folder or suite folder")
    p.add_argument("--serve", action="store_true", help="then serve it on 127.0.0.1 on a free port until Ctrl-C")
    p.add_argument("--port", type=int, default=None, help="with --serve: this port instead of a free one")


def _run_view(args: argparse.Namespace) -> None:
    from sami.core.errors import ConfigError
    from sami.study.view import open_server, serve, view

    if args.port is not None and not args.serve:
        raise ConfigError(f"--port {args.port} is where --serve serves the page; add --serve, or leave --port out")
    server = open_server(args.port or 0) if args.serve else None  # a port it cannot have is refused before the page
    try:
        page = view(args.folder)
    except BaseException:
        if server is not None:
            server.server_close()
        raise
    print(f"page: {page}", flush=True)
    if server is not None:
        serve(page, server)


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

    from sami.core.config import load_yaml

    p = Path(path)
    for candidate in (p, p / CONFIG, p / MODEL_CONFIG, p / MODEL / MODEL_CONFIG):
        if candidate.is_file():
            return load_yaml(candidate)
    raise InputMissing(f"{path}: no config.yaml or sami_config.yaml")


def _compare(paths: list[str]) -> None:
    from sami.core.config import ConfigError
    from sami.train.config import compare_configs
    from sami.train.runfolder import format_differences

    if len(set(paths)) < 2:
        raise ConfigError(f"compare-configs compares two or more runs; got {len(set(paths))} ({', '.join(paths)})")
    diffs = compare_configs({p: _run_config(p) for p in paths})
    if not diffs:
        print(f"the {len(paths)} configs agree on every setting")
        return
    print(f"{len(diffs)} setting(s) differ:")
    print(format_differences(diffs))


def _print_principles(args: argparse.Namespace) -> None:
    from sami.data.principles import load_library

    library = load_library(args.library)
    categories = [args.category] if args.category else sorted(library.categories)
    for category in categories:
        print(f"[{category}]")
        for p in library.for_category(category):
            print(f"  {p.name}\n    strong:     {p.strong}\n    weak:       {p.weak}\n    antithesis: {p.antithesis}")
    if not args.category:
        categorised = {name for names in library.categories.values() for name in names}
        alone = [p for p in library.principles.values() if p.name not in categorised and not p.verifiable]
        if alone:  # usable by name (constitutions.principles, mtbench.principles), listed nowhere else
            print("[in no category]")
            for p in alone:
                print(
                    f"  {p.name}\n    strong:     {p.strong}\n    weak:       {p.weak}\n    antithesis: {p.antithesis}"
                )
        print("[verifiable]")
        for p in library.verifiable:
            print(f"  {p.name}: {p.strong}  (checker {p.checker.name} {p.checker.params})")
            anti = p.antithesis_checker
            print(f"    antithesis: {p.antithesis}" + (f"  (checker {anti.name} {anti.params})" if anti else ""))


def _check_data(path: str) -> None:
    from collections import Counter

    from sami.data.records import read_records

    records = read_records(path)
    sizes = Counter(len(r.constitutions) for r in records)
    categories = Counter(r.category for r in records)
    free_text = sum(c.items[0].principle is None for r in records for c in r.constitutions)
    print(f"{path}: {len(records)} valid records")
    print("  constitutions per record: " + ", ".join(f"C={c}: {n}" for c, n in sorted(sizes.items())))
    print("  categories: " + ", ".join(f"{c}: {n}" for c, n in sorted(categories.items())))
    total = sum(len(r.constitutions) for r in records)
    print(f"  constitutions as free text: {free_text} of {total}")
    identical = [r.id for r in records if len({t.strip() for t in r.responses}) < len(r.responses)]
    if identical:  # valid, but SAMI cannot tell such responses apart; generate's default filter drops them
        print(
            f"  warning: {len(identical)} record(s) have two identical responses, which `sami generate` filters "
            f"by default (filters.identical): {', '.join(identical[:5])}{' ...' if len(identical) > 5 else ''}"
        )


def build_train_config(args: argparse.Namespace):
    from sami.core.config import from_dict, load_yaml
    from sami.train.config import TrainConfig

    data = load_yaml(args.config) if args.config else {}
    options = [
        ("method", args.method),
        ("data", args.data),
        ("model.name_or_path", args.model),
        ("output_dir", args.output_dir),
        ("init_from", args.init_from),
        ("max_steps", args.max_steps),
    ]
    _apply_overrides(data, options, args.overrides)
    source = args.config
    if args.config and (args.overrides or any(v is not None for v in (args.method, args.data, args.model))):
        source = f"{args.config} with command-line options"
    return from_dict(TrainConfig, data, source=source)


def _print_summary(result) -> None:
    from sami.core.layout import METRICS
    from sami.train.runfolder import read_metrics

    metrics = read_metrics(result.output_dir / METRICS)
    if metrics:
        for m in (metrics[0], metrics[-1]):
            print(f"step {m['step']:>5}: {_step_line(result.method, m)} (on that step's training examples)")
    print(f"trained {result.steps} steps; metrics in {result.output_dir / METRICS}; model in {result.model_dir}")


def _step_line(method: str, m: dict) -> str:
    """The headline numbers of one step, as the method's entry words them (metrics.jsonl keys, docs/DATA.md)."""
    from sami.train.methods import method_entry

    return method_entry(method).step_line(m)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sami", description="Align language models to written principles with SAMI.")
    parser.add_argument("--version", action="version", version=f"sami-align {sami.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="on an error, show the traceback as well")
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, so that the checkers, judges, suites, backends, training methods and principles "
        "it registers "
        "can be used (repeatable, anywhere on the line; see docs/EVALUATION.md); installed sami.plugins entry "
        "points always load",
    )  # listed here for --help; main takes these out and loads them before this parser is built
    sub = parser.add_subparsers(dest="command", required=True)
    _generate_parsers(sub)
    _train_parser(sub)
    _inspect_parsers(sub)
    _eval_parser(sub)
    _compare_parser(sub)
    _experiment_parser(sub)
    _view_parser(sub)
    return parser


def _quiet_library_progress() -> None:
    """One progress bar per stage: no bars for loading weights (transformers) or for saving and mapping a
    dataset (datasets, TRL's tokenisation); training, generation and evaluation keep theirs."""
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def _take_plugins(argv: list[str] | None) -> tuple[list[str], list[str]]:
    """The ``--plugin`` modules (given anywhere on the line) and the arguments without them: the plugins load
    before the parser is built, since they add choices to it."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--plugin", action="append", default=[])
    known, rest = pre.parse_known_args(argv)
    return known.plugin, rest


def main(argv: list[str] | None = None) -> int:
    from sami.plugins import load_plugins

    plugins, argv = _take_plugins(argv)
    try:
        load_plugins(plugins)
    except Exception as err:
        if "--debug" in argv:
            raise
        return _print_error(err)
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
        _quiet_library_progress()

    try:
        _run(args)
    except KeyboardInterrupt:
        print("sami: interrupted; a rerun resumes", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        return _print_error(err)
    return 0


def _print_error(err: BaseException) -> int:
    code, text = describe_error(err)
    print(f"sami: error: {text}", file=sys.stderr)
    return code


def describe_error(err: BaseException) -> tuple[int, str]:
    """Exit code and message of an error, decided by its class (``sami.core.errors``): 2 for bad input (one of
    the project's ``UserError`` classes, or an OS error naming a path; the message names it), 1 with the
    message for a run that stopped for a reason it names (``RunFailure``, a full disk), and 1 for anything
    else, a bug, with its type, its first line and a pointer to ``--debug``."""
    from sami.core.errors import RunFailure, UserError

    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return 1, f"no space left on {err.filename or 'the device'}"
    if isinstance(err, UserError):
        return 2, str(err)
    if isinstance(err, RunFailure):
        return 1, str(err)
    if isinstance(err, OSError) and err.filename is not None:
        return 2, f"{err.filename}: {err.strerror}"
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return 1, f"{type(err).__name__}: {text} (run with --debug for the traceback)"


def _run_generate(args: argparse.Namespace) -> None:
    from sami.generate.run import generate

    _print_generate_summary(generate(build_generate_config(args)))


def _run_train(args: argparse.Namespace) -> None:
    from accelerate import PartialState

    from sami.train.run import train

    result = train(build_train_config(args), resume=args.resume)
    if PartialState().is_main_process:
        _print_summary(result)


# Each subcommand's function, called with the parsed arguments; errors propagate to ``main``, which prints them
# in one style.
COMMANDS: dict[str, Callable[[argparse.Namespace], object]] = {
    "generate": _run_generate,
    "iterate": _run_iterate,
    "train": _run_train,
    "principles": _print_principles,
    "check-data": lambda args: _check_data(args.path),
    "eval": run_eval,
    "compare-configs": lambda args: _compare(args.paths),
    "experiment": _run_experiment,
    "view": _run_view,
}


def _run(args: argparse.Namespace) -> None:
    COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
