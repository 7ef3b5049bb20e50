"""The rewrite teacher: deterministic rewrites that put one answer on either side of a verifiable principle."""

import pytest

from sami.backends.base import Completion
from sami.core.config import ConfigError
from sami.data.principles import load_library, sample_constitutions
from sami.data.records import read_records
from sami.data.rewrites import bullets, prose
from sami.generate.run import generate, rewrite_responses
from tests.helpers import QUERIES, gen_cfg

ANSWERS = [
    "The Eiffel Tower is in Paris. It was built in 1889 for the World's Fair. It is 330 metres tall.",
    "Water expands when it freezes, so ice is less dense than liquid water and floats",
    "1. Preheat the oven.\n2. Mix flour, eggs and milk.\n3. Bake for 20 minutes.",
    "- First point\n- Second point, with a clause; and more\n\nIn summary, that is all.",
    "Short answer with one sentence, two clauses",
    'He said "yes". Then: no! Why? Because.',
]

REWRITABLE = [p for p in load_library().verifiable if p.rewritable]


def test_the_library_declares_rewrites_for_its_format_principles():
    assert {p.name for p in REWRITABLE} >= {"bullet_list", "numbered_list", "lowercase", "keyword", "json_output"}


@pytest.mark.parametrize("principle", REWRITABLE, ids=lambda p: p.name)
@pytest.mark.parametrize("answer", ANSWERS)
def test_every_declared_rewrite_passes_its_own_sides_checker(principle, answer):
    for side in ("principle", "antithesis"):
        text = principle.side_rewrite(side)(answer)
        assert principle.side_checker(side)(text), (principle.name, side, text)
        other = "antithesis" if side == "principle" else "principle"
        assert not principle.side_checker(other)(text), (principle.name, side, text)


def test_bullets_and_prose_by_hand():
    assert bullets("One. Two. Three.") == "- One.\n- Two.\n- Three."
    # too few sentences: the longest is cut at clauses, then at words
    assert bullets("Alpha, beta; gamma.") == "- Alpha,\n- beta;\n- gamma."
    assert bullets("four words right here") == "- four\n- words\n- right here"
    assert prose("1. Preheat.\n2. Mix.\n- Bake.") == "Preheat. Mix. Bake."


def test_rewritten_constitutions_differ_exactly_in_their_sides():
    library = load_library()
    principles = [library.get("lowercase"), library.get("bullet_list")]
    constitutions = sample_constitutions(principles, "all_combinations")
    answer = Completion(ANSWERS[0], "stop", 30)
    responses, applied, reason = rewrite_responses(principles, constitutions, answer)
    assert reason is None and len(responses) == 4 and len({r.text for r in responses}) == 4
    by_sides = {}
    for steps, response in zip(applied, responses, strict=True):
        side = {step["principle"]: step["side"] for step in steps}  # as data files store it: strong or antithesis
        by_sides[(side["lowercase"], side["bullet_list"])] = response.text
    assert by_sides[("strong", "strong")] == bullets(ANSWERS[0]).lower()
    assert by_sides[("antithesis", "antithesis")] == ANSWERS[0].upper()
    assert by_sides[("strong", "antithesis")] == ANSWERS[0].lower()
    assert by_sides[("antithesis", "strong")] == bullets(ANSWERS[0]).upper()


@pytest.mark.parametrize("pair", [("lowercase", "keyword"), ("lowercase", "json_output"), ("keyword", "lowercase")])
def test_case_rewrites_come_last_whatever_the_principle_order(pair):
    """Added words ("In summary, ...") and JSON keys end up in the case the constitution asks for."""
    library = load_library()
    principles = [library.get(name) for name in pair]
    constitutions = sample_constitutions(principles, "all_combinations")
    responses, applied, reason = rewrite_responses(principles, constitutions, Completion(ANSWERS[0], "stop", 30))
    assert reason is None, reason
    for steps in applied:
        assert steps[-1]["rewrite"] in ("lowercase", "uppercase")


def test_a_rewrite_that_fails_its_checker_drops_the_record():
    library = load_library()
    principles = [library.get("lowercase")]
    constitutions = sample_constitutions(principles, "flip_all")
    _, _, reason = rewrite_responses(principles, constitutions, Completion("123 456", "stop", 2))
    assert reason == "rewrite: lowercase (principle side) fails its checker"  # no letters: neither case checker passes


def test_rewrite_teacher_generates_one_answer_per_query(tmp_path, pool_file, lively_model, tokenizer):
    from sami.backends.base import SamplingParams
    from sami.backends.transformers_backend import TransformersBackend

    cfg = gen_cfg(
        tmp_path,
        pool_file,
        teacher_mode="rewrite",
        template="gen-chat-v1",
        constitutions={"principles": ["lowercase", "bullet_list"], "strategy": "all_combinations"},
        sampling={"max_new_tokens": 12},
    )
    backend = TransformersBackend(lively_model, tokenizer, batch_size=4)
    result = generate(cfg, backend)
    records = read_records(cfg.output)
    assert result.written + sum(result.rejected.values()) == len(QUERIES)
    assert records, result.rejected
    library = load_library()
    for record in records:
        prov = record.provenance
        assert prov["teacher_mode"] == "rewrite" and len(record.responses) == 4
        # the teacher answered the query alone, and every response is that answer rewritten
        (expected,) = backend.generate([[{"role": "user", "content": record.query}]], SamplingParams(12))[0:1]
        assert prov["teacher_answer"] == expected[0].text.strip()
        for constitution, response in zip(record.constitutions, record.responses, strict=True):
            for item in constitution.items:
                assert library.get(item.principle).side_checker(item.side)(response)


def test_rewrite_mode_refuses_principles_without_rewrites(tmp_path, pool_file):
    cfg = gen_cfg(tmp_path, pool_file, teacher_mode="rewrite", constitutions={"principles": ["concise"]})
    with pytest.raises(ConfigError, match="'concise' does not declare rewrite"):
        generate(cfg)
    cfg = gen_cfg(tmp_path, pool_file, teacher_mode="rewrite")
    with pytest.raises(ConfigError, match="needs constitutions.principles"):
        generate(cfg)
