"""Block sizing (issue 17): the fastest CPU working set by default, the RAM budget only a ceiling."""
from __future__ import annotations

import pytest

from gpuheadless.config import block_target_from_env
from gpuheadless.errors import UsageError
from gpuheadless.pipeline.blocks import (CPU_BLOCK_BYTES_2D, CPU_BLOCK_BYTES_3D, block_cost_bytes, choose_block_shape,
                                         count_blocks, cpu_block_bytes)

HALO = (38, 38, 38)
FULL_3D = dict(halo=HALO, channels_in=1, n_features=61, n_classes=2)
FULL_2D = dict(halo=(0, 38, 38), channels_in=1, n_features=49, n_classes=2)
HUGE_BUDGET = 12 * 2**30  # half of a 24 GiB machine: the default budget


def _shape(region, params, budget, workers=2, target=None):
    return choose_block_shape(region, params["halo"], lambda shape: _cost(shape, params), budget, workers, None,
                              target)


def _cost(shape, params):
    return block_cost_bytes(shape, params["halo"], params["channels_in"], params["n_features"], params["n_classes"])


@pytest.mark.parametrize("region, params, target", [((256, 256, 256), FULL_3D, CPU_BLOCK_BYTES_3D),
                                                    ((1, 2048, 2048), FULL_2D, CPU_BLOCK_BYTES_2D)])
def test_default_budget_gives_the_fast_block_not_the_largest(region, params, target):
    """With the default (huge) budget, blocks are those of the fast working set, not one per thread."""
    assert cpu_block_bytes(region) == target
    untargeted = _shape(region, params, HUGE_BUDGET)
    shape = _shape(region, params, HUGE_BUDGET, target=cpu_block_bytes(region))
    assert _cost(shape, params) <= target < _cost(untargeted, params)
    assert count_blocks(region, shape) >= 8  # every thread of two has several blocks


def test_a_small_budget_stays_the_ceiling():
    """LAZYFLOW_TOTAL_RAM_MB below what the target would take: the budget decides."""
    budget = 2 * 64 * 2**20  # two threads sharing 128 MiB
    shape = _shape((256, 256, 256), FULL_3D, budget, target=CPU_BLOCK_BYTES_3D)
    assert _cost(shape, FULL_3D) <= budget / 2 < CPU_BLOCK_BYTES_3D


def test_each_worker_gets_several_blocks_unless_they_get_small_against_the_halo():
    shape = _shape((1, 1024, 1024), FULL_2D, HUGE_BUDGET, workers=2)  # no target: the budget alone
    assert count_blocks((1, 1024, 1024), shape) >= 4 * 2
    tiny = _shape((1, 200, 200), FULL_2D, HUGE_BUDGET, workers=2)  # 40,000 pixels: not split
    assert tiny == (1, 200, 200)


def test_block_target_from_the_environment():
    assert block_target_from_env({}) is None
    assert block_target_from_env({"GPUHEADLESS_BLOCK_MB": "96"}) == 96.0
    assert cpu_block_bytes((64, 64, 64), 96.0) == 96 * 2**20
    for bad in ("0", "-5", "inf", "lots"):
        with pytest.raises(UsageError, match="GPUHEADLESS_BLOCK_MB"):
            block_target_from_env({"GPUHEADLESS_BLOCK_MB": bad})


def test_layout_caps_cpu_blocks_but_not_gpu_blocks():
    """The fast-working-set cap is for CPU cores; a GPU block is as large as its memory allows."""
    from types import SimpleNamespace

    import numpy as np

    from gpuheadless.config import RunConfig
    from gpuheadless.pipeline.block_runner import layout_blocks

    lane = SimpleNamespace(shape=(1, 256, 256, 256, 1), n_channels=1, source=SimpleNamespace(display="x"))

    def task(on_device):
        return SimpleNamespace(lane=lane, halo=lambda: HALO, block_bytes=lambda shape: _cost(shape, FULL_3D),
                               backend=SimpleNamespace(on_device=on_device))

    config = RunConfig(project="p.ilp", inputs=[], threads=2, ram_budget_mb=24_000)
    region = {"t": (0, 1), "z": (0, 256), "y": (0, 256), "x": (0, 256)}
    cpu = layout_blocks(config, task(False), region, HUGE_BUDGET)
    gpu = layout_blocks(config, task(True), region, HUGE_BUDGET)
    assert _cost(cpu.block_shape, FULL_3D) <= CPU_BLOCK_BYTES_3D
    assert np.prod(gpu.block_shape) > np.prod(cpu.block_shape)
