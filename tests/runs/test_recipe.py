"""Recipes: shipped files load, overrides apply, the effective recipe round-trips."""

import pytest

from hprune.core.errors import HpruneError
from hprune.runs.recipe import load_recipe, recipe_names, to_toml


@pytest.mark.parametrize("name", recipe_names())
def test_every_shipped_recipe_loads_and_round_trips(name, tmp_path):
    recipe = load_recipe(name)
    path = tmp_path / "effective.toml"
    path.write_text(to_toml(recipe))
    again = load_recipe(str(path))
    assert again.tables() == recipe.tables() and again.name == recipe.name == name


def test_the_default_keeps_the_settings_chosen_on_val():
    recipe = load_recipe()
    assert recipe.name == "shapes-cpu"
    assert recipe.distill.feat_weight == 1e-4 and recipe.analysis.norm_mode == "mean" and recipe.plan.r_thres == 0.05


def test_set_overrides_in_toml_syntax_or_as_a_bare_string():
    recipe = load_recipe("shapes-cpu", ["distill.steps=7", "distill.pwp=false", "data.source=teacher:16",
                                        "plan.alpha=0.3"])
    assert (recipe.distill.steps, recipe.distill.pwp, recipe.data.source, recipe.plan.alpha) == (7, False, "teacher:16", 0.3)


@pytest.mark.parametrize("item, needle", [
    ("distill.steps=x", "takes a whole number"),
    ("distill.pwp=1", "true or false"),
    ("steps=3", "section.key=value"),
    ("distil.steps=3", "did you mean 'distill'"),
    ("distill.steps=0", "distill.steps must be at least 1"),
    ("plan.alpha=nan", "plan.alpha must be a finite number"),
    # keys unset by default (None) are checked against their annotation, never passed through
    ("plan.alpha=abc", "'plan.alpha' takes a number"),
    ("distill.pwp_boundary=abc", "'distill.pwp_boundary' takes a whole number"),
    ("distill.ema_decay=abc", "'distill.ema_decay' takes a number"),
    ("analysis.max_sequence_length=-5", "must be 0 or more"),
    ("data.sgdistill_above=abc", "'data.sgdistill_above' takes a number"),
    ("evaluate.split='bogus'", "evaluate.split must be one of train, val, test"),
])
def test_bad_overrides_say_what_is_wrong(item, needle):
    with pytest.raises(HpruneError, match=needle):
        load_recipe("shapes-cpu", [item])


@pytest.mark.parametrize("item, key", [("distill.steps=0", "distill.steps"),
                                       ("distill.checkpoint_every=0", "distill.checkpoint_every"),
                                       ("distill.optimizer='rmsprop'", "distill.optimizer"),
                                       ("analysis.norm_mode='zero'", "analysis.norm_mode"),
                                       ("analysis.steps=0", "analysis.steps")])
def test_errors_of_the_library_configs_name_the_recipe_key_not_the_stage_flag(item, key):
    with pytest.raises(HpruneError) as err:
        load_recipe("shapes-cpu", [item])
    message = str(err.value)
    assert message.startswith(key) and f"--set {key}=" in message, message
    assert "--" + key.split(".")[1].replace("_", "-") not in message, message


def test_the_stage_commands_keep_their_flags_in_the_same_errors():
    from hprune.distill.config import DistillConfig

    with pytest.raises(HpruneError, match="^--steps must be at least 1"):
        DistillConfig(steps=0)


def test_an_effective_recipe_keeps_the_name_of_its_source(tmp_path):
    path = tmp_path / "recipe.toml"  # as a run saves it
    path.write_text(to_toml(load_recipe("flux.1-dev", ["distill.steps=7"])))
    again = load_recipe(str(path))
    assert again.name == "flux.1-dev" and again.distill.steps == 7
    other = tmp_path / "mine.toml"
    other.write_text("[distill]\nsteps = 3\n")
    assert load_recipe(str(other)).name == "mine"


def test_a_recipe_file_that_is_not_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[plan\n")
    with pytest.raises(HpruneError, match="not valid TOML"):
        load_recipe(str(bad))


def test_a_recipe_file_that_is_not_utf8(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe[x]")
    with pytest.raises(HpruneError, match="not UTF-8"):
        load_recipe(str(bad))
