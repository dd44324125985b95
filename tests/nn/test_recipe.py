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


def test_recipe_is_frozen_and_hashable():
    r = Recipe.dojo()
    with pytest.raises(AttributeError):
        r.seed = 3
    assert hash(r) == hash(Recipe.dojo()) and replace(r, seed=3) != r


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"format": "fp8"}, "format='fp8' is not known; choose one of cfloat8_1_4_3, cfloat8_1_5_2"),
        ({"format": "fp32", "rounding": "up"},
         "rounding='up' is not known; choose one of nearest, stochastic"),
        ({"format": "fp32", "bias": "learnt"},
         "bias='learnt' is not known; choose one of dynamic, delayed, fixed"),
        ({"format": "fp32", "bias": "fixed"},
         "fixed_bias=None is not allowed; bias='fixed' needs an int 0..63"),
        ({"format": "fp32", "bias": "fixed", "fixed_bias": 64}, "fixed_bias=64 is not allowed"),
        ({"format": "fp32", "fixed_bias": 7}, "fixed_bias=7 is only allowed with bias='fixed'"),
        ({"format": "fp32", "history": 0}, "history=0 is not allowed; it must be an int >= 1"),
        ({"format": "fp32", "margin": -1}, "margin=-1 is not allowed; it must be an int >= 0"),
    ],
)
def test_bad_tensor_policy_names_the_argument_and_the_choices(kwargs, message):
    with pytest.raises(ValueError) as err:
        TensorPolicy(**kwargs)
    assert message in str(err.value)


def test_bad_recipe_fields_are_rejected():
    choices = "fp8_matmul='sometimes' is not known; choose one of auto, always, never"
    with pytest.raises(ValueError, match=choices):
        Recipe(fp8_matmul="sometimes")
    with pytest.raises(TypeError, match="gradient='cfloat8_1_5_2' is not allowed; it must be a TensorPolicy"):
        Recipe(gradient="cfloat8_1_5_2")
    with pytest.raises(TypeError, match="weight_storage='shp' is not allowed"):
        Recipe(weight_storage="shp")
    with pytest.raises(ValueError, match="flags_every=-1 is not allowed; it must be an int >= 0"):
        Recipe(flags_every=-1)
    with pytest.raises(ValueError, match="seed=-1 is not allowed"):
        Recipe(seed=-1)
