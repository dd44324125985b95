"""The CLI's own bad input: one line naming the argument, exit 2; an unreachable server, exit 1."""

from __future__ import annotations

import os
import subprocess

import pytest

from .conftest import DOJO, free_port


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*DOJO, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DOJO_TOKEN": "", **(env or {})})


@pytest.mark.parametrize(("args", "words"), [
    (["serve", "--slots", "0"], "--slots"),
    (["serve", "--port", "70000"], "--port"),
    (["serve", "--executor", "kubernetes"], "--executor"),
    (["jobs", "list"], "--token"),
    (["jobs", "submit", "nope.toml", "--token", "t"], "CONFIG"),
    (["service", "tenant", "add", "bad name!"], "NAME"),
    (["service", "tenant", "disable", "nobody"], "NAME"),
    (["service", "dataset", "add", "fleet", "/does/not/exist"], "PATH"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, args, words):
    if args[0] in ("serve", "service"):
        args = [*args, "--data-dir", str(tmp_path / "data")]
    out = _run(*args)
    assert out.returncode == 2, out.stderr
    assert words in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr


def test_unreachable_server_exits_1_with_one_line():
    out = _run("jobs", "list", "--server", f"http://127.0.0.1:{free_port()}", "--token", "dojo_x_y")
    assert out.returncode == 1 and "cannot reach" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_serve_on_a_taken_port_is_one_line_and_exit_1(tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "opendojo.cli", "serve", "--data-dir", str(tmp_path),
                              "--port", str(port)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in run.stderr and "Traceback" not in run.stderr
