"""One table of a bench/gpu_check.sh run: each step's status and time, with its key figures.

    python bench/gpu_summary.py OUT_DIR      # reads OUT_DIR/steps.tsv and the steps' JSON
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def figures(step: str, work: Path) -> str:
    """The figures a step left behind, in a few words."""
    if step == "parity":
        found = _load(work / "parity.json")
        if found:
            return f"{found['identical']} of {found['outputs']} outputs bit-identical"
    if step in ("large", "memory"):
        found = _load(work / step / f"{step}.json")
        if found:
            text = f"{'x'.join(map(str, found['shape']))}: {found['wall_s']:.1f} s, {found['mvox_s']:.0f} Mvox/s"
            if found.get("stages_s"):
                text += " (" + ", ".join(f"{k} {v:.2f}" for k, v in found["stages_s"].items()) + ")"
            if found.get("gpu_peak_mib") is not None:
                text += f"; GPU peak {found['gpu_peak_mib']:.0f} MiB ({found['gpu_peak_above_idle_mib']:.0f} above idle)"
                if found.get("gpu_memory_mb_cap"):
                    text += f", cap {found['gpu_memory_mb_cap']:.0f} MB"
            return text
    if step == "bench":
        found = _load(work / "bench" / "benchmark.json")
        if found:
            return "; ".join(f"{r['system']} {r['case']}: {r['mvox_s']:.1f} Mvox/s" if "mvox_s" in r else
                             f"{r['system']} {r['case']}: failed" for r in found.get("cases", []))
    log = work / f"{step}.log"
    if log.exists():
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1][:160] if lines else ""
    return ""


def table(out: Path) -> list[str]:
    """Markdown lines: step, verdict, seconds, figures."""
    work = out / "work"
    lines = ["| step | result | s | figures |", "|---|---|---|---|"]
    steps = out / "steps.tsv"
    for row in steps.read_text().splitlines() if steps.exists() else []:
        step, status, seconds = row.split("\t")[:3]
        lines.append(f"| {step} | {status} | {seconds} | {figures(step, work).replace('|', '/')} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    out = Path((argv or sys.argv[1:])[0])
    lines = table(out)
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    failed = [line for line in lines[2:] if "| FAIL" in line or "| TIMEOUT" in line]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
