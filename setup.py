"""Build hook for the compiled pieces: CPU forest inference, fastfilters-exact filters and 3x3 eigenvalues.

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
        Extension(
            "gpuheadless.features._ceigen",
            sources=["gpuheadless/features/_ceigen.c"],
            # -fno-math-errno: sqrtf inline (it never sets errno on the values used here).
            extra_compile_args=["-O3", "-ffp-contract=off", "-fno-math-errno"],
        ),
    ]
)
