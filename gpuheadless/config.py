"""RunConfig: everything a batch run needs, from the command line and the environment."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .errors import UsageError

MIN_RAM_MB = 500


@dataclass
class ExportOptions:
    """Export settings given on the command line (``None`` = take the project's, then the default)."""

    source: str | None = None  # None: the workflow's default (Probabilities, Object Predictions)
    output_format: str | None = None
    output_filename_format: str | None = None
    output_internal_path: str | None = None
    cutout_subregion: tuple[list, list] | None = None
    pipeline_result_drange: tuple[float, float] | None = None
    export_drange: tuple[float, float] | None = None
    export_dtype: str | None = None
    output_axis_order: str | None = None


@dataclass
class RunConfig:
    """One batch run: project, inputs, export options, resources."""

    project: str
    inputs: list[str]
    export: ExportOptions = field(default_factory=ExportOptions)
    prediction_masks: list[str] = field(default_factory=list)
    input_axes: str | None = None
    stack_along: str = "z"
    ignore_training_axistags: bool = False
    retrain: bool = False
    tree_count: int | None = None
    label_proportion: float | None = None
    threads: int = 1
    ram_budget_mb: float = 2048.0
    device: str = "auto"
    gpu_memory_mb: float | None = None
    scheduler: str | None = None
    worker_timeout_s: float = 300.0  # --worker_timeout: how long a cluster may have no worker
    workers: int | None = None
    resume: bool = False
    pyramid: bool = False
    seed: int | None = None
    cwd: str = field(default_factory=os.getcwd)
    progress: bool = True
    # GPUHEADLESS_BLOCK_MB: one CPU block's working set in MiB (None: the measured fastest)
    block_mb: float | None = field(default_factory=lambda: block_target_from_env())


@dataclass
class ObjectOptions:
    """The Object Classification inputs and options of one run."""

    second_inputs: list[str] = field(default_factory=list)  # --prediction_maps, --segmentation_image, --label_image
    table_filename: str | None = None
    extra_sources: list[str] = field(default_factory=list)  # --export_object_*_img, --export_pixel_probability_img
    table_only: bool = False  # --table_only: the table, no image
    atlas: str | None = None  # --atlas (not implemented)


def threads_from_env(environ: dict[str, str] | None = None) -> int:
    """``LAZYFLOW_THREADS``: worker threads; unset means ``min(cpu_count, 8)``; 0 runs synchronously."""
    env = os.environ if environ is None else environ
    value = env.get("LAZYFLOW_THREADS", "").strip()
    if not value or value == "-1":
        return min(os.cpu_count() or 1, 8)
    try:
        threads = int(value)
    except ValueError:
        raise UsageError(f"LAZYFLOW_THREADS must be an integer, got {value!r}") from None
    if threads < 0:
        raise UsageError(f"LAZYFLOW_THREADS must be 0 or more, got {threads}")
    return threads


def ram_budget_from_env(environ: dict[str, str] | None = None) -> float:
    """``LAZYFLOW_TOTAL_RAM_MB``: the memory budget in MiB.

    Unset or 0 means half of the memory available now. Values below 500 are refused, as ilastik
    refuses them.
    """
    env = os.environ if environ is None else environ
    value = env.get("LAZYFLOW_TOTAL_RAM_MB", "").strip()
    if value and value != "0":
        try:
            ram = float(value)
        except ValueError:
            raise UsageError(f"LAZYFLOW_TOTAL_RAM_MB must be a number of MiB, got {value!r}") from None
        if ram < MIN_RAM_MB:
            raise UsageError(
                f"LAZYFLOW_TOTAL_RAM_MB={value}: RAM is limited to {value} MB. Remember to specify RAM in MB, not GB "
                f"(at least {MIN_RAM_MB})."
            )
        return ram
    return max(available_memory_mb() * 0.5, float(MIN_RAM_MB))


def block_target_from_env(environ: dict[str, str] | None = None) -> float | None:
    """``GPUHEADLESS_BLOCK_MB``: the working set of one CPU block in MiB; unset means the measured best.

    For benchmarking block sizes; the RAM budget still caps it.
    """
    env = os.environ if environ is None else environ
    value = env.get("GPUHEADLESS_BLOCK_MB", "").strip()
    if not value:
        return None
    try:
        target = float(value)
    except ValueError:
        raise UsageError(f"GPUHEADLESS_BLOCK_MB must be a number of MiB, got {value!r}") from None
    if not 0 < target < float("inf"):
        raise UsageError(f"GPUHEADLESS_BLOCK_MB must be a positive number of MiB, got {value!r}")
    return target


def resident_memory_mb() -> float:
    """This process's resident memory now, in MiB (0 where the OS does not say)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def trim_heap() -> None:
    """Give the memory freed to glibc's heaps back to the system (Linux; elsewhere nothing)."""
    try:
        import ctypes  # noqa: PLC0415

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def available_memory_mb() -> float:
    """Memory available to new allocations, in MiB (Linux ``MemAvailable``, else physical memory)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):
        return 4096.0
