"""Build hook for the one compiled piece: the CPU forest-inference extension.

Everything else is declared in pyproject.toml.
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "gpuheadless.forest._cforest",
            sources=["gpuheadless/forest/_cforest.c"],
            extra_compile_args=["-O3"],
        )
    ]
)
