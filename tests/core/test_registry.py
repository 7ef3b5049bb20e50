import pytest

from sami.backends.base import BACKENDS
from sami.core.errors import ConfigError, PluginError
from sami.core.registry import Registry
from sami.data.checkers import CHECKERS
from sami.data.principles import PLUGIN_LIBRARIES
from sami.data.rewrites import REWRITES
from sami.eval.judges import JUDGES
from sami.eval.run import SUITES


def test_a_registry_keeps_order_refuses_a_taken_name_and_names_the_known_ones():
    colours = Registry("colour")
    colours.register("red", 1)
    assert colours.decorator("blue")(2) == 2
    assert colours.names() == ("red", "blue") and list(colours.items()) == [("red", 1), ("blue", 2)]
    assert colours["blue"] == 2 and "red" in colours and "green" not in colours and colours.get("green") is None
    with pytest.raises(PluginError, match="colour 'red' is already registered"):
        colours.register("red", 3)
    assert colours["red"] == 1  # the first entry stays
    with pytest.raises(ConfigError) as caught:
        colours.lookup("green", "paint.colour")
    assert str(caught.value) == "paint.colour: unknown colour 'green'; known: red, blue"
    with pytest.raises(ConfigError, match="^unknown colour 'green'; known: red, blue$"):
        colours["green"]


def test_every_kind_a_plugin_can_add_is_one_registry_type():
    kinds = {r.kind for r in (CHECKERS, REWRITES, JUDGES, SUITES, BACKENDS, PLUGIN_LIBRARIES)}
    assert kinds == {"checker", "rewrite", "judge", "evaluation suite", "backend", "principle library"}
    with pytest.raises(ConfigError, match="unknown judge 'nope'; known: .*checker"):
        JUDGES["nope"]
    with pytest.raises(ConfigError, match="unknown evaluation suite 'nope'; known: mtbench, gsm8k, mi, adherence"):
        SUITES.lookup("nope")
