"""Output file names: ilastik's placeholder passes and extension rule (spec §3.2-§3.3)."""
from __future__ import annotations

import os
import string
from typing import Any, Mapping

def format_known(pattern: str, values: Mapping[str, Any], strict: bool = False) -> str:
    """Fill the ``{keys}`` of ``pattern`` that ``values`` knows; leave every other field as written.

    Format specs work (``{x_start:05d}``). With ``strict``, malformed braces raise ``ValueError``;
    otherwise a malformed pattern is returned unchanged.
    """
    try:
        parts = list(string.Formatter().parse(pattern))
    except ValueError:
        if strict:
            raise
        return pattern
    out = []
    for literal, field_name, spec, conversion in parts:
        out.append(literal)
        if field_name is None:
            continue
        if field_name in values:
            value = values[field_name]
            if conversion == "r":
                value = repr(value)
            elif conversion == "s":
                value = str(value)
            out.append(format(value, spec or ""))
        else:
            text = field_name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            out.append("{" + text + "}")
    return "".join(out)


def replace_extension(path: str, extension: str) -> str:
    """``splitext(path)[0] + '.' + extension``, as ilastik's writers do."""
    return os.path.splitext(path)[0] + "." + extension


def placeholder_names(pattern: str) -> list[str]:
    """The ``{field}`` names in ``pattern`` (``[]`` for a malformed pattern)."""
    try:
        return [name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None]
    except ValueError:
        return []


def roi_values(axes: str, start: tuple[int, ...], stop: tuple[int, ...]) -> dict[str, Any]:
    """``{roi}`` and ``{<axis>_start}``/``{<axis>_stop}`` for the export's internal axes."""
    values: dict[str, Any] = {"roi": str([tuple(start), tuple(stop)])}
    for axis, a, b in zip(axes, start, stop):
        values[f"{axis}_start"] = a
        values[f"{axis}_stop"] = b
    return values


def describe_placeholders(sequence: bool = False) -> str:
    """Every placeholder of an output file name, compactly, for error messages.

    Parameters
    ----------
    sequence : bool
        Whether the output format writes one file per slice (then ``{slice_index}`` is valid).
    """
    names = "{dataset_dir}, {nickname}, {result_type}, {roi}, {t|z|y|x|c}_start, {t|z|y|x|c}_stop"
    return names + (", {slice_index}" if sequence else "")
