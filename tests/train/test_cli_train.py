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


def test_the_cli_offers_the_trainers_precisions_and_builds_without_torch():
    import subprocess
    import sys

    from opendojo.cli import build_parser
    from opendojo.train.config import PRECISIONS

    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    precision = next(a for a in train_parser._actions if a.dest == "precision")
    assert tuple(precision.choices) == PRECISIONS
    code = "import sys, opendojo.cli as c; c.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_no_trainer_module_imports_the_cli():
    import ast
    from pathlib import Path

    import opendojo.train

    for path in Path(opendojo.train.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            assert not any(n == "opendojo.cli" or n.startswith("opendojo.cli.") for n in names), path


def test_debug_is_accepted_after_the_subcommand(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.toml"), "--out", str(tmp_path), "--debug"]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err
