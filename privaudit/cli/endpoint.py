"""The ``Endpoint`` flags of ``mia`` and ``canary``: audit a classifier behind an HTTP endpoint (docs/endpoints.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

PANEL = "Endpoint"

Endpoint = Annotated[
    str | None,
    typer.Option(
        metavar="URL",
        help="Audit the classifier behind this URL instead of a model directory; v2: http://HOST:PORT/v2/models/NAME.",
        rich_help_panel=PANEL,
    ),
]
EndpointFormat = Annotated[
    str,
    typer.Option(
        metavar="v2|hf",
        help="Wire format: v2 (Open Inference Protocol: KServe, Triton, MLServer) or hf (Hugging Face pipelines).",
        rich_help_panel=PANEL,
    ),
]
EndpointLabels = Annotated[
    str | None,
    typer.Option(
        metavar="NAMES",
        help="The endpoint's class names in column order, comma-separated (default: the data's labels, sorted).",
        rich_help_panel=PANEL,
    ),
]
EndpointBatch = Annotated[int, typer.Option(min=1, help="Texts per request.", rich_help_panel=PANEL)]
Concurrency = Annotated[int, typer.Option(min=1, help="Requests in flight at most.", rich_help_panel=PANEL)]
EndpointTimeout = Annotated[float, typer.Option(min=0.1, help="Seconds per request.", rich_help_panel=PANEL)]
EndpointRetries = Annotated[
    int,
    typer.Option(min=0, help="Retries of a batch on 429, 5xx, timeouts, lost connections.", rich_help_panel=PANEL),
]
MaxQueries = Annotated[
    int | None,
    typer.Option(
        min=0, help="Texts the endpoint may be asked at most (cached answers are free).", rich_help_panel=PANEL
    ),
]
Header = Annotated[
    list[str] | None,
    typer.Option(
        "--header",
        metavar="NAME=@ENVVAR",
        help="Send a header whose value is read from an environment variable (repeatable); never echoed or stored.",
        rich_help_panel=PANEL,
    ),
]
Insecure = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Do not verify the endpoint's TLS certificate (anyone on the path could read the texts and headers).",
        rich_help_panel=PANEL,
    ),
]
EndpointCache = Annotated[
    Path | None,
    typer.Option(help="Response cache folder (default .cache/privaudit/endpoint).", rich_help_panel=PANEL),
]
