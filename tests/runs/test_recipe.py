"""Recipes: shipped files load, overrides apply, the effective recipe round-trips."""

import pytest

from hprune.errors import HpruneError
from hprune.runs.recipe import load_recipe, recipe_names, to_toml


@pytest.mark.parametrize("name", recipe_names())
def test_every_shipped_recipe_loads_and_round_trips(name, tmp_path):
    recipe = load_recipe(name)
    path = tmp_path / "effective.toml"
    path.write_text(to_toml(recipe))
    again = load_recipe(str(path))
    assert again.tables() == recipe.tables()


def test_the_default_keeps_the_settings_chosen_on_val():
    recipe = load_recipe()
    assert recipe.name == "shapes-cpu"
    assert recipe.distill.feat_weight == 1e-4 and recipe.analysis.norm_mode == "mean" and recipe.plan.r_thres == 0.05


def test_set_overrides_in_toml_syntax_or_as_a_bare_string():
    recipe = load_recipe("shapes-cpu", ["distill.steps=7", "distill.pwp=false", "data.source=teacher:16",
                                        "plan.alpha=0.3"])
    assert (recipe.distill.steps, recipe.distill.pwp, recipe.data.source, recipe.plan.alpha) == (7, False, "teacher:16", 0.3)


@pytest.mark.parametrize("item, needle", [
    ("distill.steps=x", "takes an integer"),
    ("distill.pwp=1", "true or false"),
    ("steps=3", "section.key=value"),
    ("distil.steps=3", "did you mean 'distill'"),
    ("distill.steps=0", "--steps must be at least 1"),
])
def test_bad_overrides_say_what_is_wrong(item, needle):
    with pytest.raises(HpruneError, match=needle):
        load_recipe("shapes-cpu", [item])


def test_a_recipe_file_that_is_not_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[plan\n")
    with pytest.raises(HpruneError, match="not valid TOML"):
        load_recipe(str(bad))
