"""The instructions of the README and of docs/USAGE.md (where the full command reference lives) work as
written: every make target they name exists, every command line they show parses with the real argument
parsers and builds its config with the real loaders, every option of their synopses exists, every file they
name exists and every config they name loads."""

import copy
import re
import shlex

import pytest
import torch

from tests.helpers import ROOT

PAGES = [ROOT / "README.md", ROOT / "docs" / "USAGE.md"]
README = "\n".join(page.read_text() for page in PAGES)
FENCED = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
PLACEHOLDER = re.compile(r"[A-Z][A-Z_]*(\.\w+)?(=.*)?")  # N, FILE.jsonl, KEY=VALUE


def fenced_blocks(language: str) -> list[str]:
    return [body for lang, body in FENCED.findall(README) if lang == language]


def inline_spans() -> list[str]:
    return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", FENCED.sub("", README))]


def logical_lines(block: str, continued) -> list[str]:
    """The block's lines with continuations joined (``continued(line)``: it continues the one before)."""
    out: list[str] = []
    for line in block.splitlines():
        if out and (out[-1].endswith("\\") or continued(line)):
            out[-1] = out[-1].rstrip("\\").rstrip() + " " + line.strip()
        elif line.strip():
            out.append(line.strip())
    return out


def runnable(line: str) -> bool:
    """A command line as one would type it: no placeholders, optional parts or alternatives."""
    tokens = shlex.split(line, comments=True)
    return not any(c in line for c in "[|") and "..." not in line and not any(PLACEHOLDER.fullmatch(t) for t in tokens)


def command_lines() -> list[str]:
    """Every ``sami`` and ``accelerate launch`` command the README shows to run, in shell blocks and inline."""
    lines = [line for block in fenced_blocks("bash") for line in logical_lines(block, lambda _: False)]
    lines += [span for span in inline_spans() if len(span.split()) > 2]
    return [line for line in lines if line.split()[0] in ("sami", "accelerate") and runnable(line)]


def sami_arguments(line: str) -> list[str]:
    """The arguments the ``sami`` parser gets from a command line (through accelerate's own launch parser)."""
    tokens = shlex.split(line, comments=True)
    if tokens[:2] != ["accelerate", "launch"]:
        assert tokens[0] == "sami", line
        return tokens[1:]
    from accelerate.commands.launch import launch_command_parser

    launch = launch_command_parser().parse_args(tokens[2:])
    assert launch.module and launch.training_script == "sami.cli", line
    if launch.config_file:
        assert (ROOT / launch.config_file).is_file(), line
    return launch.training_script_args


def parse(arguments: list[str]):
    from sami.cli import build_parser

    return build_parser().parse_args(arguments)


def build_config(args):
    """The config the command would run with, built as the CLI builds it (None for commands without one)."""
    from sami import cli
    from sami.core.config import from_dict, load_yaml

    if args.command == "train":
        return cli.build_train_config(args)
    if args.command == "generate":
        return cli.build_generate_config(args)
    if args.command == "eval":
        return cli.build_import_config(args) if args.suite == "import" else cli.build_eval_config(args)
    if args.command == "experiment":
        from sami.study.experiment import load_experiment_config

        return load_experiment_config(args.config, args.overrides)
    if args.command == "iterate":
        from sami.study.iterate import IterateConfig

        return from_dict(IterateConfig, load_yaml(args.config) if args.config else {})
    return None


@pytest.mark.slow
def test_readme_python_example_runs():
    """The README's Python API example, executed as written (embedded model)."""
    code = re.search(r"## Python API\n\n```python\n(.*?)```", README, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    L, loss, model = namespace["L"].detach(), namespace["loss"], namespace["model"]
    assert L.shape == (2, 2) and (L < 0).all()
    # the paper's loss by hand: cross-entropy of each row over responses, of each column over constitutions
    row = -torch.log_softmax(L, dim=1).diagonal().mean()
    col = -torch.log_softmax(L, dim=0).diagonal().mean()
    assert loss.item() == pytest.approx(((row + col) / 2).item(), rel=1e-6)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())  # loss.backward() ran


def test_every_make_target_the_readme_names_is_in_the_makefile():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", makefile, re.M))
    code = "\n".join(fenced_blocks("bash") + inline_spans())
    named = set(re.findall(r"\bmake[ \t]+(?:[A-Z_]+=\S+[ \t]+)*([a-z][\w-]*)", code))
    assert {"quickstart", "test", "test-fast"} <= named
    assert named <= targets, f"the README names make targets the Makefile lacks: {sorted(named - targets)}"
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_command_line_in_the_readme_parses_and_builds_its_config(monkeypatch):
    """Each command parses with ``sami``'s parser (after ``accelerate launch``'s, where it is launched that
    way), and its config, with every option and ``-o`` override applied, passes the config loaders."""
    monkeypatch.chdir(ROOT)
    lines = command_lines()
    commands = {shlex.split(line)[1] if line.startswith("sami") else "launch" for line in lines}
    assert {"train", "eval", "experiment", "compare-configs", "launch"} <= commands, lines
    for line in lines:
        try:
            args = parse(sami_arguments(line))
        except SystemExit as exit:  # argparse's way of refusing; 0 after printing --help
            assert exit.code == 0, f"README: {line!r} does not parse"
            continue
        build_config(args)


def subparser(names: list[str]):
    import argparse

    from sami.cli import build_parser

    parser = build_parser()
    for name in names:
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = sub.choices[name]
    return parser


def test_every_option_in_the_readme_synopses_exists_with_the_choices_shown():
    """The usage blocks (``sami train [--config FILE.yaml] [--method sami|sft|dpo] ...``): each option is one
    the (sub)command accepts, and values shown as ``a|b|c`` for an option with fixed choices are among them."""
    synopses = [
        line.split("#")[0]
        for block in fenced_blocks("")
        for line in logical_lines(block, lambda line: line.startswith(" "))
        if line.startswith("sami ")
    ]
    assert len(synopses) >= 8, synopses
    checked = 0
    for synopsis in synopses:
        words = synopsis.split()
        names = [words[1]] + ([words[2]] if words[1] == "eval" else [])
        parser = subparser(names)
        for option, value in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)(?:\s+([^\s\]]+))?", synopsis):
            action = parser._option_string_actions.get(option)
            assert action is not None, f"README: `sami {' '.join(names)}` has no option {option}"
            if action.choices is not None and value and "|" in value:
                shown = set(value.split("|"))
                assert shown <= set(action.choices), f"README: {option} {value}; the parser takes {action.choices}"
            checked += 1
    assert checked >= 30


def test_every_override_the_readme_shows_is_a_setting_of_some_config():
    """Inline ``-o key=value`` examples set a field of the train, generate, eval or quickstart experiment
    config (an old or misspelled key is refused by all of them)."""
    from sami.core.config import ConfigError, from_dict, load_yaml, parse_override, set_path, to_dict
    from sami.eval.config import EvalConfig
    from sami.generate.run import GenerateConfig
    from sami.study.experiment import ExperimentConfig
    from sami.train.config import TrainConfig

    bases = [
        (TrainConfig, load_yaml(ROOT / "configs" / "train.yaml")),
        (GenerateConfig, load_yaml(ROOT / "configs" / "generate.yaml")),
        (EvalConfig, to_dict(EvalConfig())),
        (ExperimentConfig, load_yaml(ROOT / "configs" / "quickstart.yaml")),
    ]
    overrides = [
        text
        for span in inline_spans()
        for text in (shlex.split(t)[0] for t in re.findall(r"-o\s+(\S+=\S+)", span))
        if not PLACEHOLDER.fullmatch(text)
    ]
    assert len(overrides) >= 8, overrides
    for text in overrides:
        accepted = []
        for cls, data in bases:
            data = copy.deepcopy(data)
            try:
                set_path(data, *parse_override(text))
                from_dict(cls, data)
            except ConfigError:
                continue
            accepted.append(cls.__name__)
        assert accepted, f"README: -o {text} is a setting of no config"


def named_paths() -> set[str]:
    """Paths written from the repository root, and links (relative to their page), as root-relative paths."""
    paths = set(re.findall(r"(?<![\w/.-])((?:configs|docs|src|examples|benchmarks|tests)/[\w./+-]*[\w/])", README))
    for page in PAGES:
        for link in re.findall(r"\]\(([^)#\s]+)\)", page.read_text()):
            if "://" not in link:
                paths.add((page.parent / link).resolve().relative_to(ROOT).as_posix())
    return paths


def test_every_file_the_readme_names_exists():
    paths = named_paths()
    assert {"configs/quickstart.yaml", "docs/DATA.md", "src/sami/train/config.py"} <= paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"the README names files that do not exist: {missing}"


def test_every_config_the_readme_names_loads_with_its_loader(monkeypatch):
    """Experiment, train, generate and iterate configs as their first line says to run them; evaluation configs
    as ``sami eval`` reads them; accelerate's with accelerate's own loader (which refuses unknown keys)."""
    from accelerate.commands.config.config_args import load_config_from_file

    monkeypatch.chdir(ROOT)
    configs = sorted(p for p in named_paths() if p.startswith("configs/") and p.endswith(".yaml"))
    assert len(configs) >= 5, configs
    for path in configs:
        if path.startswith("configs/accelerate/"):
            load_config_from_file(path)
            continue
        if path.startswith("configs/eval/"):
            arguments = ["eval", "mtbench", "checkpoint=smollm2-135m", "--config", path]
        else:
            header = (ROOT / path).read_text().splitlines()[0]
            command = re.search(r"sami (\w+) (--config )?" + re.escape(path), header)
            assert command, f"{path}: the first line does not say how to run it"
            arguments = shlex.split(command.group(0))[1:]
        assert build_config(parse(arguments)) is not None, path
