"""``dojo demo``: the whole system in one run and the report it writes.

from opendojo.demo import DemoSettings, run_demo
summary = run_demo("runs/demo", DemoSettings(minutes=8))
"""

from opendojo.demo.pipeline import SYSTEMS, run_demo
from opendojo.demo.stages import DemoFolderError, DemoSettings
from opendojo.demo.summary import SUMMARY_SECTIONS

__all__ = ["SUMMARY_SECTIONS", "SYSTEMS", "DemoFolderError", "DemoSettings", "run_demo"]
