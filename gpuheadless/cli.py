"""Command line: ilastik's headless flags, parsed into a RunConfig. No logic lives here.

``gpuheadless --project=P.ilp [flags] INPUT ...`` behaves like ``run_ilastik.sh --headless ...``;
``gpuheadless demo`` builds a small example project with the package's own code and applies it.
"""
from __future__ import annotations

import argparse
import difflib
import logging
import sys
from typing import Sequence

from ._version import __version__
from .config import ExportOptions, ObjectOptions, RunConfig, ram_budget_from_env, threads_from_env
from .errors import NotImplementedYet, OneLineParser, UsageError, UserError
from .export import EXPORT_DTYPES, parse_cutout, parse_pair
from .io.formats import all_format_names

log = logging.getLogger("gpuheadless")

ILASTIK_OUTPUT_FORMATS = all_format_names()


def _bool_value(text: str | None) -> bool:
    if text is None:
        return True
    value = text.strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (yes/no, true/false, 1/0), got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """The batch parser, with every flag of ilastik's headless Pixel Classification mode."""
    p = OneLineParser(
        prog="gpuheadless",
        description="Apply an ilastik Pixel Classification project to images, as `run_ilastik.sh --headless`.",
        epilog="Subcommands: `gpuheadless demo` runs a self-contained example; `gpuheadless train --help` "
        "trains a project from label images. "
        "Environment: LAZYFLOW_THREADS, LAZYFLOW_TOTAL_RAM_MB.",
    )
    p.add_argument("--version", action="version", version=f"gpuheadless {__version__}")
    g = p.add_argument_group("ilastik global flags")
    g.add_argument("--headless", action="store_true", help="accepted for compatibility (always headless)")
    g.add_argument("--project", help="the .ilp project file")
    g.add_argument("--readonly", nargs="?", const="true", default=None, help="accepted; the project is never modified")
    g.add_argument("--new_project")
    g.add_argument("--workflow")
    g.add_argument("--logfile", help="also write the log to this file")
    g.add_argument("--process_name")
    g.add_argument("--redirect_output")
    g.add_argument("--debug", action="store_true", help="debug logging and tracebacks")
    g.add_argument("--configfile")
    g.add_argument("--clean_paths", action="store_true")
    g.add_argument("--hbp", action="store_true")
    g.add_argument("--fullscreen", action="store_true")
    g.add_argument("--exit_on_failure", action="store_true")
    g.add_argument("--tiktorch_executable")
    g.add_argument("--nn_device")
    g.add_argument("--fillmissing", choices=("classic", "svm", "none"), help="accepted; ilastik reads it only when creating a project")
    g.add_argument("--nobatch", action="store_true", help="accepted; ilastik reads it only when creating a project")
    w = p.add_argument_group("Pixel Classification workflow flags")
    w.add_argument("--retrain", action="store_true", help="train a new forest from the project's labels for this run")
    w.add_argument("--tree-count", dest="tree_count", type=int, help="trees of the retrained forest (forces retraining)")
    w.add_argument("--label-proportion", dest="label_proportion", type=float, help="fraction of labels to train on")
    w.add_argument("--variable-importance-path", dest="variable_importance_path")
    w.add_argument("--print-labels-by-slice", dest="print_labels_by_slice", action="store_true")
    w.add_argument("--label-search-value", dest="label_search_value", type=int)
    w.add_argument("--generate-random-labels", dest="generate_random_labels", action="store_true")
    w.add_argument("--random-label-value", dest="random_label_value", type=int)
    w.add_argument("--random-label-count", dest="random_label_count", type=int)
    e = p.add_argument_group("export flags")
    e.add_argument("--export_source", help="Probabilities (default), Simple Segmentation, Uncertainty, Features, Labels; "
                   "Object Predictions (default of Object Classification), Object Probabilities, Object Identities ...")
    e.add_argument("--output_format", choices=ILASTIK_OUTPUT_FORMATS, metavar="FORMAT",
                   help="compressed hdf5 (default), hdf5, numpy, multipage tiff[ sequence], or a 2D format "
                   "(bmp gif hdr jpeg jpg pbm pgm png pnm ppm ras tif tiff xv), each also as '<name> sequence'")
    e.add_argument("--output_filename_format", help="output path with {dataset_dir} {nickname} {result_type} ... placeholders")
    e.add_argument("--output_internal_path", help="HDF5 dataset path (default exported_data)")
    e.add_argument("--cutout_subregion", help="[(start,...),(stop,...)] in the export's axis order (e.g. y,x,c)")
    e.add_argument("--pipeline_result_drange", help="(min,max) of the result, for --export_drange")
    e.add_argument("--export_drange", help="(min,max) to map the result range to")
    e.add_argument("--export_dtype", choices=EXPORT_DTYPES[:8])
    e.add_argument("--output_axis_order", help="axis order of the output, letters of txyzc")
    e.add_argument("--table_only", action="store_true", help="Object Classification: write the object table, no image")
    i = p.add_argument_group("input flags")
    i.add_argument("--raw_data", "--raw-data", dest="raw_data", nargs="+", default=[])
    i.add_argument("--prediction_mask", "--prediction-mask", dest="prediction_mask", nargs="+", default=[])
    oc = p.add_argument_group("Object Classification flags")
    oc.add_argument("--prediction_maps", "--prediction-maps", dest="prediction_maps", nargs="+", default=[])
    oc.add_argument("--segmentation_image", "--segmentation-image", dest="segmentation_image", nargs="+", default=[])
    oc.add_argument("--label_image", "--label-image", dest="label_image", nargs="+", default=[])
    oc.add_argument("--atlas", nargs="+", default=[])
    oc.add_argument("--table_filename", help="write the object table (CSV) to <base>_table.<ext>")
    oc.add_argument("--export_object_prediction_img", action="store_true", help="also write Object Predictions")
    oc.add_argument("--export_object_probability_img", action="store_true", help="also write Object Probabilities")
    oc.add_argument("--export_pixel_probability_img", action="store_true", help="also write Pixel Probabilities (Pixel + Object variant only)")
    i.add_argument("--stack_along", "--stack-along", dest="stack_along", help="axis to stack glob/list members along (default z)")
    i.add_argument("--input_axes", "--input-axes", dest="input_axes")
    i.add_argument("--ignore_training_axistags", "--ignore-training-axistags", dest="ignore_training_axistags",
                   action="store_true")
    i.add_argument("--preconvert_stacks", "--preconvert-stacks", dest="preconvert_stacks", action="store_true")
    i.add_argument("--distributed", action="store_true")
    i.add_argument("--distributed_block_roi", "--distributed-block-roi", dest="distributed_block_roi")
    o = p.add_argument_group("gpuheadless flags")
    o.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"), help="where to compute (default auto)")
    o.add_argument("--gpu_memory_mb", "--gpu-memory-mb", dest="gpu_memory_mb", type=float,
                   help="cap on the GPU memory the blocks may use (default: 80%% of the free GPU memory)")
    o.add_argument("--seed", type=int, help="seed for retraining (ilastik's training is not reproducible)")
    o.add_argument("--scheduler", help="run blocks on Dask: a scheduler address, local[:N] or local-cuda")
    o.add_argument("--worker_timeout", "--worker-timeout", dest="worker_timeout", type=float, default=300.0,
                   help="--scheduler: stop when the cluster has had no worker for this many seconds (default 300)")
    o.add_argument("--resume", action="store_true", help="skip outputs that exist and blocks already written (Zarr)")
    o.add_argument("--pyramid", action="store_true", help="OME-Zarr: add downscaled levels (every second voxel)")
    p.add_argument("inputs", nargs="*", help="input images: files, or file.h5/internal/path")
    return p


_NOT_YET = {
    "variable_importance_path": "--variable-importance-path",
    "print_labels_by_slice": "--print-labels-by-slice",
    "label_search_value": "--label-search-value",
    "generate_random_labels": "--generate-random-labels",
    "preconvert_stacks": "--preconvert_stacks",
    "distributed": "--distributed",
    "distributed_block_roi": "--distributed_block_roi",
    "configfile": "--configfile",
    "new_project": "--new_project",
}


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Turn parsed arguments into a RunConfig, refusing what this version cannot do."""
    if args.hbp:
        raise UsageError("--hbp is deprecated (ilastik exits on it too)")
    if args.fullscreen or args.exit_on_failure:
        raise UsageError("--fullscreen and --exit_on_failure are GUI flags; they cannot be combined with batch mode")
    for attr, flag in _NOT_YET.items():
        if getattr(args, attr) not in (None, False, []):
            raise NotImplementedYet(flag)
    if args.readonly is not None:
        try:
            _bool_value(args.readonly)
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--readonly: {exc}") from None
    if not args.project:
        raise UsageError("You have to supply at least --project (the .ilp file)")
    if args.input_axes:
        _check_input_axes(args.input_axes)
    if args.inputs and args.raw_data:
        raise UsageError("You can only have trailing file paths if no other role was set by name (--raw_data)")
    export = ExportOptions(
        source=args.export_source,
        output_format=args.output_format,
        output_filename_format=args.output_filename_format,
        output_internal_path=args.output_internal_path,
        cutout_subregion=parse_cutout(args.cutout_subregion) if args.cutout_subregion else None,
        pipeline_result_drange=parse_pair(args.pipeline_result_drange, "--pipeline_result_drange") if args.pipeline_result_drange else None,
        export_drange=parse_pair(args.export_drange, "--export_drange") if args.export_drange else None,
        export_dtype=args.export_dtype,
        output_axis_order=args.output_axis_order,
    )
    if args.tree_count is not None and args.tree_count < 0:
        raise UsageError(f"--tree-count must be a number of trees, got {args.tree_count}")
    if args.gpu_memory_mb is not None and args.gpu_memory_mb <= 0:
        raise UsageError(f"--gpu_memory_mb must be positive, got {args.gpu_memory_mb}")
    if not args.worker_timeout > 0:
        raise UsageError(f"--worker_timeout must be a positive number of seconds, got {args.worker_timeout:g}")
    if export.export_drange is not None and export.pipeline_result_drange is None:
        raise UsageError("Cannot renormalize to custom export_drange without a specified pipeline_result_drange.")
    return RunConfig(
        project=args.project,
        inputs=list(args.inputs or args.raw_data),
        export=export,
        prediction_masks=list(args.prediction_mask),
        input_axes=args.input_axes,
        stack_along=args.stack_along or "z",
        ignore_training_axistags=args.ignore_training_axistags,
        retrain=args.retrain,
        tree_count=args.tree_count,
        label_proportion=args.label_proportion,
        threads=threads_from_env(),
        ram_budget_mb=ram_budget_from_env(),
        device=args.device,
        gpu_memory_mb=args.gpu_memory_mb,
        scheduler=args.scheduler,
        worker_timeout_s=args.worker_timeout,
        resume=args.resume,
        pyramid=args.pyramid,
        seed=args.seed,
    )


def _check_input_axes(text: str) -> None:
    """ilastik refuses a malformed ``--input_axes`` while parsing the command line (exit 2)."""
    axes = text.lower()
    if len(set(axes)) != len(axes) or any(a not in "xyztc" for a in axes) or not {"x", "y"} <= set(axes):
        raise UsageError(f"--input_axes {text!r}: needs distinct letters of xyztc including x and y")


def object_options_from_args(args: argparse.Namespace) -> ObjectOptions:
    """The Object Classification flags as :class:`~gpuheadless.config.ObjectOptions`."""
    extra = [name for flag, name in ((args.export_object_prediction_img, "Object Predictions"),
                                     (args.export_object_probability_img, "Object Probabilities"),
                                     (args.export_pixel_probability_img, "Pixel Probabilities")) if flag]
    second = args.prediction_maps or args.segmentation_image or args.label_image
    return ObjectOptions(second_inputs=list(second), table_filename=args.table_filename, extra_sources=extra,
                         table_only=args.table_only, atlas=args.atlas)


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every flag ``parser`` accepts, aliases included (``--stack_along``, ``--stack-along`` ...)."""
    return [flag for action in parser._actions for flag in action.option_strings]  # noqa: SLF001 - no public API


def refuse_unknown(parser: argparse.ArgumentParser, unknown: Sequence[str]) -> None:
    """Refuse arguments the parser did not take, naming the nearest valid flag.

    ilastik only warns ("Unused command-line args") and runs with its defaults, so a typo such
    as ``--output_fomat=png`` goes unseen in a large batch; this stops before anything is read.

    Raises
    ------
    UsageError
        For the first unknown flag (or stray argument) in ``unknown``.
    """
    if not unknown:
        return
    flags = [a for a in unknown if a.startswith("-") and a != "-"]
    if not flags:
        raise UsageError(f"unexpected argument {unknown[0]!r} (not an input, not a flag's value)")
    name = flags[0].split("=", 1)[0]
    near = difflib.get_close_matches(name, option_strings(parser), n=1, cutoff=0.6)
    hint = f"did you mean {near[0]}?" if near else "see gpuheadless --help"
    raise UsageError(f"unknown flag {name!r}; {hint}")


def _report_failures(failures: list[str], n_inputs: int) -> int:
    """List the failed inputs on stderr; the exit status (1 if any failed).

    Each failure was logged when it happened; the summary repeats them only for a batch, where
    they would otherwise be scattered through the log.
    """
    if not failures:
        return 0
    if n_inputs == 1:
        return 1
    print(f"gpuheadless: {len(failures)} of {n_inputs} input(s) failed:", file=sys.stderr)
    for line in failures:
        print(f"  {line}", file=sys.stderr)
    return 1


def open_project(path: str) -> None:
    """Open and check the project as ilastik does first, even when there is nothing to run.

    ilastik loads the project before it looks at the inputs, and exits 1 on a missing or
    broken one; so does this (UserError naming the file).

    Parameters
    ----------
    path : str
        The ``--project`` file.
    """
    from .project.open import read_any_project  # noqa: PLC0415

    read_any_project(path)


def _setup_logging(debug: bool, logfile: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if logfile:
        try:
            handlers.append(logging.FileHandler(logfile))
        except OSError as exc:  # a missing folder, a folder given as the file
            raise UserError(f"--logfile '{logfile}': cannot write it ({exc.strerror or exc})") from None
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if debug else "%(message)s",
        handlers=handlers,
        force=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gpuheadless`` command; returns the exit status.

    SIGTERM, SIGHUP and SIGINT stop the run within a second with nothing left behind, exit
    status 128 + the signal (see :mod:`gpuheadless.interrupts`).
    """
    from .interrupts import Stopped, report_stop, stop_on_signals  # noqa: PLC0415

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with stop_on_signals():
            try:
                return _dispatch(argv)
            except Stopped as exc:
                return report_stop(exc.signum)
    except Stopped as exc:  # it arrived as the run ended, while the handlers were being restored
        print(f"gpuheadless: stopped by {exc.args[0]} as the run ended; every output it reported is complete",
              file=sys.stderr, flush=True)
        return exc.exit_code


def _dispatch(argv: list[str]) -> int:
    debug = "--debug" in argv
    try:
        if argv and argv[0] == "demo":
            from .demo import main as demo_main  # noqa: PLC0415

            _setup_logging(debug, None)
            return demo_main(argv[1:])
        if argv and argv[0] == "train":
            from .trainer import main as train_main  # noqa: PLC0415

            _setup_logging(debug, None)
            return train_main([a for a in argv[1:] if a != "--debug"])
        parser = build_parser()
        # intermixed: inputs may sit between flags, as ilastik's chained parsers allow
        args, unknown = parser.parse_known_intermixed_args(argv)
        _setup_logging(args.debug, args.logfile)
        refuse_unknown(parser, unknown)
        config = config_from_args(args)
        if not config.inputs:
            open_project(config.project)
            log.info("No input files given; nothing to do.")
            return 0
        from .run import run_workflow  # noqa: PLC0415 - keeps --help fast

        _written, failures = run_workflow(config, object_options_from_args(args))
    except UserError as exc:
        if debug:
            raise
        print(f"gpuheadless: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return _report_failures(failures, len(config.inputs))
