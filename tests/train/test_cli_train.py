from opendojo.cli import main


def test_dojo_train_reports_a_bad_config_key_and_exits_2(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text("[train]\nstepz = 3\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "dojo train: error: unknown config key(s) train.stepz; allowed in [train]: steps" in err
    assert not (tmp_path / "run").exists()


def test_dojo_train_reports_a_missing_config_file(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "run")]) == 2
    assert "dojo train: error: --config: got" in (err := capsys.readouterr().err)
    assert "nope.toml'; allowed: a TOML file (it does not exist)" in err


def test_dojo_train_runs_and_prints_the_final_metrics(tmp_path, capsys, tiny_overrides):
    config = tmp_path / "c.toml"
    config.write_text("")
    args = ["train", "--config", str(config), "--out", str(tmp_path / "run"), "--steps", "2", "--no-progress"]
    assert main([*args, *[f"--set={o}" for o in tiny_overrides]]) == 0
    out = capsys.readouterr().out
    assert "done: 2 steps" in out and "occupancy IoU" in out and "ADE" in out
    assert (tmp_path / "run" / "checkpoints" / "step_00000002" / "model.safetensors").is_file()
