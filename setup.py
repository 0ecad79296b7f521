"""Build hook for the compiled pieces: CPU forest inference and fastfilters-exact FIR filters.

Everything else is declared in pyproject.toml.
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "gpuheadless.forest._cforest",
            sources=["gpuheadless/forest/_cforest.c"],
            extra_compile_args=["-O3"],
        ),
        # -ffp-contract=off: the filter's unfused steps must round the product and the sum apart.
        Extension(
            "gpuheadless.features._cfilters",
            sources=["gpuheadless/features/_cfilters.c"],
            extra_compile_args=["-O3", "-ffp-contract=off"],
        ),
    ]
)
