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
