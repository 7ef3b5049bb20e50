import pytest

from sami.core.tokens import encode_query
from sami.data.records import parse_record
from sami.data.templates import build_prompt, render_constitution, response_end_token
from sami.train.pairs import PromptSettings, dpo_pairs, most_flipped, sft_example, tokenize_pair, tokenize_sft

PRINCIPLES = {"a": ("Be brief.", "Ramble on."), "b": ("Use lists.", "Never use lists."), "c": ("Be kind.", "Be rude.")}


def constitution(*flipped: str) -> dict:
    return {
        "principles": [
            {"name": n, "side": "antithesis" if n in flipped else "strong", "text": anti if n in flipped else strong}
            for n, (strong, anti) in PRINCIPLES.items()
        ]
    }


def record(flips: list[tuple[str, ...]]):
    return parse_record(
        {
            "id": "r1",
            "category": "writing",
            "query": "Say hello.",
            "constitutions": [constitution(*f) for f in flips],
            "responses": [f"response {k}" for k in range(len(flips))],
            "provenance": {},
        },
        "test",
    )


SETTINGS = PromptSettings(template="paper-v1", seed=0, prompt_constitution="positive")


def positive_prompt(rec) -> str:
    """The prompt SAMI builds for constitution 0 (sami.train.run.encode_records)."""
    return build_prompt("paper-v1", render_constitution(rec.constitutions[0], seed=0, key=f"{rec.id}:0"), rec.query)


@pytest.mark.parametrize(
    "flips, expected_most_flipped",
    [
        ([(), ("a", "b", "c")], 1),  # C = 2: the other one
        ([(), ("a",), ("a", "b", "c")], 2),  # C = 3: all flipped beats one flipped
        ([(), ("b",), ("a", "c"), ("c",)], 2),  # C = 4: two flips beat one
        ([(), ("a", "b"), ("b", "c"), ("c",)], 1),  # a tie goes to the first
    ],
)
def test_pairs_for_2_3_and_4_constitutions(flips, expected_most_flipped):
    rec = record(flips)
    prompt = positive_prompt(rec)
    assert prompt.startswith("Assistant System Instructions: 1. ") and prompt.endswith(
        "Human: Say hello.\n\nAssistant:"
    )
    assert most_flipped(rec) == expected_most_flipped

    assert dpo_pairs(rec, SETTINGS) == [
        {"prompt": prompt, "chosen": " response 0", "rejected": f" response {expected_most_flipped}"}
    ]
    each = dpo_pairs(rec, SETTINGS, rejected="each_other")
    assert each == [
        {"prompt": prompt, "chosen": " response 0", "rejected": f" response {k}"} for k in range(1, len(flips))
    ]
    assert sft_example(rec, SETTINGS) == {"prompt": prompt, "completion": " response 0"}


def test_prompt_without_constitution():
    rec = record([(), ("a", "b", "c")])
    settings = PromptSettings(template="paper-v1", seed=0, prompt_constitution="none")
    assert sft_example(rec, settings)["prompt"] == "Human: Say hello.\n\nAssistant:"
    assert dpo_pairs(rec, settings)[0]["prompt"] == "Human: Say hello.\n\nAssistant:"


def test_most_flipped_needs_marked_principles_beyond_two():
    free = parse_record(
        {
            "id": "f",
            "category": "writing",
            "query": "q",
            "constitutions": ["Be brief.", "Ramble.", "Shout."],
            "responses": ["x", "y", "z"],
            "provenance": {},
        },
        "test",
    )
    with pytest.raises(ValueError, match="each_other"):
        most_flipped(free)
    assert len(dpo_pairs(free, SETTINGS, rejected="each_other")) == 2
    with pytest.raises(ValueError, match="must be the positive one"):
        most_flipped(record([("a",), ()]))


@pytest.mark.parametrize("template", ["paper-v1", "chat-v1"])
def test_tokens_are_samis(tokenizer, example_records, template):
    """SFT and DPO see exactly the ids SAMI scores for (prompt 0, response 0) and (prompt 0, response j)."""
    rec = example_records[0]
    settings = PromptSettings(template=template, seed=0)
    limits = dict(template=template, max_prompt_tokens=40, max_response_tokens=16)
    from sami.train.config import TrainConfig
    from sami.train.encoding import encode_records

    sami_tokens = encode_records(
        [rec], tokenizer, TrainConfig(template=template, max_prompt_tokens=40, max_response_tokens=16)
    )[0]
    pair = tokenize_pair(dpo_pairs(rec, settings, tokenizer=tokenizer)[0], tokenizer, **limits)
    assert tuple(pair["prompt_ids"]) == sami_tokens.prompt_ids[0]
    assert tuple(pair["chosen_ids"]) == sami_tokens.response_ids[0]
    assert tuple(pair["rejected_ids"]) == sami_tokens.response_ids[1]
    sft = tokenize_sft(sft_example(rec, settings, tokenizer), tokenizer, **limits)
    assert sft["input_ids"] == list(sami_tokens.prompt_ids[0] + sami_tokens.response_ids[0])
    n = len(sami_tokens.prompt_ids[0])
    assert sft["completion_mask"] == [0] * n + [1] * (len(sft["input_ids"]) - n)
    short = tokenize_sft({"prompt": "Hi", "completion": " there"}, tokenizer, **limits)
    end = response_end_token(template, tokenizer)
    assert short["input_ids"][-1] == end  # the closing token is part of the completion, as in SAMI
    reference = encode_query(tokenizer, ["Hi", "Ho"], [" there", " you"], end_token_id=end)
    assert short["input_ids"] == list(reference.prompt_ids[0] + reference.response_ids[0])
