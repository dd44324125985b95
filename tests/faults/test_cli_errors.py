"""Every ``dojo`` command ends a failure with one line on stderr and an exit code: 2 for the caller's
mistake, 1 for a run-time failure; ``--debug`` adds the traceback. Checked on real commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from opendojo.cli import main
from opendojo.errors import EXIT_FAILURE, EXIT_USAGE, run_command


def _dojo(*argv, prefix=()):
    """``dojo ARGV`` in a fresh process (started through ``prefix``, e.g. setpriv)."""
    cmd = [*prefix, sys.executable, "-m", "opendojo.cli", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.fixture
def empty_config(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("")
    return path


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["numerics", "encode", "1.0", "--rounding", "stochastic", "--seed", "-1"], "-1"),
        (["data", "synth", "--out", "{tmp}/synth", "--seed", "-1"], "-1"),
        (
            [
                "train",
                "--config",
                "{config}",
                "--out",
                "{tmp}/run",
                "--set",
                "train.seed=9223372036854775808",
            ],
            "config key train.seed: got 9223372036854775808; allowed: an integer in 0..9223372036854775807",
        ),
        (
            ["train", "--config", "{config}", "--out", "{tmp}/run", "--set", "data.seed=-1"],
            "config key data.seed: got -1; allowed: an integer in 0..9223372036854775807",
        ),
        (
            ["train", "--config", "{config}", "--out", "{tmp}/run", "--nproc", "0"],
            "--nproc: got 0; allowed: an integer ≥ 1",
        ),
        (
            ["train", "--config", "{config}", "--out", "{tmp}/run", "--nproc", "2", "--set", "train.steps=0"],
            "config key train.steps: got 0; allowed: an integer ≥ 1",
        ),
    ],
    ids=["numerics-seed", "synth-seed", "train-seed", "data-seed", "nproc", "nproc-config"],
)
def test_out_of_range_numbers_are_one_line_and_exit_2(argv, fragment, tmp_path, empty_config, capsys):
    argv = [a.format(tmp=tmp_path, config=empty_config) for a in argv]
    assert main(argv) == EXIT_USAGE
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"dojo {argv[0]}") and fragment in lines[0], captured.err
    assert "Traceback" not in captured.err
    assert not (tmp_path / "run").exists() and not (tmp_path / "synth").exists()


def test_debug_shows_the_traceback_and_keeps_the_exit_code(tmp_path):
    argv = ["train", "--config", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "run")]
    quiet = _dojo(*argv)
    assert quiet.returncode == EXIT_USAGE
    assert quiet.stderr.splitlines() == [
        f"dojo train: error: --config: got '{tmp_path}/nope.toml'; allowed: a TOML file (it does not exist)"
    ]
    loud = _dojo(*argv, "--debug")
    assert loud.returncode == EXIT_USAGE
    assert loud.stderr.startswith("Traceback (most recent call last):")
    assert "opendojo.errors.UsageError: --config: got" in loud.stderr
    assert loud.stderr.splitlines()[-1] == quiet.stderr.splitlines()[-1]


def test_python_m_opendojo_train_is_the_same_command(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "opendojo.train",
            "--config",
            str(tmp_path / "nope.toml"),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == EXIT_USAGE
    assert out.stderr.splitlines() == [
        f"dojo train: error: --config: got '{tmp_path}/nope.toml'; allowed: a TOML file (it does not exist)"
    ]


def test_a_duckdb_error_is_one_line_and_exit_1(capsys):
    import duckdb

    def query():
        duckdb.connect().execute("SELECT no_such_function(1)")

    assert run_command("dojo data query", query) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("dojo data query: error: DuckDB CatalogException: Catalog Error: Scalar Function")
    assert "no_such_function" in err


def test_an_unexpected_failure_names_its_type_and_points_at_debug(capsys):
    def fail():
        raise RuntimeError("the\nsky fell")

    assert run_command("dojo x", fail) == EXIT_FAILURE
    assert (
        capsys.readouterr().err
        == "dojo x: error: RuntimeError: the / sky fell (--debug shows the traceback)\n"
    )


def test_ctrl_c_ends_quietly_with_130(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert run_command("dojo x", interrupted) == 130
    assert capsys.readouterr().err == "dojo x: interrupted\n"


def test_text_from_file_names_cannot_drive_the_terminal(tmp_path, capsys):
    evil = tmp_path / "\x1b[2J\x1b[31mevil.toml"
    assert main(["train", "--config", str(evil), "--out", str(tmp_path / "run")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "\x1b" not in err
    assert "\\x1b[2J\\x1b[31mevil.toml" in err


# Root reads any file: as root the command runs without the capabilities that let it (setpriv).
_DROP_DAC = ["dac_override", "dac_read_search"]
_AS_USER = (
    []
    if os.geteuid() != 0
    else [
        "setpriv",
        "--inh-caps=" + ",".join(f"-{c}" for c in _DROP_DAC),
        "--bounding-set=" + ",".join(f"-{c}" for c in _DROP_DAC),
    ]
)


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="root without setpriv")
def test_an_unreadable_config_is_one_line_naming_the_path_and_exit_1(tmp_path):
    config = tmp_path / "secret.toml"
    config.write_text("[train]\nsteps = 3\n")
    config.chmod(0o000)
    out = _dojo("train", "--config", str(config), "--out", str(tmp_path / "run"), prefix=_AS_USER)
    assert out.returncode == EXIT_FAILURE, out.stderr
    assert out.stderr.splitlines() == [
        f"dojo train: error: Permission denied (EACCES): '{config}' (--debug shows the traceback)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.toml"]
