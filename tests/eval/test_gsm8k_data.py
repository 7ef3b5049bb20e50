import pytest

from sami.eval.gsm8k import extract_answer
from sami.eval.gsm8k_data import EVAL_SEED_OFFSET, PROMPTS, gsm8k_prompt, load_problems, parse_gold
from tests.helpers import ROOT

GSM8K_DIR = ROOT.parent / "shared" / "data" / "gsm8k"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She makes 9 * 2 = $18 every day.\n#### 18", 18),
        ("#### 1,234", 1234),
        ("The answer is 42.", 42),
        ("so the final answer is: -7", -7),
        ("The answer is $1,234.50.", 1234.5),
        ("The answer is **12**", 12),
        ("#### 3\nlater The answer is 5", 5),  # the last marker counts
        ("I think it is 18.", None),  # no marker
        ("The answer is unclear.", None),
        ("", None),
    ],
)
def test_strict(text, expected):
    got = extract_answer(text, "strict")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She sells 9 eggs for $2 each, making $18.", 18),
        ("The total is 1,234,567 dollars", 1234567),
        ("He ends up with -5 degrees", -5),
        ("It costs -$3.50 overall", -3.5),
        ("pages 3-4", 4),  # a hyphen between numbers is not a minus sign
        ("about 0.25 of it", 0.25),
        ("18.00 dollars", 18),  # integral decimals come back as int
        ("lists 1,2,3", 3),  # commas not in groups of three separate numbers
        ("€1,000 and £20", 20),
        ("no numbers here", None),
        ("", None),
    ],
)
def test_flexible(text, expected):
    got = extract_answer(text, "flexible")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16 - 3 - 4 = 9 eggs; 9 * 2 = 18 dollars. So she makes 18.", 18),
        ("x = 1,250 apples and 3 pears", 3),  # the last integer after the last "="
        ("total = 1,250", 1250),
        ("change = -4", -4),
        ("a = 2.5", 5),  # the paper's rule takes the last integer, so decimals lose their integer part
        ("no equals sign, the result is 12", 12),  # no "=": the whole text
        ("total = none", None),
        ("", None),
    ],
)
def test_paper(text, expected):
    got = extract_answer(text, "paper")
    assert got == expected and type(got) is type(expected)


def test_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        extract_answer("1", "loose")


def test_gold_parsing():
    assert parse_gold("so 2 + 2 = 4\n#### 4") == 4
    assert parse_gold("#### 1,000") == 1000
    with pytest.raises(ValueError):
        parse_gold("4")


def test_local_gsm8k_files_in_the_original_format():
    if not GSM8K_DIR.is_dir():
        pytest.skip(f"{GSM8K_DIR} is not present in this checkout")
    problems, provenance = load_problems(str(GSM8K_DIR), split="test", limit=5)
    assert len(problems) == 5 and provenance["split"] == "test"
    assert problems[0].gold == 18 and problems[0].question.startswith("Janet")
    train, _ = load_problems(str(GSM8K_DIR / "train.jsonl"))
    assert len(train) == 7473 and train[0].gold == 72


def test_local_file_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "answer": "#### 1"}\n{"question": "q", "answer": "no marker"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: field 'answer'"):
        load_problems(str(path))
    with pytest.raises(FileNotFoundError):
        load_problems(str(tmp_path / "missing"))


def test_gsm_symbolic_is_offline_and_seeded():
    a, prov = load_problems("gsm_symbolic", limit=3, seed=1)
    b, _ = load_problems("gsm_symbolic", limit=3, seed=1)
    assert a == b and len(a) == 3 and prov["seed"] == 1 + EVAL_SEED_OFFSET
    assert all(isinstance(p.gold, int) for p in a)


def test_reasoning_gym_problems_avoid_the_training_pool_and_excluded_queries():
    from sami.data.pools import PoolConfig, PoolSource, load_pool

    pool, _ = load_pool(PoolConfig(sources=[PoolSource(kind="reasoning_gym", name="basic_arithmetic", size=50)]))
    problems, prov = load_problems("reasoning_gym:basic_arithmetic", limit=20, seed=0)
    assert len(problems) == 20 and all(isinstance(p.gold, (int, float)) for p in problems)
    assert not {p.question for p in problems} & {item.prompt for item in pool}  # drawn with another seed
    banned = frozenset(p.question for p in problems[:5])
    kept, prov = load_problems("reasoning_gym:basic_arithmetic", limit=20, seed=0, exclude=banned)
    assert len(kept) == 20 and prov["excluded"] == 5 and not {p.question for p in kept} & banned
    assert [p.question for p in kept[:15]] == [p.question for p in problems[5:]]
    with pytest.raises(ValueError, match="reasoning-gym generator 'no_such_task'"):
        load_problems("reasoning_gym:no_such_task", limit=2)


def test_prompts_are_versioned():
    assert gsm8k_prompt("paper-cot-v1", "Q?") == "Q: Q?\nA: Let's think step by step. First,"
    chat = gsm8k_prompt("chat-cot-v1", "Q?")
    assert chat[0]["role"] == "user" and chat[0]["content"].startswith("Q?")
    assert all(p.extract in ("strict", "flexible", "paper") for p in PROMPTS.values())
    with pytest.raises(ValueError, match="unknown GSM8K prompt"):
        gsm8k_prompt("paper", "Q?")


def test_reasoning_gym_generator_options_reach_the_generator(tmp_path):
    import re

    from sami.data.pools import PoolConfig, load_pool, parse_pool_spec

    easy = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}
    problems, prov = load_problems("reasoning_gym:chain_sum", limit=10, options=easy)
    assert prov["options"] == easy
    for p in problems:
        assert len(re.findall(r"\d+", p.question)) == 2 and all(len(n) == 1 for n in re.findall(r"\d+", p.question))
    src = parse_pool_spec("reasoning_gym:chain_sum,size=5,options.max_digits=1,options.max_terms=2,category=math")
    assert src.options == {"max_digits": 1, "max_terms": 2} and src.category == "math"
    items, _ = load_pool(PoolConfig(sources=[src]))
    assert len(items) == 5 and all(len(re.findall(r"\d+", i.prompt)) <= 2 for i in items)
    local = tmp_path / "gsm8k.jsonl"
    local.write_text('{"question": "1 + 1?", "answer": "#### 2"}\n')
    with pytest.raises(ValueError, match="generator options apply to reasoning_gym sources only"):
        load_problems(str(local), options=easy)
