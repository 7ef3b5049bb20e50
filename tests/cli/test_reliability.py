"""What the commands promise under a kill, a second run on the same output, a damaged checkpoint, a full disk
and bad input (docs/RELIABILITY.md): each test here failed before the promise was kept."""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import sami.train.sami_loop as loop_module
import sami.train.trl_runner as trl_runner
from sami.cli import main as cli_main
from sami.core.config import ConfigError, from_dict, load_yaml, parse_override
from sami.core.locks import OutputBusy, hold
from sami.data.records import DataError, read_records
from sami.train.checkpoints import CheckpointError
from sami.train.config import TrainConfig
from sami.train.run import train
from sami.train.runfolder import SaturationWatch
from tests.helpers import (
    EXAMPLE_DATA,
    FILES,
    ROOT,
    assert_same_weights,
    free_port,
    generate_against,
    make_cfg,
    metrics,
    save_tiny_model,
    weights,
)

# ---------------------------------------------------------------------------------------------- resume


def _interrupt_at(monkeypatch, step: int):
    """SAMI training raises KeyboardInterrupt (as if killed) when it reaches ``step``."""
    real = loop_module._step_metrics

    def crash(accelerator, at, *args):
        if at == step:
            raise KeyboardInterrupt
        return real(accelerator, at, *args)

    monkeypatch.setattr(loop_module, "_step_metrics", crash)
    return lambda: monkeypatch.setattr(loop_module, "_step_metrics", real)


def test_resume_refuses_changed_settings_and_data_and_records_an_extension(tmp_path, tiny_model_dir, monkeypatch):
    data = tmp_path / "data.jsonl"
    shutil.copy(EXAMPLE_DATA, data)
    cfg = make_cfg(tmp_path, tiny_model_dir, data=str(data), max_steps=4, save_every=2)
    restore = _interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    restore()
    out = Path(cfg.output_dir)

    other_lr = make_cfg(tmp_path, tiny_model_dir, data=str(data), max_steps=4, save_every=2, optim={"lr": 0.5})
    with pytest.raises(ConfigError, match=r"optim\.lr: 0\.001 -> 0\.5"):
        train(other_lr, resume=True)
    assert load_yaml(out / "config.yaml")["optim"]["lr"] == 0.001  # nothing recorded that did not run

    other_file = make_cfg(tmp_path, tiny_model_dir, data=str(EXAMPLE_DATA), max_steps=4, save_every=2)
    with pytest.raises(ConfigError, match=r"  data: .* -> "):
        train(other_file, resume=True)
    data.write_text("".join(EXAMPLE_DATA.read_text().splitlines(keepends=True)[:-1]))  # same path, other content
    with pytest.raises(ConfigError, match="the content of .*data.jsonl changed since checkpoint-2"):
        train(cfg, resume=True)
    shutil.copy(EXAMPLE_DATA, data)

    longer = make_cfg(tmp_path, tiny_model_dir, data=str(data), max_steps=6, save_every=2)  # extending is allowed
    result = train(longer, resume=True)
    assert [m["step"] for m in metrics(out)] == [1, 2, 3, 4, 5, 6]
    segments = json.loads((result.model_dir / "provenance.json").read_text())["segments"]
    assert [(s["from_step"], s["total_steps"], s["max_steps"]) for s in segments] == [(0, 4, 4), (2, 6, 6)]
    assert load_yaml(out / "config.yaml")["max_steps"] == 6


def test_cli_resume_with_a_changed_setting_is_one_named_error(tmp_path, tiny_model_dir, capsys):
    args = [
        "train",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(EXAMPLE_DATA),
        "--output-dir",
        str(tmp_path / "r"),
        "--max-steps",
        "1",
        "-o",
        "max_prompt_tokens=48",
        "-o",
        "max_response_tokens=24",
    ]
    assert cli_main(args) == 0
    capsys.readouterr()
    assert cli_main([*args, "--resume", "-o", "optim.lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sami: error: cannot resume") and "optim.lr: 1e-05 -> 0.5" in err


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_baseline_resume_refuses_a_changed_setting(tmp_path, tiny_model_dir, method):
    train(make_cfg(tmp_path, tiny_model_dir, method=method, max_steps=2, save_every=1))
    changed = make_cfg(tmp_path, tiny_model_dir, method=method, max_steps=3, save_every=1, optim={"lr": 0.5})
    with pytest.raises(ConfigError, match=r"optim\.lr: 0\.001 -> 0\.5"):
        train(changed, resume=True)


@pytest.mark.parametrize("method", ["sft", "dpo", "kto", "orpo", "simpo"])
def test_baseline_killed_and_resumed_equals_uninterrupted(tmp_path, tiny_model_dir, monkeypatch, method):
    kw = dict(method=method, max_steps=4, save_every=2, queries_per_device=2)
    whole = train(make_cfg(tmp_path, tiny_model_dir, "whole", **kw))

    real = trl_runner._metrics_callback

    def crashing(path, fp16=False):
        callback = real(path, fp16)
        on_log = callback.on_log

        def crash_at_3(args, state, control, logs=None, **kwargs):
            if state.global_step == 3:
                raise KeyboardInterrupt  # killed during step 3, after checkpoint-2
            return on_log(args, state, control, logs=logs, **kwargs)

        callback.on_log = crash_at_3
        return callback

    cfg = make_cfg(tmp_path, tiny_model_dir, "parts", **kw)
    monkeypatch.setattr(trl_runner, "_metrics_callback", crashing)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(trl_runner, "_metrics_callback", real)
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg)
    resumed = train(cfg, resume=True)
    assert [m["step"] for m in resumed.metrics] == [3, 4]
    assert_same_weights(whole.model_dir, resumed.model_dir)
    assert [m["step"] for m in metrics(resumed.output_dir)] == [1, 2, 3, 4]
    for a, b in zip(metrics(whole.output_dir), metrics(resumed.output_dir), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
    for a, b in zip(metrics(whole.output_dir), metrics(resumed.output_dir), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)


# ------------------------------------------------------------------------------------------ checkpoints


def test_a_damaged_sami_checkpoint_falls_back_to_the_intact_one(tmp_path, tiny_model_dir, caplog):
    kw = dict(max_steps=4, save_every=2)
    whole = train(make_cfg(tmp_path, tiny_model_dir, "whole", **kw))
    cfg = make_cfg(tmp_path, tiny_model_dir, "damaged", **kw)
    train(cfg)
    out = Path(cfg.output_dir)
    weights = out / "checkpoints" / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    shutil.rmtree(out / "model")
    resumed = train(cfg, resume=True)
    assert f"{weights} has 100 bytes" in caplog.text
    assert (out / "checkpoints" / "damaged-checkpoint-4").is_dir()
    assert [m["step"] for m in resumed.metrics] == [3, 4]  # from step-2
    assert_same_weights(whole.model_dir, resumed.model_dir)


def test_a_damaged_trl_checkpoint_falls_back_to_the_intact_one(tmp_path, tiny_model_dir, caplog):
    kw = dict(method="sft", max_steps=4, save_every=2)
    whole = train(make_cfg(tmp_path, tiny_model_dir, "whole", **kw))
    cfg = make_cfg(tmp_path, tiny_model_dir, "damaged", **kw)
    train(cfg)
    out = Path(cfg.output_dir)
    optimizer = out / "checkpoints" / "checkpoint-4" / "optimizer.pt"
    optimizer.write_bytes(b"\0" * optimizer.stat().st_size)  # same size, other bytes
    resumed = train(cfg, resume=True)
    assert f"{optimizer} does not match its hash" in caplog.text
    assert [m["step"] for m in resumed.metrics] == [3, 4]
    assert_same_weights(whole.model_dir, resumed.model_dir)


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_a_full_disk_during_a_sami_checkpoint_removes_it_and_says_so(tmp_path, tiny_model_dir, monkeypatch, finetune):
    from accelerate import Accelerator

    cfg = make_cfg(tmp_path, tiny_model_dir, max_steps=4, save_every=2, model={"finetune": finetune})
    real = Accelerator.save_state

    def half_written(self, output_dir=None, **kwargs):
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "model.safetensors").write_bytes(b"partial")
        _no_space()

    monkeypatch.setattr(Accelerator, "save_state", half_written)
    with pytest.raises(CheckpointError, match="write checkpoint checkpoint-2: no space left on .*checkpoints"):
        train(cfg)
    assert list((Path(cfg.output_dir) / "checkpoints").iterdir()) == []  # no .checkpoint-2.partial holding the space
    monkeypatch.setattr(Accelerator, "save_state", real)
    assert train(cfg, resume=True).steps == 4


@pytest.mark.parametrize(
    "message",
    ["data/0: file write failed", "data/3: unexpected pos 1664 vs 1558"],  # torch's two ways of saying it
)
def test_torch_s_write_failure_on_a_full_disk_is_named(tmp_path, tiny_model_dir, monkeypatch, message):
    from collections import namedtuple

    from accelerate import Accelerator

    written = []

    def torch_error(self, output_dir=None, **kwargs):
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        written.append(Path(output_dir) / "optimizer.bin")
        written[-1].write_bytes(b"partial")
        raise RuntimeError(
            f"[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file {message}"
        )

    def disk_usage(path):  # full while the half-written checkpoint holds the space, as a real disk is
        free = 4096 if any(p.exists() for p in written) else 10**9
        return usage(10**9, 10**9 - free, free)

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(Accelerator, "save_state", torch_error)
    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    with pytest.raises(CheckpointError, match="no space left on"):
        train(make_cfg(tmp_path, tiny_model_dir, max_steps=2, save_every=1))


def test_a_full_disk_during_a_trl_checkpoint_removes_it_and_says_so(tmp_path, tiny_model_dir, monkeypatch):
    from transformers import Trainer

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", _no_space)
    cfg = make_cfg(tmp_path, tiny_model_dir, method="sft", max_steps=4, save_every=2)
    with pytest.raises(CheckpointError, match="could not write checkpoint checkpoint-2: no space left on"):
        train(cfg)
    assert list((Path(cfg.output_dir) / "checkpoints").glob("checkpoint-*")) == []


# ------------------------------------------------------------------------------------------ one writer

# sami/core/locks.py loaded from its file: only the standard library and filelock, not the package (whose
# __init__ imports torch), so the holder is up in a fraction of a second.
HOLDER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("locks", sys.argv[3])
locks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(locks)
with locks.hold(sys.argv[1], folder=sys.argv[2] == "folder"):
    print("held", flush=True)
    time.sleep(300)
"""


@pytest.fixture
def holder():
    """Start another process that holds the lock of a folder or file; yields a function (target, kind) -> pid."""
    procs = []

    def start(target: Path, kind: str) -> int:
        locks = ROOT / "src" / "sami" / "core" / "locks.py"
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(target), kind, str(locks)], stdout=subprocess.PIPE, text=True
        )
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc.pid

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def _refuses(args, pid, capsys, monkeypatch) -> None:
    """The command exits 2 at once, naming the process that holds its output, before loading any model."""
    import sami.models.loading

    def no_loading(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(sami.models.loading, "load_trained", no_loading)
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "is in use by pid " + str(pid) in err and "started" in err, err


def test_a_second_train_on_one_output_dir_is_refused(tmp_path, tiny_model_dir, holder, capsys, monkeypatch):
    pid = holder(tmp_path / "run", "folder")
    args = ["train", "--model", str(tiny_model_dir), "--data", str(EXAMPLE_DATA), "--output-dir", str(tmp_path / "run")]
    _refuses(args, pid, capsys, monkeypatch)
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_a_second_generate_on_one_output_is_refused(tmp_path, tiny_model_dir, holder, capsys, monkeypatch):
    out = tmp_path / "data" / "train.jsonl"
    pid = holder(out, "file")
    args = ["generate", "--teacher", str(tiny_model_dir), "--num-queries", "2", "--out", str(out)]
    _refuses(args, pid, capsys, monkeypatch)
    assert not out.exists()


def test_a_second_eval_on_one_output_is_refused(tmp_path, tiny_model_dir, holder, capsys, monkeypatch):
    pid = holder(tmp_path / "ev" / "mi", "folder")
    args = ["eval", "mi", str(tiny_model_dir), "--data", str(EXAMPLE_DATA), "--output-dir", str(tmp_path / "ev")]
    _refuses(args, pid, capsys, monkeypatch)


def test_a_second_experiment_on_one_output_is_refused(tmp_path, holder, capsys, monkeypatch):
    pid = holder(tmp_path / "exp", "folder")
    args = ["experiment", str(FILES / "experiment-tiny.yaml"), "-o", f"output_dir={tmp_path / 'exp'}"]
    _refuses(args, pid, capsys, monkeypatch)


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path, holder, caplog):
    pid = holder(tmp_path / "run", "folder")
    with pytest.raises(OutputBusy, match=f"pid {pid}"):
        with hold(tmp_path / "run", folder=True):
            pass
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    with hold(tmp_path / "run", folder=True):
        assert f"taking over the lock of a run that stopped without releasing it (pid {pid}" in caplog.text


# ------------------------------------------------------------------------------------ bad input, one line


def _one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("sami: error: ")
    return lines[0]


@pytest.mark.parametrize(
    "make, expect",
    [
        (lambda d: d.write_bytes(b'{"id": "a"}\n\xff\xfe binary\n'), r"data\.jsonl:2: not UTF-8 text"),
        (lambda d: d.write_text('{"id": "a", "id": "b"}\n'), r"data\.jsonl:1: key 'id' appears twice"),
        (lambda d: d.mkdir(), r"data\.jsonl is a folder; expected a JSONL file"),
    ],
)
def test_check_data_names_file_and_line_of_unreadable_input(tmp_path, capsys, make, expect):
    make(tmp_path / "data.jsonl")
    assert cli_main(["check-data", str(tmp_path / "data.jsonl")]) == 2
    assert re.search(expect, _one_error_line(capsys))


def test_a_binary_config_file_is_named_with_its_line(tmp_path, capsys):
    (tmp_path / "c.yaml").write_bytes(b"seed: 1\nname: \xff\n")
    assert cli_main(["train", "--config", str(tmp_path / "c.yaml")]) == 2
    assert "c.yaml:2: not UTF-8 text" in _one_error_line(capsys)


@pytest.mark.parametrize(
    "override, expect",
    [
        ("optim.lr=[1,2", "override 'optim.lr=[1,2': the value is not valid YAML"),
        ("=5", "override '=5': expected key.path=value, with a key before '='"),
        ("optim..lr=1", "with a key before"),
    ],
)
def test_malformed_overrides_are_one_line(override, expect, capsys):
    with pytest.raises(ConfigError, match=re.escape(expect)):
        parse_override(override)
    assert cli_main(["train", "--data", str(EXAMPLE_DATA), "-o", override]) == 2
    assert expect in _one_error_line(capsys)


def test_top_level_unknown_key_message_has_no_stray_colon():
    with pytest.raises(ConfigError) as caught:
        from_dict(TrainConfig, {"lrr": 1}, source="c.yaml")
    assert str(caught.value).startswith("c.yaml: unknown key(s) ['lrr']")


@pytest.mark.parametrize(
    "override, expect",
    [
        ("sami.temperature=0", "sami.temperature must be a positive number"),
        ("sami.row_weight=-1", "sami.row_weight and sami.col_weight must be non-negative"),
        ("model.lora.r=0", "lora.r must be at least 1"),
    ],
)
def test_invalid_objective_and_adapter_settings_fail_before_any_folder(
    tmp_path, tiny_model_dir, capsys, override, expect
):
    out = tmp_path / "run"
    args = ["train", "--model", str(tiny_model_dir), "--data", str(EXAMPLE_DATA), "--output-dir", str(out)]
    assert cli_main([*args, "-o", override]) == 2
    assert expect in _one_error_line(capsys)
    assert not out.exists()


def test_missing_and_empty_model_folders_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    base = ["train", "--data", str(EXAMPLE_DATA), "--output-dir", str(tmp_path / "run")]
    assert cli_main([*base, "--model", str(tmp_path / "missing")]) == 2
    assert f"no such folder: {tmp_path / 'missing'}" in _one_error_line(capsys)
    assert cli_main([*base, "--model", str(tmp_path / "empty")]) == 2
    assert "holds no model" in _one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_a_hub_id_that_cannot_load_is_one_line(monkeypatch):
    import transformers

    from sami.models.loading import load_trained

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nCheck your connection.")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", offline)
    with pytest.raises(
        ValueError,
        match=r"model 'someone/model': no such folder here, and it could not be loaded "
        r"as a hub id \(We couldn't connect",
    ):
        load_trained("someone/model")


def test_bad_output_paths_fail_before_the_teacher_loads(tmp_path, tiny_model_dir, capsys, monkeypatch):
    import sami.models.loading

    monkeypatch.setattr(sami.models.loading, "load_trained", lambda *a, **k: pytest.fail("a model was loaded"))
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    assert cli_main(["generate", "--teacher", str(tiny_model_dir), "--out", str(tmp_path / "dir")]) == 2
    assert "is a folder; expected a JSONL file path" in _one_error_line(capsys)
    args = ["train", "--model", str(tiny_model_dir), "--data", str(EXAMPLE_DATA)]
    assert cli_main([*args, "--output-dir", str(tmp_path / "file" / "run")]) == 2
    assert f"output_dir: {tmp_path / 'file'} is a file" in _one_error_line(capsys)


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    import sami.cli

    def bug(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(sami.cli, "_check_data", lambda path: bug(path))
    assert cli_main(["check-data", "x"]) == 1
    assert _one_error_line(capsys) == (
        "sami: error: ZeroDivisionError: division by zero (run with --debug for the traceback)"
    )
    with pytest.raises(ZeroDivisionError):
        cli_main(["--debug", "check-data", "x"])


# ------------------------------------------------------------------------------------- records written


def test_generate_with_filters_off_writes_only_records_its_reader_accepts(tmp_path, tokenizer, tiny_model):
    from sami.backends.base import Completion
    from sami.generate.run import GenerateConfig, generate

    class Scripted:
        """Answers "" to the first constitution of every second query, "same" to all of another."""

        batch_size = 64

        def __init__(self):
            self.calls = 0

        def describe(self):
            return {"kind": "scripted"}

        def generate(self, prompts, params, *, desc=None, progress=True):
            out = []
            for k, _ in enumerate(prompts):
                query, j = divmod(k, 2)
                text = "" if (query % 2 == 0 and j == 0) else f"answer {query} {j}"
                out.append([Completion(text, "stop", 2)])
            return out

    cfg = from_dict(
        GenerateConfig,
        {
            "output": str(tmp_path / "d.jsonl"),
            "num_queries": 6,
            "constitutions": {"strategy": "flip_one", "principles": ["lowercase"]},
            "filters": {"empty": False, "identical": False, "unterminated": False},
        },
    )
    result = generate(cfg, backend=Scripted())
    assert result.rejected and all(reason.startswith("invalid: ") for reason in result.rejected)
    assert len(read_records(tmp_path / "d.jsonl")) == result.written == 6 - sum(result.rejected.values())


def test_check_data_rejects_constitutions_that_differ_only_in_order_or_whitespace(tmp_path):
    record = json.loads(EXAMPLE_DATA.read_text().splitlines()[0])
    first = {"principles": [{"text": "Be brief."}, {"text": "Use lists."}]}
    record["constitutions"][:2] = [first, {"principles": [{"text": "Use lists. "}, {"text": " Be brief."}]}]
    (tmp_path / "d.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(DataError, match=r"d\.jsonl:1: field 'constitutions\[1\]': identical to constitutions\[0\]"):
        read_records(tmp_path / "d.jsonl")


def test_check_data_warns_of_identical_responses(tmp_path, capsys):
    record = json.loads(EXAMPLE_DATA.read_text().splitlines()[0])
    record["responses"] = ["same answer"] * len(record["responses"])
    (tmp_path / "d.jsonl").write_text(json.dumps(record) + "\n")
    assert cli_main(["check-data", str(tmp_path / "d.jsonl")]) == 0
    assert (
        f"1 record(s) have two identical responses, which `sami generate` filters by default (filters.identical): "
        f"{record['id']}" in capsys.readouterr().out
    )


# -------------------------------------------------------------------------- budgets and saturation


def test_a_huge_response_is_cut_before_it_is_tokenised_with_the_same_ids(embedded_tokenizer):
    from sami.core.tokens import CHARS_PER_TOKEN, count_cuts, encode_prompt, encode_responses

    tokenizer = embedded_tokenizer  # a real vocabulary: tokens as long as a real model's

    text = "The answer is 42, as computed below.\n" * 2_000  # 74 kB, 36 times the 64 tokens * CHARS_PER_TOKEN
    lengths = []

    class Spy:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __call__(self, text, **kwargs):
            lengths.append(len(text))
            return self.inner(text, **kwargs)

    with count_cuts() as cuts:
        (response,) = encode_responses(Spy(tokenizer), [text], 64)
        prompt = encode_prompt(Spy(tokenizer), text, 64)
        encode_responses(tokenizer, ["short"], 64)
    assert max(lengths) <= 64 * CHARS_PER_TOKEN
    whole = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert list(response) == whole[:64]
    whole_prompt = tokenizer(text)["input_ids"]
    assert list(prompt) == whole_prompt[:32] + whole_prompt[-32:]
    assert dict(cuts) == {"responses_seen": 2, "responses": 1, "prompts_seen": 1, "prompts": 1}


def test_training_records_how_many_responses_were_cut(tmp_path, tiny_model_dir):
    result = train(make_cfg(tmp_path, tiny_model_dir, max_steps=1))  # max_response_tokens 24
    (segment,) = json.loads((result.model_dir / "provenance.json").read_text())["segments"]
    records = read_records(EXAMPLE_DATA)
    assert segment["cut"]["responses_seen"] == sum(len(r.responses) for r in records)
    assert 0 < segment["cut"]["responses"] < segment["cut"]["responses_seen"]


def test_saturation_warns_once_after_three_zero_gradient_steps(caplog):
    watch = SaturationWatch()
    assert not watch.update(1, 0.0, 1.1) and not watch.update(2, 0.5, 1.1)  # a step with a gradient resets
    assert not watch.update(3, 0.0, 1.1) and not watch.update(4, 0.0, 1.1)
    assert watch.update(5, 0.0, 1.0986) and "exactly 0 for 3 steps" in caplog.text
    assert not watch.update(6, 0.0, 1.0986) and watch.saturated == 5


def test_saturated_training_warns_and_the_report_says_so(tmp_path, tiny_model_dir, monkeypatch, caplog):
    import math

    from sami.study.findings import findings
    from sami.study.report import _training

    real = loop_module._micro_loss

    def constant(*args):  # a loss that no longer depends on the weights: every gradient is exactly 0
        loss, mats, refs = real(*args)
        return loss * 0 + math.log(4), mats, refs

    monkeypatch.setattr(loop_module, "_micro_loss", constant)
    cfg = make_cfg(tmp_path, tiny_model_dir, max_steps=4)
    train(cfg)
    assert "the gradient norm has been exactly 0 for 3 steps" in caplog.text
    training = _training({"sami": cfg})
    assert training["methods"]["sami"]["saturated_steps"] == 4
    summary = {"mtbench": {"training": training, "eval": {}}}
    assert "Training of sami (mtbench study) saturated: 4 of its 4 steps" in " ".join(findings(summary))


# ------------------------------------------------------------------------------- a folder holds one thing


@pytest.mark.parametrize("method", ["sft", "dpo", "sami"])
def test_resuming_a_finished_run_trains_and_writes_nothing(tmp_path, tiny_model_dir, method):
    cfg = make_cfg(tmp_path, tiny_model_dir, method=method, max_steps=4, save_every=2, optim={"scheduler": "constant"})
    first = train(cfg)
    files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.model_dir.iterdir()}
    again = train(cfg, resume=True)
    assert again.steps == 4 and again.metrics == []
    out = Path(cfg.output_dir)
    assert [m["step"] for m in metrics(out)] == [1, 2, 3, 4]
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.is_dir()) == ["checkpoint-2", "checkpoint-4"]
    # model/ is left as it was: an evaluation bound to it (models.json) stays valid
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in again.model_dir.iterdir()} == files


def test_a_trl_run_killed_after_its_last_checkpoint_writes_its_model_on_rerun(tmp_path, tiny_model_dir):
    cfg = make_cfg(tmp_path, tiny_model_dir, method="sft", max_steps=2, save_every=1)
    first = train(cfg)
    before = weights(first.model_dir)
    shutil.rmtree(first.model_dir)  # killed after checkpoint-2, before model/ was written
    again = train(cfg, resume=True)
    assert again.steps == 2 and [m["step"] for m in metrics(Path(cfg.output_dir))] == [1, 2]
    for name, tensor in weights(again.model_dir).items():
        assert tensor.equal(before[name]), name
    assert json.loads((again.model_dir / "provenance.json").read_text())["steps"] == 2
    assert (again.model_dir / "tokenizer_config.json").is_file()


def _train_args(model_dir: Path, out: Path) -> list[str]:
    """``sami train`` of 2 steps with a checkpoint at each, on the tiny model."""
    return [
        "train",
        "--model",
        str(model_dir),
        "--data",
        str(EXAMPLE_DATA),
        "--output-dir",
        str(out),
        "--max-steps",
        "2",
        "-o",
        "save_every=1",
        "-o",
        "max_prompt_tokens=48",
        "-o",
        "max_response_tokens=24",
    ]


@pytest.mark.parametrize(
    "first, second, resume",
    [("sami", "sft", True), ("sami", "sft", False), ("sft", "sami", True), ("dpo", "sft", False)],
)
def test_a_method_does_not_write_into_another_method_s_folder(tmp_path, tiny_model_dir, capsys, first, second, resume):
    out = tmp_path / "run"
    args = _train_args(tiny_model_dir, out)
    assert cli_main([*args, "--method", first]) == 0
    capsys.readouterr()
    listing = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert cli_main([*args, "--method", second, *(["--resume"] if resume else [])]) == 2
    line = _one_error_line(capsys)
    assert f"{out} holds a {first} run" in line and f"--method {second}" in line
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == listing  # nothing written
    assert cli_main([*args, "--method", first, "--resume"]) == 0


def test_a_run_folder_without_its_config_is_named_by_its_checkpoints(tmp_path):
    from sami.train.runfolder import recorded_method

    out = tmp_path / "run"
    assert recorded_method(out) is None
    sami_state, hf_state = {"step": 2}, {"global_step": 2, "max_steps": 4}
    for name, state, method in [
        ("checkpoint-2", sami_state, "sami"),
        ("checkpoint-2", hf_state, "a TRL method's"),
        ("checkpoint-2", None, "a TRL method's"),
        ("step-2", None, "sami"),
    ]:
        shutil.rmtree(out, ignore_errors=True)
        (out / "checkpoints" / name).mkdir(parents=True)
        if state is not None:
            (out / "checkpoints" / name / "trainer_state.json").write_text(json.dumps(state))
        assert recorded_method(out) == (method, out / "checkpoints"), (name, state)
    (out / "config.yaml").write_text("method: dpo\n")  # the run's own config says it first
    assert recorded_method(out) == ("dpo", out / "config.yaml")


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory, tokenizer):
    """A second tiny model, other weights than ``tiny_model_dir``'s."""
    return save_tiny_model(tmp_path_factory.mktemp("other-llama"), tokenizer, seed=1)


def test_an_eval_name_stays_bound_to_its_model(tmp_path, tiny_model_dir, other_model_dir, capsys):
    out = tmp_path / "eval"
    args = ["eval", "mi", "--data", str(EXAMPLE_DATA), "--limit", "2", "--output-dir", str(out)]
    assert cli_main([*args, f"a={tiny_model_dir}"]) == 0
    capsys.readouterr()
    config = (out / "mi" / "config.yaml").read_text()
    assert cli_main([*args, f"a={other_model_dir}"]) == 2
    line = _one_error_line(capsys)
    assert f"'a' was {tiny_model_dir}" in line and f"now {other_model_dir}" in line
    assert (out / "mi" / "config.yaml").read_text() == config  # nothing recorded that did not run
    shutil.copytree(tiny_model_dir, tmp_path / "retrained")
    os.utime(tmp_path / "retrained" / "model.safetensors", ns=(1, 1))  # retrained in place: other files
    assert cli_main([*args, f"r={tmp_path / 'retrained'}"]) == 0
    os.utime(tmp_path / "retrained" / "model.safetensors")
    assert cli_main([*args, f"r={tmp_path / 'retrained'}"]) == 2
    assert cli_main([*args, f"b={other_model_dir}"]) == 0  # another name is its own place


def test_eval_mi_refuses_held_out_data_edited_in_place(tmp_path, tiny_model_dir, capsys):
    data = tmp_path / "held-out.jsonl"
    shutil.copy(EXAMPLE_DATA, data)
    args = [
        "eval",
        "mi",
        f"a={tiny_model_dir}",
        "--data",
        str(data),
        "--limit",
        "2",
        "--output-dir",
        str(tmp_path / "e"),
    ]
    assert cli_main(args) == 0
    capsys.readouterr()
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[0]["responses"] = rows[0]["responses"][::-1]  # same ids, responses swapped
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli_main(args) == 2
    assert "records_sha256" in _one_error_line(capsys)


@pytest.mark.parametrize(
    "override, setting",
    [
        ("optim.lr=.nan", "optim.lr"),
        ("optim.lr=.inf", "optim.lr"),
        ("optim.max_grad_norm=.nan", "optim.max_grad_norm"),
        ("optim.betas=[2,3]", "optim.betas"),
        ("optim.eps=-1", "optim.eps"),
        ("optim.weight_decay=-5", "optim.weight_decay"),
        ("dpo.beta=.nan", "dpo.beta"),
        ("dpo.beta=.inf", "dpo.beta"),
        ("sami.constitution_weights=[.nan,1]", "sami.constitution_weights[0]"),
        ("epochs=.nan", "epochs"),
        ("epochs=.inf", "epochs"),
    ],
)
def test_non_finite_and_out_of_range_settings_are_named_before_any_model_loads(
    tmp_path, tiny_model_dir, capsys, monkeypatch, override, setting
):
    import sami.models.loading

    monkeypatch.setattr(sami.models.loading, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    out = tmp_path / "run"
    args = ["train", "--model", str(tiny_model_dir), "--data", str(EXAMPLE_DATA), "--output-dir", str(out)]
    assert cli_main([*args, "--method", "dpo", "-o", override]) == 2
    assert setting in _one_error_line(capsys)
    assert not out.exists()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.parametrize(
    "damage",
    [
        lambda step: (step / "manifest.json").write_text("[]"),
        lambda step: ((step / "manifest.json").unlink(), _truncate(step / "model.safetensors")),
    ],
    ids=["manifest-a-list", "manifest-lost-weights-truncated"],
)
def test_damage_the_manifest_does_not_describe_falls_back(tmp_path, tiny_model_dir, caplog, damage):
    cfg = make_cfg(tmp_path, tiny_model_dir, max_steps=4, save_every=2)
    out = Path(train(cfg).output_dir)
    damage(out / "checkpoints" / "checkpoint-4")
    shutil.rmtree(out / "model")
    resumed = train(cfg, resume=True)
    assert [m["step"] for m in resumed.metrics] == [3, 4]  # from step-2
    assert (out / "checkpoints" / "damaged-checkpoint-4").is_dir()


def test_copied_checkpoint_folders_are_not_checkpoints_and_all_damaged_is_an_error(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "run"
    args = _train_args(tiny_model_dir, out)
    assert cli_main(args) == 0
    shutil.copytree(out / "checkpoints" / "checkpoint-2", out / "checkpoints" / "checkpoint-6.bak")
    shutil.copytree(out / "checkpoints" / "checkpoint-2", out / "checkpoints" / "step-6.bak")
    assert cli_main([*args, "--resume"]) == 0
    capsys.readouterr()
    for step in ("checkpoint-1", "checkpoint-2"):
        _truncate(out / "checkpoints" / step / "model.safetensors")
    assert cli_main([*args, "--resume"]) == 1
    line = _one_error_line(capsys)
    assert "every checkpoint in" in line and "is damaged (checkpoint-1, checkpoint-2" in line
    assert not (out / "checkpoints" / "checkpoint-1").exists()  # moved aside, not trained over


def _safetensors_full_disk(*args, **kwargs):
    from safetensors import SafetensorError

    raise SafetensorError(
        'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
    )


def test_a_full_disk_reported_by_safetensors_removes_the_partial_sami_checkpoint(tmp_path, tiny_model_dir, monkeypatch):
    """A hand-made fault: the LoRA save raising safetensors' own error, as it does on a full tmpfs."""
    from accelerate import Accelerator

    def half_written(self, output_dir=None, **kwargs):
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "adapter_model.safetensors").write_bytes(b"partial")
        _safetensors_full_disk()

    monkeypatch.setattr(Accelerator, "save_state", half_written)
    cfg = make_cfg(tmp_path, tiny_model_dir, max_steps=2, save_every=1, model={"finetune": "lora"})
    with pytest.raises(CheckpointError, match="write checkpoint checkpoint-1: no space left on .*checkpoints"):
        train(cfg)
    assert list((Path(cfg.output_dir) / "checkpoints").iterdir()) == []


def test_a_full_disk_reported_by_safetensors_removes_the_partial_trl_checkpoint(tmp_path, tiny_model_dir, monkeypatch):
    from transformers import Trainer

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", _safetensors_full_disk)
    cfg = make_cfg(tmp_path, tiny_model_dir, method="sft", max_steps=2, save_every=1)
    with pytest.raises(CheckpointError, match="could not write checkpoint checkpoint-1: no space left on"):
        train(cfg)
    assert list((Path(cfg.output_dir) / "checkpoints").glob("checkpoint-*")) == []


def test_a_full_disk_when_taking_the_lock_names_the_path_and_leaves_no_holder_file(tmp_path, monkeypatch, capsys):
    """A hand-made fault: the holder file's write fails with ENOSPC (as on a full tmpfs)."""
    import sami.core.locks

    real = Path.write_text

    def full(self, *args, **kwargs):
        if self.name.endswith(".holder"):
            self.touch()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError) as caught, hold(tmp_path / "out", folder=True):
        pass
    assert caught.value.filename == str(tmp_path / "out" / ".sami.lock.holder")
    assert not (tmp_path / "out" / ".sami.lock.holder").exists()
    assert sami.cli.describe_error(caught.value) == (1, f"no space left on {caught.value.filename}")


def test_a_read_only_output_folder_is_bad_input(tmp_path):
    import sami.cli

    err = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "ro" / "config.yaml"))
    assert sami.cli.describe_error(err) == (2, f"{tmp_path / 'ro' / 'config.yaml'}: Permission denied")


def test_a_key_in_an_endpoint_url_is_neither_shown_nor_written(tmp_path, capsys):

    from sami.core.config import redact_url
    from sami.generate.run import GenerateConfig, _check_same_config, config_path

    assert redact_url("at http://u:K@h/v1 and https://h/v1") == "at http://u:***@h/v1 and https://h/v1"
    port = free_port()  # a port nobody listens on
    url, out = f"http://user:SECRET@127.0.0.1:{port}/v1", tmp_path / "d.jsonl"
    args = generate_against(url, out)
    assert cli_main(args) == 2
    line = _one_error_line(capsys)
    assert "SECRET" not in line and f"user:***@127.0.0.1:{port}" in line
    assert "SECRET" not in config_path(out).read_text()
    cfg = from_dict(
        GenerateConfig,
        {"output": str(out), **load_yaml(config_path(out))}
        | {"teacher": {**load_yaml(config_path(out))["teacher"], "base_url": url}},
    )
    _check_same_config(cfg)  # a rerun with the same URL is the same configuration


def test_a_yaml_syntax_error_is_one_line_with_its_line(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("seed: 1\noptim: {lr: [1, 2}\n")
    assert cli_main(["train", "--config", str(tmp_path / "c.yaml")]) == 2
    assert re.search(r"c\.yaml:2: invalid YAML \(", _one_error_line(capsys))


def test_init_from_a_file_says_it_is_a_file(tmp_path, tiny_model_dir, capsys):
    (tmp_path / "weights.bin").write_bytes(b"x")
    args = ["train", "--model", str(tiny_model_dir), "--data", str(EXAMPLE_DATA), "--output-dir", str(tmp_path / "r")]
    assert cli_main([*args, "--init-from", str(tmp_path / "weights.bin")]) == 2
    assert f"{tmp_path / 'weights.bin'} is a file; expected a model folder" in _one_error_line(capsys)


def test_a_full_disk_while_an_eval_store_appends_names_the_file_and_keeps_it_whole(tmp_path, monkeypatch):
    """A hand-made fault: fsync of the appended lines fails with ENOSPC; the store's file is cut back to the
    records it held, and the error names it."""
    import sami.cli
    from sami.eval.store import JsonlStore

    store = JsonlStore(tmp_path / "answers" / "a.jsonl", ("question_id",))
    store.append({"question_id": 1, "answer": "kept"})
    before = store.path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as caught:
        store.append({"question_id": 2, "answer": "x" * 1000})
    assert store.path.read_bytes() == before and not store.done(2)
    assert sami.cli.describe_error(caught.value) == (1, f"no space left on {store.path}")


def test_a_checkpoint_name_too_long_for_a_file_name_is_refused(tmp_path, capsys):
    name = "n" * 300
    assert (
        cli_main(
            ["eval", "mi", f"{name}=smollm2-135m", "--data", str(EXAMPLE_DATA), "--output-dir", str(tmp_path / "ev")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "at most 100 characters" in err and err.count("\n") == 1 and not (tmp_path / "ev").exists()


def test_an_experiment_whose_study_folder_is_a_file_says_so(tmp_path, capsys):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "mtbench").write_text("not a folder")
    args = ["experiment", str(FILES / "experiment-tiny.yaml"), "-o", f"output_dir={tmp_path / 'exp'}"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'exp' / 'mtbench'} is a file" in err and err.count("\n") == 1
