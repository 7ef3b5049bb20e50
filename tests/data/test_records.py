import json

import pytest

from sami.data.records import DataError, read_records, write_records
from tests.helpers import EXAMPLE_DATA, write_jsonl


def good():
    return {
        "id": "q1",
        "category": "math",
        "query": "What is 2 + 2?",
        "constitutions": [
            "1. Show your work.",
            {"principles": [{"name": "step_by_step", "side": "antithesis", "text": "Be terse."}]},
        ],
        "responses": ["2 + 2 = 4, so the answer is 4.", "4"],
        "provenance": {"source": "test"},
    }


def test_example_file_is_valid_and_round_trips(tmp_path):
    records = read_records(EXAMPLE_DATA)
    assert len(records) == 16 and len({r.category for r in records}) == 8
    out = tmp_path / "copy.jsonl"
    write_records(out, records)
    assert read_records(out) == records
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        json.loads(line) for line in EXAMPLE_DATA.read_text().splitlines()
    ]


def test_a_stored_side_is_a_side_and_a_phrasing_and_is_written_back_as_read(tmp_path):
    """Files name a line's words in ``side``: strong or weak (the principle side, in that phrasing) or antithesis."""
    from sami.data.principles import ConstitutionItem

    obj = good()
    obj["constitutions"] = [
        {"principles": [{"name": "a", "side": s, "text": s} for s in ("strong", "weak", "antithesis")]},
        "free text",
    ]
    (record,) = read_records(write_jsonl(tmp_path / "in.jsonl", [obj]))
    lines = record.constitutions[0].items + record.constitutions[1].items
    assert [(i.side, i.phrasing) for i in lines] == [
        ("principle", "strong"),
        ("principle", "weak"),
        ("antithesis", None),
        (None, None),
    ]
    write_records(tmp_path / "out.jsonl", [record])
    assert json.loads((tmp_path / "out.jsonl").read_text()) == obj
    for side, phrasing in [("principle", None), ("antithesis", "weak"), ("strong", None), (None, "strong")]:
        with pytest.raises(ValueError, match="side|phrasing"):
            ConstitutionItem("t", "a", side, phrasing)


def _break(**changes):
    obj = good()
    for key, value in changes.items():
        if value is KeyError:
            del obj[key]
        else:
            obj[key] = value
    return obj


@pytest.mark.parametrize(
    "obj,field",
    [
        (_break(id=KeyError), "missing field"),
        (_break(query=""), "field 'query'"),
        (_break(category=3), "field 'category'"),
        (_break(responses=["only one"]), "field 'responses'"),
        (_break(responses=["a", ""]), r"field 'responses\[1\]'"),
        (_break(constitutions=["just one"]), "field 'constitutions'"),
        (_break(constitutions=["same", "same"]), "identical"),
        (
            _break(constitutions=["a", {"principles": [{"text": "t", "side": "sideways"}]}]),
            r"constitutions\[1\]'.principles\[0\].side",
        ),
        (_break(provenance="x"), "field 'provenance'"),
        (_break(extra=1), "unknown field"),
    ],
)
def test_malformed_record_names_file_line_and_field(tmp_path, obj, field):
    path = write_jsonl(tmp_path / "d.jsonl", [good() | {"id": "q0"}, obj])
    with pytest.raises(DataError, match=rf"d\.jsonl:2: .*{field}"):
        read_records(path)


def test_invalid_json_and_duplicates(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(good()) + "\n\n{not json\n")
    with pytest.raises(DataError, match=r"d\.jsonl:3: invalid JSON"):
        read_records(path)
    write_jsonl(path, [good(), good()])
    with pytest.raises(DataError, match=r"d\.jsonl:2: field 'id': 'q1' already used on line 1"):
        read_records(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_records(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no records"):
        read_records(tmp_path / "empty.jsonl")
