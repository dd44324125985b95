from pathlib import Path

import pytest

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
        ("train.steps=1.5", r"config key train.steps: expected int, got 1.5"),
        ("train.steps=true", r"config key train.steps: expected int, got True"),
        ("train.fsdp=1", r"config key train.fsdp: expected bool \(true/false\), got 1"),
        (
            "train.precision=fp16",
            r"config key train.precision: 'fp16' is not allowed; allowed: fp32, bf16, dojo, "
            r"dojo_lean",
        ),
        ("model.preset=huge", r"config key model.preset: 'huge' is not allowed; allowed: tiny, base, large"),
        ("train.steps=0", r"config key train.steps: 0 is not allowed; must be >= 1"),
        ("train.lr=0", r"config key train.lr: 0.0 is not allowed; must be > 0.0"),
        ("train.lr=nan", r"config key train.lr: must be a finite float, got nan"),
        ("train.min_lr=1.0", r"config key train.min_lr=1.0 must be <= train.lr"),
        ("trainsteps=3", r"override key 'trainsteps' must be table.key"),
    ],
)
def test_bad_config_values_name_the_key_and_what_is_allowed(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_bad_files_are_reported_with_their_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file .*nope.toml' does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps = 3\n")
    with pytest.raises(ValueError, match="bad.toml' is not valid TOML"):
        load_config(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[train]\nwarmup = 3\n")
    with pytest.raises(ValueError, match=r"unknown config key\(s\) train.warmup"):
        load_config(wrong)
