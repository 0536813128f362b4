"""The "Compute" flags, declared once for every command that runs models: device, precision, executor and Ray.

A command takes them in its signature (``device: Device = "auto"``); the values are checked by the library
(:mod:`privaudit.device`, :class:`privaudit.training.executor.RayOptions`), which raises one clear line on bad input.
"""

from __future__ import annotations

from typing import Annotated

import typer

PANEL = "Compute"

Device = Annotated[
    str,
    typer.Option(
        help="auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:N or mps.", rich_help_panel=PANEL, metavar="DEVICE"
    ),
]
Precision = Annotated[
    str,
    typer.Option(
        help="fp32, bf16 or fp16 (autocast) for scoring and non-DP training; fp16 needs a GPU, DP-SGD fp32.",
        rich_help_panel=PANEL,
        metavar="PRECISION",
    ),
]
Executor = Annotated[
    str,
    typer.Option(
        help="Where reference models train: local (one after another, here) or ray (one Ray task each).",
        rich_help_panel=PANEL,
        metavar="EXECUTOR",
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        help="A running Ray cluster (HOST:PORT or auto; default RAY_ADDRESS, else a local cluster for the run).",
        rich_help_panel=PANEL,
        metavar="ADDRESS",
    ),
]
Workers = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Jobs at once, locally or on the local Ray cluster (default: the CPUs over --cpus-per-job).",
        rich_help_panel=PANEL,
    ),
]
CpusPerJob = Annotated[
    int,
    typer.Option(
        min=1, help="CPUs per job, and its torch threads (local and Ray alike: the same models).", rich_help_panel=PANEL
    ),
]
GpusPerJob = Annotated[
    float,
    typer.Option(
        min=0.0, help="GPUs per Ray job (fractions share a GPU); above 0, jobs train on CUDA.", rich_help_panel=PANEL
    ),
]
MaxRetries = Annotated[int, typer.Option(min=0, help="Reruns of a Ray job whose worker died.", rich_help_panel=PANEL)]
