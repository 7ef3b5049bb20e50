import json

import pytest
from safetensors.torch import load_file

from sami.backends.base import Completion, SamplingParams
from sami.backends.transformers_backend import TransformersBackend
from sami.cli import main as cli_main
from sami.core.config import ConfigError, from_dict, to_dict
from sami.data.principles import Constitution, ConstitutionItem
from sami.data.records import read_records
from sami.generate.filters import FilterConfig, MathFilter, opening_distance, reject_reason
from sami.generate.run import GenerateConfig, generate, rejected_path
from sami.study.iterate import IterateConfig, iterate
from tests.helpers import QUERIES, gen_cfg, save_tiny_model


def done(text, reason="stop"):
    return Completion(text, reason, len(text.split()))


def constitution(step_by_step):
    """step_by_step as data files store a line (strong, weak or antithesis), latex in the strong phrasing."""
    return Constitution(
        (
            ConstitutionItem.from_stored("reason", "step_by_step", step_by_step),
            ConstitutionItem("latex", "latex", "principle", "strong"),
        )
    )


# ---------------------------------------------------------------- filters: one kept and one dropped record each


@pytest.mark.parametrize(
    ("cfg", "keep", "drop", "reason"),
    [
        (FilterConfig(), [done("a"), done("b")], [done("a"), done("b c", "length")], "unterminated"),
        (FilterConfig(), [done("a"), done("b")], [done("a"), done("  ")], "empty"),
        (FilterConfig(), [done("a"), done("b")], [done("same "), done("same")], "identical"),
        (
            FilterConfig(banned=["As an AI"]),
            [done("a"), done("b")],
            [done("a"), done("as an ai model, no")],
            "banned: As an AI",
        ),
    ],
)
def test_each_filter_keeps_one_and_drops_one(cfg, keep, drop, reason):
    cons = [constitution("strong"), constitution("antithesis")]
    assert reject_reason(cfg, cons, keep) is None
    assert reject_reason(cfg, cons, drop) == reason


def test_filters_can_be_switched_off():
    cfg = FilterConfig(unterminated=False, empty=False, identical=False)
    cons = [constitution("strong"), constitution("antithesis")]
    assert reject_reason(cfg, cons, [done("x", "length"), done("x")]) is None


LONG = "First, the train covers 60 km in 0.75 h. " * 6 + "So the speed is 80 km/h."
SHORT = "The speed of the train is exactly 80 km/h, no more."


@pytest.mark.parametrize(
    ("long", "short", "reason"),
    [
        (LONG, SHORT, None),
        (LONG, "80 km/h.", "math: short response too short"),
        (LONG[:120], SHORT, "math: length ratio"),
        (SHORT + LONG, SHORT, "math: similar openings"),
    ],
)
def test_math_filters(long, short, reason):
    cfg = FilterConfig(math=MathFilter(enabled=True))
    cons = [constitution("strong"), constitution("antithesis")]
    assert reject_reason(cfg, cons, [done(long), done(short)]) == reason


def test_math_filter_needs_a_step_by_step_contrast():
    cfg = FilterConfig(math=MathFilter(enabled=True))
    same_side = [constitution("strong"), constitution("weak")]
    assert reject_reason(cfg, same_side, [done(LONG), done(SHORT)]) == "math: no step_by_step contrast"
    assert opening_distance("abcdef", "abd") == 1


# ---------------------------------------------------------------- generation


def test_generate_writes_valid_records_with_provenance(tmp_path, pool_file, lively_model, tokenizer):
    cfg = gen_cfg(tmp_path, pool_file, constitutions={"strategy": "flip_one"})
    backend = TransformersBackend(lively_model, tokenizer, batch_size=4)
    result = generate(cfg, backend)
    records = read_records(cfg.output)
    assert result.written == len(records) == len(QUERIES)
    by_id = {r.id: r for r in records}
    math = by_id[f"file:{pool_file}#0"]
    assert math.category == "math" and len(math.constitutions) == 3  # two math principles, flip_one
    assert math.constitutions[0].num_antitheses == 0
    prov = math.provenance
    assert prov["teacher"]["kind"] == "transformers" and prov["generation_template"] == "gen-paper-v1"
    assert prov["sampling"]["max_new_tokens"] == 6 and prov["source"] == f"file:{pool_file}"
    # the teacher's answer is what the backend gives for the rendered generation prompt
    from sami.data.pools import PoolItem
    from sami.data.principles import load_library
    from sami.generate.run import plan_record

    item = PoolItem(math.id, "math", math.query, "")
    _, prompts = plan_record(cfg, load_library(), item)
    expected = backend.generate(prompts, SamplingParams(max_new_tokens=6))
    assert list(math.responses) == [c[0].text.strip() for c in expected]


def test_generation_and_training_shuffle_principles_independently(tmp_path, pool_file, lively_model, tokenizer):
    from sami.data.pools import PoolItem
    from sami.data.principles import load_library
    from sami.data.templates import render_constitution
    from sami.generate.run import plan_record

    cfg = gen_cfg(tmp_path, pool_file)
    library = load_library()
    orders = set()
    for k in range(12):
        cons, prompts = plan_record(cfg, library, PoolItem(f"q{k}", "math", "Q?", "x"))
        gen_text = prompts[0].split("Assistant System Instructions: ")[1].split("\n\nHuman:")[0]
        train_text = render_constitution(cons[0], seed=0, key=f"q{k}")
        orders.add(gen_text == train_text)
    assert orders == {True, False}


def test_filtered_records_go_to_the_filtered_file(tmp_path, pool_file, lively_model, tokenizer):
    cfg = gen_cfg(tmp_path, pool_file, filters={"unterminated": True})
    result = generate(cfg, TransformersBackend(lively_model, tokenizer))
    assert result.written == 0 and result.rejected == {"unterminated": len(QUERIES)}
    dropped = [json.loads(line) for line in rejected_path(cfg.output).read_text().splitlines()]
    assert len(dropped) == len(QUERIES)
    assert all(s["reason"] == "unterminated" and "length" in s["finish_reasons"] for s in dropped)
    assert all(len(s["record"]["responses"]) == 2 for s in dropped)


class Interrupt(RuntimeError):
    pass


class FailingBackend:
    """Delegates to a real backend and raises on the call after ``calls`` successful ones."""

    def __init__(self, inner, calls):
        self.inner, self.calls = inner, calls

    def describe(self):
        return self.inner.describe()

    def generate(self, prompts, params, **kw):
        if self.calls == 0:
            raise Interrupt("killed")
        self.calls -= 1
        return self.inner.generate(prompts, params, **kw)


def test_resume_after_interruption_leaves_no_duplicate_and_no_gap(tmp_path, pool_file, lively_model, tokenizer):
    backend = TransformersBackend(lively_model, tokenizer, batch_size=4)
    reference = gen_cfg(tmp_path / "ref", pool_file)
    generate(reference, backend)
    cfg = gen_cfg(tmp_path, pool_file)
    with pytest.raises(Interrupt):
        generate(cfg, FailingBackend(backend, calls=2))
    assert len(read_records(cfg.output)) == 4  # two chunks of two queries made it
    with open(cfg.output, "a") as f:
        f.write('{"id": "half-written')  # a kill in the middle of a write
    result = generate(cfg, backend)
    assert result.already_done == 4 and result.written == len(QUERIES) - 4
    resumed = read_records(cfg.output)
    assert sorted(r.id for r in resumed) == sorted(r.id for r in read_records(reference.output))
    assert {r.id: r.responses for r in resumed} == {r.id: r.responses for r in read_records(reference.output)}
    again = generate(cfg, backend)
    assert again.written == 0 and again.already_done == len(QUERIES)


def test_a_changed_config_is_refused_but_more_queries_resume(tmp_path, pool_file, lively_model, tokenizer):
    backend = TransformersBackend(lively_model, tokenizer)
    generate(gen_cfg(tmp_path, pool_file, num_queries=3), backend)
    assert generate(gen_cfg(tmp_path, pool_file, num_queries=5), backend).written == 2
    with pytest.raises(ConfigError, match="sampling.max_new_tokens: 6 -> 9"):
        generate(gen_cfg(tmp_path, pool_file, sampling={"max_new_tokens": 9}), backend)


def test_an_output_written_before_a_key_was_renamed_resumes(tmp_path, pool_file, lively_model, tokenizer):
    """Its .generate.yaml holds constitutions.side, the phrasing's old name: the same phrasing resumes, another
    is refused under the new name."""
    from sami.generate.run import config_path

    backend = TransformersBackend(lively_model, tokenizer)
    cfg = gen_cfg(tmp_path, pool_file, num_queries=3)
    generate(cfg, backend)
    saved = config_path(cfg.output)
    text = saved.read_text()
    assert "  phrasing: strong\n" in text
    saved.write_text(text.replace("  phrasing: strong\n", "  side: strong\n"))
    assert generate(gen_cfg(tmp_path, pool_file, num_queries=5), backend).written == 2
    with pytest.raises(ConfigError, match="constitutions.phrasing: 'strong' -> 'weak'"):
        generate(gen_cfg(tmp_path, pool_file, num_queries=5, constitutions={"phrasing": "weak"}), backend)


def test_cli_generate(tmp_path, pool_file, lively_model, tokenizer, capsys):
    folder = tmp_path / "teacher"
    lively_model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    out = tmp_path / "cli" / "train.jsonl"
    argv = [
        "generate",
        "--teacher",
        str(folder),
        "--pool",
        f"file:{pool_file},text_field=text,category_field=cat,max=3",
    ]
    argv += ["--out", str(out), "-o", "sampling.max_new_tokens=5", "-o", "filters.unterminated=false"]
    assert cli_main(argv) == 0
    assert "wrote 3 records" in capsys.readouterr().out
    assert len(read_records(out)) == 3
    assert cli_main(argv[:-2] + ["-o", "filters.unterminated=true"]) == 2
    assert "different configuration" in capsys.readouterr().err


# ---------------------------------------------------------------- iterate


def test_two_round_iterate_trains_from_the_previous_round(tmp_path, pool_file, tokenizer):
    student = save_tiny_model(tmp_path / "student", tokenizer, init_std=0.2)
    data = {
        "output_dir": str(tmp_path / "it"),
        "rounds": 2,
        "queries_per_round": 3,
        "steps_per_round": 2,
        "generate": to_dict(gen_cfg(tmp_path, pool_file)),
        "train": {
            "model": {"name_or_path": str(student)},
            "max_prompt_tokens": 48,
            "max_response_tokens": 8,
            "optim": {"lr": 1e-2},
        },
    }
    cfg = from_dict(IterateConfig, data)
    results = iterate(cfg)
    assert [r.round for r in results] == [1, 2]
    r1, r2 = (tmp_path / "it" / f"round-{k}" for k in (1, 2))
    ids1 = {r.id for r in read_records(r1 / "data" / "train.jsonl")}
    ids2 = {r.id for r in read_records(r2 / "data" / "train.jsonl")}
    assert len(ids1) == len(ids2) == 3 and not ids1 & ids2  # fresh queries each round
    w0 = load_file(student / "model.safetensors")
    w1 = load_file(r1 / "train" / "model" / "model.safetensors")
    w2 = load_file(r2 / "train" / "model" / "model.safetensors")
    key = "model.layers.0.mlp.down_proj.weight"
    assert not (w0[key] == w1[key]).all() and not (w1[key] == w2[key]).all()
    prov2 = json.loads((r2 / "train" / "model" / "provenance.json").read_text())
    assert prov2["model"]["init_from"] == str(r1 / "train" / "model")
    teacher2 = read_records(r2 / "data" / "train.jsonl")[0].provenance["teacher"]["model"]
    assert teacher2 == str(r1 / "train" / "model")  # round 2's data came from round 1's student
    again = iterate(cfg)
    assert all(r.train is None for r in again)


@pytest.mark.slow
def test_embedded_teacher_writes_records_from_the_builtin_pool(tmp_path):
    cfg = from_dict(
        GenerateConfig,
        {
            "output": str(tmp_path / "train.jsonl"),
            "num_queries": 3,
            "pool": {"sources": [{"kind": "builtin", "categories": ["writing", "stem", "coding"]}]},
            "teacher": {"model": "smollm2-135m", "batch_size": 6},
            "sampling": {"max_new_tokens": 40},
            "filters": {"unterminated": False},
        },
    )
    result = generate(cfg)
    records = read_records(cfg.output)
    assert result.written + sum(result.rejected.values()) == 3 and len(records) == result.written >= 2
    for record in records:
        assert record.id.startswith("builtin-") and len(record.responses) == 2
        assert all(len(r.split()) >= 3 for r in record.responses)  # real text, not fragments
        assert record.provenance["teacher"]["model"] == "smollm2-135m"


def test_a_full_disk_while_writing_records_names_the_output(tmp_path, pool_file, lively_model, tokenizer, monkeypatch):
    """A hand-made fault: the record's write fails with ENOSPC, as on a full tmpfs (the error names no file)."""
    import errno

    import sami.generate.run
    from sami.cli import describe_error

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sami.generate.run, "_append", full)
    cfg = gen_cfg(tmp_path, pool_file)
    with pytest.raises(OSError) as caught:
        generate(cfg, TransformersBackend(lively_model, tokenizer, batch_size=4))
    code, text = describe_error(caught.value)
    assert code == 1 and text.startswith(f"no space left on {cfg.output}")
