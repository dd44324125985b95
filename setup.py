"""Build hook for the compiled CFloat kernels; all metadata lives in pyproject.toml.

The extension is optional: if no C compiler is available the build carries on and
``opendojo.numerics`` falls back to its torch-ops path (same bits, slower).
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "opendojo.numerics._ckernel",
            sources=["src/opendojo/numerics/_ckernel.c"],
            extra_compile_args=["-O3", "-std=c11", "-fno-math-errno", "-pthread"],
            extra_link_args=["-pthread"],
            optional=True,
        )
    ]
)
