"""``sharding: fsdp``: SAMI sharded with FSDP2 over 2 CPU processes (gloo) trains as 1 process with the same
global batch, and its checkpoints resume after a SIGKILL and at another process count.

Two launches of 2 processes check every case: the first (torchrun) trains full fine-tuning and LoRA in both matrix
layouts (reference anchor and NLL terms on), resumes a 1-process checkpoint, is refused a resume whose global
batch 2 processes cannot share, and ends with one process SIGKILLing itself; the second resumes that run
through ``accelerate launch --multi_gpu -m sami.cli train --resume``. The 1-process runs train in the test process."""

import json
import shutil

import pytest
import torch

from sami.core.config import ConfigError, to_dict
from sami.train.checkpoints import CHECKPOINTS, CheckpointError
from sami.train.run import train
from tests.helpers import launch_torchrun, launch_two_processes, make_cfg, metrics, weights

CASES = [("full", "shared"), ("full", "naive"), ("lora", "shared"), ("lora", "naive")]
STEPS = 4


def case_cfg(tmp_path, model_dir, name, finetune, layout, **kw):
    """4 steps of anchored SAMI (NLL and reference terms on), a checkpoint every 2 steps, all kept; LoRA with the
    shared layout recomputes its activations (activation checkpointing composes with sharding)."""
    kw = {"max_steps": STEPS, "save_every": 2, "keep_checkpoints": 3, **kw}
    return make_cfg(
        tmp_path,
        model_dir,
        name,
        model={
            "finetune": finetune,
            "lora": {"dropout": 0.0, "r": 4, "alpha": 8},
            "gradient_checkpointing": (finetune, layout) == ("lora", "shared"),
        },
        sami={"layout": layout, "nll_weight": 0.3, "ref_weight": 0.5},
        **kw,
    )


def interrupted_copy(run, name):
    """A copy of a finished run folder as it was when checkpoint-2 had just been written."""
    copy = run.parent / name
    shutil.copytree(run, copy)
    shutil.rmtree(copy / CHECKPOINTS / f"checkpoint-{STEPS}")
    shutil.rmtree(copy / "model")
    return copy


def assert_same_run(a, b):
    """Loss per step within 1e-4 and final weights (all, or the adapters) within 1e-5."""
    la, lb = [m["loss"] for m in metrics(a)], [m["loss"] for m in metrics(b)]
    assert len(la) == len(lb) == STEPS
    assert la == pytest.approx(lb, abs=1e-4)
    wa, wb = weights(a / "model"), weights(b / "model")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=0, msg=k)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    """Every run of this module: the 1-process ones here, the 2-process ones in two launches."""
    tmp = tmp_path_factory.mktemp("sharded")
    # 1 process under sharding: fsdp has nothing to shard and trains as under none, with sharded checkpoints: the
    # reference of the full-naive case, also resumed by 2 processes
    sharded = {("full", "naive"): "fsdp"}
    one = {
        case: train(
            case_cfg(
                tmp, tiny_model_dir, "one-%s-%s" % case, *case, queries_per_device=2, sharding=sharded.get(case, "none")
            )
        )
        for case in CASES
    }
    interrupted_copy(one[("full", "naive")].output_dir, "one-to-two")
    # a global batch of 3 queries, which 2 processes cannot share
    odd = case_cfg(tmp, tiny_model_dir, "odd", "full", "shared", queries_per_device=3, sharding="fsdp", max_steps=2)
    train(odd)

    plan = [
        {"config": to_dict(case_cfg(tmp, tiny_model_dir, "two-%s-%s" % case, *case, sharding="fsdp"))} for case in CASES
    ]
    resumed_by_two = case_cfg(tmp, tiny_model_dir, "one-to-two", "full", "naive", queries_per_device=2, sharding="fsdp")
    plan.append({"config": to_dict(resumed_by_two), "resume": True})
    plan.append({"config": to_dict(odd), "resume": True})
    killed = case_cfg(tmp, tiny_model_dir, "killed", "lora", "naive", sharding="fsdp")
    plan.append({"config": to_dict(killed), "kill_rank": 1, "kill_step": 3})
    (tmp / "plan.json").write_text(json.dumps(plan))
    first = launch_torchrun(["-m", "tests.sharded_worker", str(tmp / "plan.json")])
    resumed = launch_two_processes(["--config", str(tmp / "killed" / "config.yaml"), "--resume"])  # accelerate launch
    return {"tmp": tmp, "one": {c: r.output_dir for c, r in one.items()}, "first": first, "resumed": resumed}


@pytest.mark.distributed
@pytest.mark.parametrize("case", CASES, ids="-".join)
def test_two_sharded_processes_train_as_one(runs, case):
    tmp = runs["tmp"]
    assert (tmp / ("two-%s-%s" % case) / "model").is_dir(), runs["first"].stderr[-3000:]
    assert_same_run(runs["one"][case], tmp / ("two-%s-%s" % case))
    # each process wrote its own shards; no file holds the whole optimiser state
    shards = sorted(p.name for p in (tmp / ("two-%s-%s" % case) / CHECKPOINTS / "checkpoint-2" / "shards").iterdir())
    assert [s for s in shards if s.endswith(".distcp")] == ["__0_0.distcp", "__1_0.distcp"]


@pytest.mark.distributed
def test_sigkill_of_one_process_then_resume_equals_the_uninterrupted_run(runs):
    tmp = runs["tmp"]
    assert runs["first"].returncode != 0  # the launch ended with its killed process
    assert (tmp / "killed" / CHECKPOINTS / "checkpoint-2").is_dir()
    assert runs["resumed"].returncode == 0, runs["resumed"].stderr[-3000:]
    assert_same_run(tmp / "two-lora-naive", tmp / "killed")


@pytest.mark.distributed
def test_checkpoints_reshard_from_1_to_2_and_from_2_to_1_processes(runs, tiny_model_dir):
    tmp = runs["tmp"]
    assert_same_run(tmp / "one-full-naive", tmp / "one-to-two")
    assert json.loads((tmp / "one-to-two" / "model" / "provenance.json").read_text())["num_processes"] == 2
    for finetune in ("full", "lora"):
        two = tmp / f"two-{finetune}-shared"
        interrupted_copy(two, f"two-to-one-{finetune}")
        train(case_cfg(tmp, tiny_model_dir, f"two-to-one-{finetune}", finetune, "shared", sharding="fsdp"), resume=True)
        assert_same_run(two, tmp / f"two-to-one-{finetune}")


@pytest.mark.distributed
def test_a_resume_whose_process_count_does_not_divide_the_global_batch_is_refused(runs):
    message = (runs["tmp"] / "odd.refused").read_text()
    assert "\n" not in message and "2 processes" in message and "global batch of 3" in message


def test_sharded_model_is_a_normal_folder_and_a_full_disk_keeps_the_last_checkpoint(
    tmp_path, tiny_model_dir, monkeypatch, caplog
):
    """One process under sharding: fsdp says it has nothing to shard and writes the same checkpoints and final
    folder; a final save that finds the disk full removes what it wrote and leaves the checkpoints whole."""
    import errno

    from transformers import AutoModelForCausalLM, PreTrainedModel

    cfg = case_cfg(tmp_path, tiny_model_dir, "full-disk", "full", "shared", sharding="fsdp", max_steps=2)

    def disk_full(self, folder, **kwargs):
        (folder / "model.safetensors").parent.mkdir(parents=True, exist_ok=True)
        (folder / "model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(PreTrainedModel, "save_pretrained", disk_full)
        with pytest.raises(CheckpointError, match="no space left") as err:
            train(cfg)
    assert "checkpoint-2" in str(err.value)
    out = tmp_path / "full-disk"
    assert not (out / "model").exists() and not (out / ".model.partial").exists()
    assert "nothing to shard" in caplog.text
    assert sorted(p.name for p in (out / CHECKPOINTS).iterdir()) == ["checkpoint-2"]
    train(cfg, resume=True)  # the run is finished; only its model is written
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    assert type(model).__name__ == json.loads((out / "model" / "config.json").read_text())["architectures"][0]


def test_sharding_is_validated():
    from sami.core.config import from_dict
    from sami.train.config import TrainConfig

    with pytest.raises(ConfigError, match="sharding must be one of"):
        from_dict(TrainConfig, {"sharding": "zero3"})
    with pytest.raises(ConfigError, match="sharding: fsdp is the SAMI loop's"):
        from_dict(TrainConfig, {"method": "sft", "sharding": "fsdp"})


@pytest.mark.parametrize("launch", ["DEEPSPEED", "FSDP"])
def test_a_deepspeed_or_accelerate_fsdp_launch_is_refused_in_one_line(launch):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from sami.core.config import from_dict
    from sami.train import sharding
    from sami.train.config import TrainConfig

    accelerator = SimpleNamespace(
        distributed_type=getattr(DistributedType, launch), num_processes=2, process_index=0, device=torch.device("cpu")
    )
    with pytest.raises(ConfigError, match="DeepSpeed" if launch == "DEEPSPEED" else "torchrun") as err:
        sharding.plan(from_dict(TrainConfig, {"sharding": "fsdp"}), accelerator, "no")
    assert "\n" not in str(err.value)


def test_records_of_several_constitution_counts_are_refused_only_when_sharded():
    from types import SimpleNamespace

    from sami.train import sharding

    queries = [SimpleNamespace(num_constitutions=2), SimpleNamespace(num_constitutions=3)]
    active = sharding.Sharding(world=2, rank=0, device_type="cpu", active=True, mixed=False)
    with pytest.raises(ConfigError, match=r"the same number of constitutions, got \[2, 3\]"):
        sharding.check_single_c(queries, active)
    sharding.check_single_c(queries, None)
    sharding.check_single_c(queries, sharding.Sharding(world=1, rank=0, device_type="cpu", active=False, mixed=False))
