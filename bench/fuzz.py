"""Fuzz gpuheadless with thousands of damaged projects, inputs and command lines (issue 15).

    python bench/fuzz.py --cases 1500 --seed 1            # every target, 1500 cases each
    python bench/fuzz.py --cases 200 --targets cli,ilp_pixel

The cases come from the Hypothesis strategies of ``tests/fuzz_harness.py``; each one is built in
a fresh folder and run in-process, with every ``--fork-every``-th case in a forked child and every
``--subprocess-every``-th one in a fresh ``python -m gpuheadless`` (cases that damage HDF5 bytes
are always forked: the HDF5 library may crash on them). Prints the counts per target and every
violation of the property (see ``check_outcome``), grouped by kind; exits 1 if there was any.
``--save DIR`` keeps each violating case as a pickle, to replay it with ``fuzz_harness.evaluate``.
A target's cases depend only on ``--seed`` and ``--cases``: the same command finds the same cases.
"""
from __future__ import annotations

import argparse
import collections
import os
import pickle
import re
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

import fuzz_harness as fh  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("GPUHEADLESS_TEST_DATA", ROOT.parent / "shared" / "data" / "ilastik"))


def signature(target: str, violation: str) -> str:
    """A violation with numbers, quoted values and paths blurred, to group repeats."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", violation)
    text = re.sub(r"\d+", "N", text)
    return f"{target}: {text[:160]}"


def fuzz_target(name: str, cases: int, seed_value: int, seeds: fh.Seeds, workdir: Path, args: argparse.Namespace):
    """Run ``cases`` cases of target ``name``; returns (counts, results with violations)."""
    counts: collections.Counter = collections.Counter()
    bad: list[fh.Result] = []
    index = [0]

    @seed(seed_value)
    @settings(max_examples=cases, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=fh.TARGETS[name]())
    def run(case: fh.Case) -> None:
        mode = fh.pick_mode(index[0], args.fork_every, args.subprocess_every)
        index[0] += 1
        try:
            result = fh.evaluate(case, seeds, workdir, mode, args.timeout)
        except Exception:  # noqa: BLE001 - the harness's own failure: reported, the run goes on
            counts["harness errors"] += 1
            print(f"harness error on\n{case.describe()}\n{traceback.format_exc()}", flush=True)
            return
        counts["cases"] += 1
        counts[f"mode {result.outcome.mode}"] += 1
        counts[f"exit {result.outcome.code}"] += 1
        if result.violations:
            counts["violations"] += 1
            bad.append(result)
            if args.save:  # the case itself, to replay: fh.evaluate(pickle.load(f), seeds, workdir, mode)
                args.save.mkdir(parents=True, exist_ok=True)
                with open(args.save / f"{name}-{index[0]:05d}.pickle", "wb") as stream:
                    pickle.dump(case, stream)
            if args.verbose:
                print(fh.report(result), flush=True)

    run()
    return counts, bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1500, help="cases per target (default 1500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets", default=",".join(fh.TARGETS), help=f"comma-separated, of {', '.join(fh.TARGETS)}")
    parser.add_argument("--timeout", type=float, default=fh.DEFAULT_TIMEOUT, help="seconds per case (a hang beyond)")
    parser.add_argument("--fork-every", type=int, default=10, help="run every N-th case in a forked child (0: never)")
    parser.add_argument("--subprocess-every", type=int, default=50, help="every N-th case in a fresh interpreter (0: never)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared ilastik data")
    parser.add_argument("--verbose", action="store_true", help="print each violation as it is found")
    parser.add_argument("--save", type=Path, help="pickle every violating case into this folder (to replay it)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="hypothesis")  # "overly large repr" of a case
    if not (args.data / "projects").is_dir():
        print(f"fuzz: ilastik reference data not found at {args.data}", file=sys.stderr)
        return 2
    targets = [t for t in args.targets.split(",") if t]
    unknown = [t for t in targets if t not in fh.TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {unknown}")
    all_bad: list[fh.Result] = []
    total_cases, harness_errors, start = 0, 0, time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpuheadless-fuzz-") as tmp:
        seeds = fh.build_seeds(args.data, Path(tmp) / "seeds")
        print(f"{'target':<12} {'cases':>6} {'in-proc':>7} {'fork':>5} {'subproc':>7} {'exit 0':>6} {'exit 1':>6} "
              f"{'exit 2':>6} {'bad':>4} {'seconds':>8}", flush=True)
        for name in targets:
            workdir = Path(tmp) / name
            workdir.mkdir()
            t0 = time.monotonic()
            # a target's cases depend on the seed and the target only (not on which others run)
            counts, bad = fuzz_target(name, args.cases, args.seed * 1000 + list(fh.TARGETS).index(name), seeds, workdir,
                                      args)
            total_cases += counts["cases"]
            harness_errors += counts["harness errors"]
            all_bad += bad
            print(f"{name:<12} {counts['cases']:>6} {counts['mode inprocess']:>7} {counts['mode fork']:>5} "
                  f"{counts['mode subprocess']:>7} {counts['exit 0']:>6} {counts['exit 1']:>6} {counts['exit 2']:>6} "
                  f"{counts['violations']:>4} {time.monotonic() - t0:>8.1f}", flush=True)
    print(f"total: {total_cases} cases in {time.monotonic() - start:.0f} s, {len(all_bad)} with violations, "
          f"{harness_errors} harness errors")
    groups: dict[str, list[fh.Result]] = collections.defaultdict(list)
    for result in all_bad:
        for violation in result.violations:
            groups[signature(result.case.target, violation)].append(result)
    for key, results in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        print(f"\n=== {len(results)} x {key}")
        for result in results:
            print(fh.report(result))
    return 1 if all_bad or harness_errors else 0


if __name__ == "__main__":
    sys.exit(main())
