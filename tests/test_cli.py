import subprocess
import sys

from opendojo import __version__
from opendojo.cli import main


def test_version_prints_package_version(capsys):
    assert main(["version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_help_runs_as_a_console_command():
    out = subprocess.run([sys.executable, "-m", "opendojo.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "dojo" in out.stdout


def test_output_piped_into_a_closed_pipe_ends_quietly():
    # `dojo hw show ... | head -1`: the reader goes away; no traceback on stderr.
    cmd = [sys.executable, "-m", "opendojo.cli", "numerics", "table", "--format", "cfloat16_shp"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err
