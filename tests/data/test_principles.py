import random

import pytest

from sami.core.registry import Registry
from sami.data.checkers import CHECKERS, CheckerSpec
from sami.data.principles import PrincipleLibrary, load_library, sample_constitutions
from sami.data.records import CATEGORIES


def test_builtin_library_covers_the_eight_categories():
    lib = load_library()
    assert set(lib.categories) == set(CATEGORIES)
    multitask = {name for names in lib.categories.values() for name in names}
    assert len(multitask) == 9
    for name in multitask:
        p = lib.get(name)
        assert len({p.strong, p.weak, p.antithesis}) == 3
    assert [p.name for p in lib.for_category("math")] == ["step_by_step", "latex"]


# Per verifiable principle of the built-in library: an answer that follows its positive side, one that follows
# its antithesis.
FOLLOWS = {
    "concise": ("Roots take up water.", "Roots take up water. " * 40),
    "bullet_list": ("- roots\n- stem\n- leaves", "Roots take up water, and the stem carries it up."),
    "numbered_list": ("1. roots\n2. stem\n3. leaves", "Roots take up water, and the stem carries it up."),
    "lowercase": ("roots take up water.", "ROOTS TAKE UP WATER."),
    "keyword": ("In summary, roots take up water.", "Roots take up water."),
    "json_output": ('{"answer": "roots"}', "Roots take up water."),
}


def test_each_verifiable_principle_s_two_checkers_tell_its_sides_apart():
    """Each side's checker passes the answer that follows that side and fails the one that follows the other."""
    from importlib import resources

    builtin = PrincipleLibrary.from_yaml(resources.files("sami") / "data" / "principles.yaml")
    assert sorted(p.name for p in builtin.verifiable) == sorted(FOLLOWS)
    for p in builtin.verifiable:
        positive, antithesis = FOLLOWS[p.name]
        assert p.side_checker("antithesis") is not None, p.name
        for side, answer, other in (("principle", positive, antithesis), ("antithesis", antithesis, positive)):
            assert p.side_checker(side)(answer) and not p.side_checker(side)(other), (p.name, side)


@pytest.mark.parametrize("strategy,expected", [("flip_all", 2), ("flip_one", 4), ("all_combinations", 8)])
def test_sampler_strategies(strategy, expected):
    lib = load_library()
    principles = [lib.get(n) for n in ("step_by_step", "latex", "caring")]
    cons = sample_constitutions(principles, strategy, rng=random.Random(0))
    assert len(cons) == expected
    assert len({frozenset((i.principle, i.side) for i in c.items) for c in cons}) == expected  # distinct
    assert cons[0].num_antitheses == 0
    if strategy == "flip_all":
        assert cons[1].num_antitheses == 3
    if strategy == "flip_one":
        assert [c.num_antitheses for c in cons[1:]] == [1, 1, 1]


def test_sampler_num_keeps_positive_and_is_seeded():
    lib = load_library()
    principles = [lib.get(n) for n in ("step_by_step", "latex", "caring")]
    a = sample_constitutions(principles, "all_combinations", num=3, rng=random.Random(7))
    b = sample_constitutions(principles, "all_combinations", num=3, rng=random.Random(7))
    assert a == b and len(a) == 3 and a[0].num_antitheses == 0
    orders = {
        tuple(i.principle for i in c.items)
        for seed in range(10)
        for c in sample_constitutions(principles, rng=random.Random(seed))
    }
    assert len(orders) > 1  # principle order is shuffled
    with pytest.raises(ValueError):
        sample_constitutions(principles, "flip_all", num=3)
    with pytest.raises(ValueError, match="unknown strategy"):
        sample_constitutions(principles, "flip_some")


def test_the_weak_phrasing_shows_the_weak_words_and_antitheses_have_none():
    lib = load_library()
    (c, flipped) = sample_constitutions([lib.get("latex")], phrasing="weak")
    assert (c.items[0].text, c.items[0].side, c.items[0].phrasing) == (lib.get("latex").weak, "principle", "weak")
    assert (flipped.items[0].text, flipped.items[0].side, flipped.items[0].phrasing) == (
        lib.get("latex").antithesis,
        "antithesis",
        None,
    )
    with pytest.raises(ValueError, match="phrasing"):
        sample_constitutions([lib.get("latex")], phrasing="antithesis")


def test_user_yaml_adds_and_overrides(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "principles:\n"
        "  - {name: latex, strong: Use LaTeX always., antithesis: Never use LaTeX.}\n"
        "  - {name: rhymes, strong: Answer in rhyme., weak: Rhyme if you can., antithesis: Never rhyme.}\n"
        "categories:\n  poetry: [rhymes, latex]\n"
    )
    lib = load_library([path])
    assert lib.get("latex").strong == "Use LaTeX always."
    assert lib.get("latex").weak == "Use LaTeX always."  # weak defaults to strong
    assert [p.name for p in lib.for_category("poetry")] == ["rhymes", "latex"]
    assert "math" in lib.categories


def test_plugin_libraries_come_after_the_builtin_one_and_before_the_users(tmp_path, monkeypatch):
    import sami.data.principles as principles

    monkeypatch.setattr(principles, "PLUGIN_LIBRARIES", Registry("principle library"))
    plugin, user = tmp_path / "plugin.yaml", tmp_path / "user.yaml"
    plugin.write_text(
        "principles:\n  - {name: latex, strong: Plugin LaTeX., antithesis: No.}\n"
        "  - {name: haiku, strong: Write a haiku., antithesis: Never a haiku.}\n"
    )
    user.write_text("principles:\n  - {name: latex, strong: User LaTeX., antithesis: No.}\n")
    principles.register_library(plugin)
    principles.register_library(plugin)  # once is enough
    assert list(principles.PLUGIN_LIBRARIES.values()) == [plugin]
    lib = load_library()
    assert lib.get("latex").strong == "Plugin LaTeX." and lib.get("haiku").weak == "Write a haiku."
    assert load_library([user]).get("latex").strong == "User LaTeX."
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        principles.register_library(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "text,match",
    [
        ("principles:\n  - {name: x, strong: s}\n", "antithesis"),
        ("principles:\n  - {name: x, strong: s, antithesis: a, colour: red}\n", "unknown fields"),
        ("verifiable:\n  - {name: x, strong: s, antithesis: a}\n", "needs a checker"),
        ("verifiable:\n  - {name: x, strong: s, antithesis: a, checker: {name: nope}}\n", "unknown checker"),
        ("verifiable:\n  - {name: x, strong: s, antithesis: a, checker: {name: max_words, m: 3}}\n", "bad parameters"),
        ("categories:\n  poetry: [missing]\n", "unknown principle"),
        ("principle:\n  - {}\n", "unknown top-level"),
    ],
)
def test_user_yaml_errors_name_the_problem(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises((ValueError, KeyError), match=match):
        load_library([path])


CASES = {
    ("max_words", (("n", 5),)): ("one two three", "one two three four five six"),
    ("min_words", (("n", 3),)): ("one two three", "one two"),
    ("bullet_list", (("min_items", 2),)): ("Items:\n- a\n* b", "- a only"),
    ("numbered_list", (("min_items", 2),)): ("1. a\n2) b", "1. a"),
    ("no_list", ()): ("plain prose, no list", "- a\n- b"),
    ("all_lowercase", ()): ("all quiet here.", "Not quiet."),
    ("all_uppercase", ()): ("LOUD!", "Loud"),
    ("include_keyword", (("keyword", "in summary"),)): ("In summary, yes.", "Yes."),
    ("exclude_keyword", (("keyword", "in summary"),)): ("Yes.", "in summary: yes"),
    ("json_format", ()): ('```json\n{"a": 1}\n```', "{'a': 1}"),
    ("not_json", ()): ("hello", "[1, 2]"),
}


@pytest.mark.parametrize("key", list(CASES), ids=[k[0] for k in CASES])
def test_checker_keeps_and_drops(key):
    name, params = key
    keep, drop = CASES[key]
    spec = CheckerSpec(name, dict(params))
    assert spec(keep) is True
    assert spec(drop) is False


def test_every_registered_checker_is_tested():
    assert {name for name, _ in CASES} == set(CHECKERS)


def test_library_from_dict_requires_mapping():
    with pytest.raises(ValueError):
        PrincipleLibrary.from_dict({"principles": ["not a mapping"]})
