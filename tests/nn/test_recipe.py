"""Recipes: presets and the errors bad policies raise."""

from dataclasses import replace

import pytest

from opendojo.nn import Recipe, TensorPolicy


def test_presets_round_what_the_issue_says():
    dojo, lean, fp32 = Recipe.dojo(), Recipe.dojo_lean(), Recipe.fp32()
    assert (dojo.activation.format, dojo.weight.format, dojo.gradient.format) == (
        "cfloat8_1_4_3", "cfloat8_1_4_3", "cfloat8_1_5_2")
    assert dojo.gradient.rounding == "stochastic" and dojo.weight_storage is None
    assert lean.weight_storage == TensorPolicy("cfloat16_shp", "stochastic", "dynamic")
    assert fp32.is_identity and not dojo.is_identity and not lean.is_identity


def test_rounding_is_the_numerics_round_mode_whether_given_by_name_or_enum():
    from opendojo.numerics import RoundMode

    by_name = TensorPolicy("cfloat8_1_5_2", "stochastic")
    by_enum = TensorPolicy("cfloat8_1_5_2", RoundMode.STOCHASTIC)
    assert by_name == by_enum and hash(by_name) == hash(by_enum)
    assert by_name.rounding is RoundMode.STOCHASTIC


def test_recipe_is_frozen_and_hashable():
    r = Recipe.dojo()
    with pytest.raises(AttributeError):
        r.seed = 3
    assert hash(r) == hash(Recipe.dojo()) and replace(r, seed=3) != r


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"format": "fp8"},
         "format: got 'fp8'; allowed: cfloat8_1_4_3, cfloat8_1_5_2, cfloat16_shp, cfloat16_uhp, fp32"),
        ({"format": "fp32", "rounding": "up"},
         "rounding: got 'up'; allowed: nearest, stochastic, toward_zero"),
        ({"format": "fp32", "bias": "learnt"},
         "bias: got 'learnt'; allowed: dynamic, delayed, fixed"),
        ({"format": "fp32", "bias": "fixed"},
         "fixed_bias: got None; allowed: an integer in 0..63"),
        ({"format": "fp32", "bias": "fixed", "fixed_bias": 64},
         "fixed_bias: got 64; allowed: an integer in 0..63"),
        ({"format": "fp32", "fixed_bias": 7}, "fixed_bias: got 7; allowed: None unless bias='fixed'"),
        ({"format": "fp32", "history": 0}, "history: got 0; allowed: an integer ≥ 1"),
        ({"format": "fp32", "margin": -1}, "margin: got -1; allowed: an integer ≥ 0"),
    ],
)
def test_bad_tensor_policy_names_the_argument_and_the_choices(kwargs, message):
    with pytest.raises(ValueError) as err:
        TensorPolicy(**kwargs)
    assert message in str(err.value)


def test_bad_recipe_fields_are_rejected():
    choices = "fp8_matmul: got 'sometimes'; allowed: auto, always, never"
    with pytest.raises(ValueError, match=choices):
        Recipe(fp8_matmul="sometimes")
    with pytest.raises(TypeError, match="gradient='cfloat8_1_5_2' is not allowed; it must be a TensorPolicy"):
        Recipe(gradient="cfloat8_1_5_2")
    with pytest.raises(TypeError, match="weight_storage='shp' is not allowed"):
        Recipe(weight_storage="shp")
    with pytest.raises(ValueError, match="flags_every: got -1; allowed: an integer ≥ 0"):
        Recipe(flags_every=-1)
    with pytest.raises(ValueError, match="seed: got -1; allowed: an integer in 0"):
        Recipe(seed=-1)
