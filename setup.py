"""Build hook for the compiled pieces: CPU forest inference, fastfilters-exact filters, 3x3 eigenvalues,
the 2D skeleton features, the objects' moment sums and their threshold smoothing.

Everything else is declared in pyproject.toml.
"""
import glob
import os
import shutil

from setuptools import Extension, setup
from setuptools.command.build_py import build_py


class BuildWithKernels(build_py):
    """Also ship the CUDA sources of kernels/ inside the package (gpuheadless/kernels/)."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "gpuheadless", "kernels")
        os.makedirs(target, exist_ok=True)
        here = os.path.dirname(os.path.abspath(__file__))
        for source in glob.glob(os.path.join(here, "kernels", "*.cu")) + glob.glob(os.path.join(here, "kernels", "*.h")):
            shutil.copy(source, target)


setup(
    cmdclass={"build_py": BuildWithKernels},
    ext_modules=[
        Extension(
            "gpuheadless.forest._cforest",
            sources=["gpuheadless/forest/_cforest.c"],
            extra_compile_args=["-O3"],
        ),
        # -ffp-contract=off: the probabilities add and divide exactly as _cforest's do.
        Extension(
            "gpuheadless.forest._csmalltrees",
            sources=["gpuheadless/forest/_csmalltrees.c"],
            extra_compile_args=["-O3", "-ffp-contract=off"],
        ),
        # -ffp-contract=off: the filter's unfused steps must round the product and the sum apart.
        Extension(
            "gpuheadless.features._cfilters",
            sources=["gpuheadless/features/_cfilters.c"],
            extra_compile_args=["-O3", "-ffp-contract=off"],
        ),
        Extension(
            "gpuheadless.objects._cskeleton",
            sources=["gpuheadless/objects/_cskeleton.c"],
            extra_compile_args=["-O3", "-ffp-contract=off"],
        ),
        # -ffp-contract=off: vigra's running moments round every product and sum apart.
        Extension(
            "gpuheadless.objects._cmoments",
            sources=["gpuheadless/objects/_cmoments.c"],
            extra_compile_args=["-O3", "-ffp-contract=off"],
        ),
        # -ffp-contract=off: vigra's convolveLine rounds every product and sum apart.
        Extension(
            "gpuheadless.objects._csmooth",
            sources=["gpuheadless/objects/_csmooth.c"],
            extra_compile_args=["-O3", "-ffp-contract=off"],
        ),
        Extension(
            "gpuheadless.objects._cneighbourhood",
            sources=["gpuheadless/objects/_cneighbourhood.c"],
            extra_compile_args=["-O3"],
        ),
        Extension(
            "gpuheadless.features._ceigen",
            sources=["gpuheadless/features/_ceigen.c"],
            include_dirs=["kernels"],  # eigen3_math.h, shared with the CUDA kernel
            # -fno-math-errno: sqrtf inline (it never sets errno on the values used here).
            extra_compile_args=["-O3", "-ffp-contract=off", "-fno-math-errno"],
        ),
    ]
)
