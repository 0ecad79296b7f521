"""Build a kernels/*.cu file for the CPU and launch its kernels like ``cupy.RawKernel`` (DESIGN §4).

``EmulatedModule(path, options).get_function(name)`` returns a callable
``kernel(grid, block, args)``: the same ``.cu`` is compiled with g++ together with
``emulation.h`` and a generated launcher that runs every (block, thread) serially, in order or
in a scrambled order. Arguments are NumPy arrays (passed as pointers) and NumPy scalars, as the
host code passes CuPy arrays and scalars to the real kernels.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile

import numpy as np

from gpuheadless.gpu.kernels import module_source

HERE = os.path.dirname(os.path.abspath(__file__))
_SIGNATURE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)
_SCALARS = {"long long": ctypes.c_longlong, "int": ctypes.c_int, "float": ctypes.c_float, "double": ctypes.c_double}
# The NumPy scalar type CuPy needs for each C parameter type (it passes values by their dtype).
_DTYPES = {"long long": np.int64, "int": np.int32, "float": np.float32, "double": np.float64}
_BUILD_DIR = os.path.join(tempfile.gettempdir(), "gpuheadless-cuda-emulation")


def kernel_signatures(source: str) -> dict[str, list[tuple[str, str]]]:
    """``{kernel: [(C type, name), ...]}`` of every ``extern "C" __global__`` function."""
    out = {}
    for name, params in _SIGNATURE.findall(source):
        parsed = []
        for param in params.split(","):
            param = " ".join(param.split())
            ptype, pname = re.match(r"(.*?)(\w+)$", param).groups()
            parsed.append((ptype.strip(), pname))
        out[name] = parsed
    return out


def _launcher(kernels: dict[str, list[tuple[str, str]]]) -> str:
    lines = []
    for name, params in kernels.items():
        decl = ", ".join(f"{t} {n}" for t, n in params)
        call = ", ".join(n for _, n in params)
        lines.append(f"""
extern "C" void launch_{name}(unsigned grid, unsigned block, const long long *launch_order_, {decl})
{{
    gridDim.x = grid;
    blockDim.x = block;
    const long long total = (long long)grid * block;
    for (long long t = 0; t < total; ++t) {{
        const long long id = launch_order_ ? launch_order_[t] : t;
        blockIdx.x = (unsigned)(id / block);
        threadIdx.x = (unsigned)(id % block);
        {name}({call});
    }}
}}""")
    return "\n".join(lines)


class EmulatedModule:
    """A ``.cu`` file built for the CPU; ``sanitize`` adds AddressSanitizer and UBSan."""

    def __init__(self, path: str, options: tuple[str, ...] = (), sanitize: bool = False) -> None:
        with open(path) as f:
            source = f.read()
        self.signatures = kernel_signatures(source)
        shim = f'#include "emulation.h"\n#include "{os.path.abspath(path)}"\n' + _launcher(self.signatures)
        flags = ["-O2", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off", f"-I{HERE}", *options]
        if sanitize:
            flags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        # The inlined source: a changed header (eigen3_math.h) is a new build.
        key = hashlib.sha256((shim + module_source(path) + " ".join(flags)).encode()).hexdigest()[:16]
        os.makedirs(_BUILD_DIR, exist_ok=True)
        library = os.path.join(_BUILD_DIR, f"{os.path.basename(path)}.{key}.so")
        if not os.path.exists(library):
            shim_path = library[:-3] + ".cpp"
            with open(shim_path, "w") as f:
                f.write(shim)
            subprocess.run(["g++", *flags, "-o", library + ".tmp", shim_path], check=True, capture_output=True)
            os.replace(library + ".tmp", library)
        self._library = ctypes.CDLL(library)
        self.scramble: np.random.Generator | None = None

    def get_function(self, name: str):
        params = self.signatures[name]
        launch = getattr(self._library, f"launch_{name}")
        module = self

        def kernel(grid, block, args):
            grid, block = int(np.prod(grid)), int(np.prod(block))
            if len(args) != len(params):
                raise TypeError(f"{name}: {len(args)} arguments for {len(params)} parameters")
            order = None
            if module.scramble is not None:
                order = module.scramble.permutation(grid * block).astype(np.int64)
            c_args = [ctypes.c_uint(grid), ctypes.c_uint(block),
                      ctypes.c_void_p(order.ctypes.data if order is not None else None)]
            for (ptype, pname), value in zip(params, args):
                if ptype.endswith("*"):
                    if not isinstance(value, np.ndarray):
                        raise TypeError(f"{name}: {pname} needs an array, got {type(value).__name__}")
                    c_args.append(ctypes.c_void_p(value.ctypes.data))
                else:
                    ctype = ptype.replace("const ", "")
                    if not isinstance(value, _DTYPES[ctype]):
                        raise TypeError(f"{name}: pass {pname} ({ctype}) as numpy.{_DTYPES[ctype].__name__}, "
                                        f"got {type(value).__name__}")
                    c_args.append(_SCALARS[ctype](value.item()))
            launch(*c_args)

        return kernel
