from pathlib import Path

import pytest

from opendojo.errors import UsageError
from opendojo.train.config import Config, config_from_dict, config_to_dict, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["tiny", "base", "large"])
def test_shipped_configs_validate(name):
    config = load_config(CONFIGS / f"{name}.toml")
    assert config.model.preset == name


def test_overrides_are_typed_and_a_bare_word_is_a_string():
    c = load_config(
        None,
        ["train.lr=3e-4", "train.steps=7", "train.precision=dojo", "train.fsdp=true", 'data.source="/tmp/x"'],
    )
    assert (c.train.lr, c.train.steps, c.train.precision, c.train.fsdp) == (3e-4, 7, "dojo", True)
    assert c.data.source == "/tmp/x"
    assert load_config(None, {"train.lr": 1}).train.lr == 1.0  # an int is a fine float


def test_round_trip_through_a_dict():
    c = load_config(None, ["train.steps=3", "loss.speed=0.5"])
    assert config_from_dict(config_to_dict(c)) == c


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        Config().train.steps = 3


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.stepz=3", r"unknown config key\(s\) train.stepz; allowed in \[train\]: steps, batch_size"),
        ("optim.lr=3", r"unknown config table\(s\) \['optim'\]; allowed tables: model, data, train, loss"),
        ("train.steps=1.5", r"config key train.steps: got 1.5; allowed: an integer ≥ 1"),
        ("train.steps=true", r"config key train.steps: got True; allowed: an integer ≥ 1"),
        ("train.fsdp=1", r"config key train.fsdp: got 1; allowed: true or false"),
        (
            "train.precision=fp16",
            r"train.precision: got 'fp16'; allowed: fp32, bf16, dojo, dojo_lean",
        ),
        ("model.preset=huge", r"config key model.preset: got 'huge'; allowed: tiny, base, large"),
        ("train.steps=0", r"config key train.steps: got 0; allowed: an integer ≥ 1"),
        ("train.lr=0", r"config key train.lr: got 0.0; allowed: a finite number > 0.0"),
        ("train.lr=nan", r"config key train.lr: got nan; allowed: a finite number > 0.0"),
        ("train.beta1=1.0", r"config key train.beta1: got 1.0; allowed: a finite number in 0.0..0.999999"),
        ("train.min_lr=1.0", r"config key train.min_lr: got 1.0; allowed: at most train.lr=0.002"),
        ("train.seed=-1", r"config key train.seed: got -1; allowed: an integer in 0..9223372036854775807"),
        (
            "train.seed=9223372036854775808",
            r"train.seed: got 9223372036854775808; allowed: an integer in",
        ),
        ("data.seed=-1", r"config key data.seed: got -1; allowed: an integer in 0\.\."),
        ("trainsteps=3", r"--set: got key 'trainsteps'; allowed: table.key"),
        ("train.steps", r"--set: got 'train.steps'; allowed: table.key=value"),
    ],
)
def test_bad_config_values_name_the_key_and_what_is_allowed(override, message):
    with pytest.raises(UsageError, match=message):
        load_config(None, [override])


def test_the_preset_names_are_the_models_presets():
    from opendojo.models import PRESETS

    for name in PRESETS:
        assert load_config(None, [f"model.preset={name}"]).model.preset == name


def test_bad_files_are_reported_with_their_path(tmp_path):
    with pytest.raises(UsageError, match="--config: got .*nope.toml'; allowed: a TOML file"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps = 3\n")
    with pytest.raises(ValueError, match="bad.toml' is not valid TOML"):
        load_config(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[train]\nwarmup = 3\n")
    with pytest.raises(ValueError, match=r"unknown config key\(s\) train.warmup"):
        load_config(wrong)
