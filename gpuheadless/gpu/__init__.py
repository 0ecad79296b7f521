"""GPU backend: host code for the CUDA kernels in kernels/."""
