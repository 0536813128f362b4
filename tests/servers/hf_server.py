"""A ``transformers`` text-classification pipeline behind uvicorn (Starlette), speaking the Hugging Face JSON, for tests.

Run ``python tests/servers/hf_server.py MODEL_DIR --port P [--top-k K] [--mode scores|labels]``. ``POST /`` takes
``{"inputs": [texts]}`` and answers, per text, the pipeline's list of ``{"label", "score"}`` (every class, or the top
K), or in ``labels`` mode ``[{"label": ...}]`` only. Fault injection and ``/stats``: ``tests/servers/faults.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from servers.faults import Faults  # noqa: E402

FAULTS = Faults()


def build(model_dir: str, *, top_k: int | None, mode: str):
    import torch
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
    from transformers import pipeline

    torch.set_num_threads(1)
    classify = pipeline("text-classification", model=model_dir, tokenizer=model_dir, device="cpu")
    lock = asyncio.Lock()

    async def infer(request: Request) -> Response:
        status = await asyncio.to_thread(FAULTS.before, dict(request.headers))
        if status is not None:
            return JSONResponse({"error": "injected" if status == 503 else "unauthorized"}, status_code=status)
        if FAULTS.garble:
            return Response("<html><body>502 Bad Gateway from a proxy that ate the answer</body></html>" * 5)
        body = await request.json()
        texts = body["inputs"]
        async with lock:  # one pipeline call at a time, as a single-worker server runs
            answers = await asyncio.to_thread(classify, texts, top_k=top_k, truncation=True)
        FAULTS.count(texts)
        if mode == "labels":
            answers = [[{"label": a[0]["label"]}] for a in answers]
        return JSONResponse(answers)

    async def stats(request: Request) -> Response:
        return JSONResponse(FAULTS.stats())

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/", infer, methods=["POST"]), Route("/stats", stats), Route("/health", health)])


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--top-k", type=int, default=None, help="classes per answer (default: all)")
    parser.add_argument("--mode", default="scores", choices=("scores", "labels"))
    args = parser.parse_args()
    app = build(args.model_dir, top_k=args.top_k, mode=args.mode)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
