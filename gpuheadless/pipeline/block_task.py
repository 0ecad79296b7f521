"""One block of a lane, computed: :class:`BlockTask` (everything the block function needs besides
the block) and :func:`compute_block`, a pure function of one block, so that the same function runs
in a loop, in a thread pool or as a Dask task."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backend import Backend
from ..export import ALL_STAGES, derive_from_probabilities, split_source
from ..features.plan import FeaturePlan
from ..forest.model import Forest
from .blocks import Block, block_cost_bytes
from .lane import Lane
from .stages import Stage, StageRunner, chain_halo
from .timing import StageClock


@dataclass(frozen=True)
class BlockTask:
    """Everything ``compute_block`` needs besides the block itself.

    ``plan``, ``forest`` and ``n_classes`` are those of the exported stage; ``upstream`` holds
    the Autocontext stages before it (none for Pixel Classification); ``n_classes`` counts every
    stage's classes for ``Probabilities All Stages``. ``probabilities``, when given, holds the
    exported stage's probabilities computed already (a ``tzyxc`` lane): sources derived from
    them are read there instead of computed again.
    """

    backend: Backend
    lane: Lane
    plan: FeaturePlan
    forest: Forest | None
    source: str
    n_classes: int
    channels: slice
    mask: Lane | None
    threads: int
    clock: StageClock = field(default_factory=StageClock)
    upstream: tuple[Stage, ...] = ()
    keep_on_device: bool = False  # the array API's CuPy path: results stay on the GPU
    probabilities: Lane | None = None

    @property
    def stages(self) -> tuple[Stage, ...]:
        classes = self.n_classes - sum(s.n_classes for s in self.upstream) if self.source == ALL_STAGES else self.n_classes
        return (*self.upstream, Stage(self.plan, self.forest, classes))

    def halo(self) -> tuple[int, int, int]:
        """The (z, y, x) margin of raw data a block reads around itself (every stage's)."""
        return chain_halo(self.stages, self.lane)

    def block_bytes(self, shape: tuple[int, int, int]) -> float:
        """The working set of one block of ``shape`` (z, y, x): its features and every stage's classes."""
        halo = tuple(min(h, n) for h, n in zip(self.halo(), self.lane.shape[1:4]))
        n_features = sum(stage.plan.n_features for stage in self.stages)
        return block_cost_bytes(shape, halo, self.lane.n_channels, n_features, self.n_classes)


def compute_block(task: BlockTask, block: Block) -> np.ndarray:
    """The export source on one block: ``(Z, Y, X, channels)`` for time step ``block.t``.

    NaN and infinities in the input flow through as in ilastik (the lane says so once), so
    NumPy's floating-point warnings are not shown for each block.
    """
    with task.backend.stream() as stream, np.errstate(all="ignore"):
        result = _compute_block(task, block)
        if task.keep_on_device and stream is not None:
            stream.synchronize()  # the caller stores the result from another thread's stream
        return result


def _compute_block(task: BlockTask, block: Block) -> np.ndarray:
    bk, lane = task.backend, task.lane
    shape = block.shape
    kind = split_source(task.source)[0]
    if kind == "Labels":
        return np.zeros(shape + (1,), dtype=np.uint8)[..., task.channels]
    if kind == "Input":
        with task.clock.measure("read"):
            return lane.read(block.t, block.slices, None)[..., task.channels]
    mask = None
    if task.mask is not None and kind != "Features":
        mask = np.any(task.mask.read(block.t, block.slices) != 0, axis=-1)
        if not mask.any():
            probabilities = np.zeros(shape + (task.n_classes,), dtype=np.float32)
            return bk.to_host(derive_from_probabilities(np, probabilities, kind))[..., task.channels]
    if task.probabilities is not None and kind not in ("Features", ALL_STAGES):
        # computed already and held on the host: derived there, not sent to the device and back
        with task.clock.measure("read"):
            probabilities = task.probabilities.read(block.t, block.slices)
        return derive_from_probabilities(np, probabilities, kind)[..., task.channels]
    runner = StageRunner(bk, lane, task.stages, task.threads, task.clock.measure)
    last = len(task.stages) - 1
    if kind == "Features":
        return bk.to_host(bk.xp.moveaxis(runner.features(last, block.t, block.slices), 0, -1)[..., task.channels])
    if kind == ALL_STAGES:
        every = [runner.probabilities(k, block.t, block.slices, mask) for k in range(last + 1)]
        return bk.to_host(bk.xp.concatenate(every, axis=-1)[..., task.channels])
    derived = derive_from_probabilities(bk.xp, runner.probabilities(last, block.t, block.slices, mask), kind)
    return derived[..., task.channels] if task.keep_on_device else bk.to_host(derived[..., task.channels])
