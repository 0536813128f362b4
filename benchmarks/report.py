"""Turn ``benchmarks/results/*.json`` into BENCHMARKS.md: every ratio measured side by side in one run."""

from __future__ import annotations

import json
from pathlib import Path

TARGETS = {
    # section: (numerator row, denominator row, target ratio, direction, what the target is)
    "dp": ("DP-SGD (ghost)", "non-DP", 1.5, "at most", "DP-SGD training time over non-DP"),
    "mia": (
        "privaudit mia --attack loss (load, read, score, attack, metrics)",
        "bare forward pass (load + tokenize + forward)",
        1.2,
        "at most",
        "whole `mia --attack loss` over a bare forward pass",
    ),
}

INTRO = """# Benchmarks

Written by `make bench` (`python benchmarks/run.py`). Every ratio compares two timings taken side by side in the same
process on the same machine, each the best of several repeats. Absolute seconds move with the machine and its load;
the ratios are what the targets are about. Raw numbers: `benchmarks/results/*.json`.
"""


def _table(seconds: dict[str, float], baseline: str | None) -> list[str]:
    lines = ["| measurement | seconds | ratio |", "| --- | ---: | ---: |"]
    base = seconds.get(baseline) if baseline else None
    for name, value in seconds.items():
        ratio = f"{value / base:.2f}x" if base else ""
        lines.append(f"| {name} | {value:.3f} | {ratio} |")
    return lines


def write_markdown(results: Path, out: Path) -> None:
    parts = [INTRO]
    machine_written = False
    for name in ("dp", "mia", "canary", "modiva", "reference"):
        file = results / f"{name}.json"
        if not file.is_file():
            continue
        data = json.loads(file.read_text())
        if not machine_written:
            parts.append("Machine: " + ", ".join(f"{k} {v}" for k, v in data["machine"].items()) + "\n")
            machine_written = True
        seconds = data["seconds"]
        parts.append(f"## {name} (measured {data['measured']})\n")
        if name == "dp":
            parts.append(
                "One epoch of 2,048 fixture examples, tiny BERT (2 layers, hidden 128), batch 64, max length 32, "
                "AdamW; DP-SGD with Poisson sampling, noise 1.0, clipping norm 1.0, per Opacus per-sample-gradient "
                "mode. privaudit trains with the fastest, ghost clipping.\n"
            )
            parts += _table(seconds, "non-DP")
        elif name == "mia":
            parts.append(f"{data['n_texts']} fixture texts (members and non-members) on `intent-tiny`.\n")
            parts += _table(seconds, "bare forward pass (load + tokenize + forward)")
        elif name == "canary":
            rate = {k: data["candidates"] / v for k, v in seconds.items()}
            parts.append(f"A 4-digit template: {data['candidates']} candidates, batch 512, on `intent-tiny`.\n")
            parts += ["| measurement | seconds | candidates / s |", "| --- | ---: | ---: |"]
            parts += [f"| {k} | {v:.3f} | {rate[k]:.0f} |" for k, v in seconds.items()]
            ratio = rate["privaudit exposure enumeration"] / rate["bare forward pass"]
            verdict = "meets" if ratio >= 0.8 else "misses"
            parts.append(
                f"\nEnumeration runs at {ratio:.2f} of the bare forward pass's rate: {verdict} the 0.8 target."
            )
        else:
            parts += _table(seconds, None)
        if name in TARGETS:
            num, den, target, direction, what = TARGETS[name]
            if num in seconds and den in seconds:
                ratio = seconds[num] / seconds[den]
                ok = ratio <= target
                parts.append(
                    f"\n{what}: **{ratio:.2f}x** (target {direction} {target}x): "
                    f"{'meets the target' if ok else 'misses the target'}."
                )
        notes = data.get("notes")
        if notes:
            parts.append("\n" + notes)
        parts.append("")
    out.write_text("\n".join(parts) + "\n")
