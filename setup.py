"""Build hook for the compiled CFloat kernels; all metadata lives in pyproject.toml."""
from setuptools import setup

setup()
