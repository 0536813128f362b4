"""A KServe (``kserve.Model`` + ``ModelServer``) v2 predictor wrapping a privaudit model directory, for tests.

Run ``python tests/servers/kserve_server.py MODEL_DIR --port P --name NAME [--mode probabilities|labels]``. The first
output tensor is FP64 probabilities ``[n, C]`` with ``parameters.labels`` naming the columns, or in ``labels`` mode a
BYTES tensor of predicted labels. (Open Inference Protocol parameters hold scalars only,
so the column names travel comma-separated.) Fault injection and ``/stats``: ``tests/servers/faults.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from servers.faults import Faults  # noqa: E402

FAULTS = Faults()


def build(model_dir: str, name: str, mode: str):
    import kserve
    from kserve.errors import InvalidInput, ServerNotReady
    from kserve.protocol.infer_type import InferOutput, InferResponse
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    class Classifier(kserve.Model):
        def __init__(self) -> None:
            super().__init__(name)
            self.ready = False

        def load(self) -> bool:
            from privaudit.models import register

            register()  # privaudit's own model types (train --arch bilstm|cnn) load through the Auto classes too
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            self.model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True).eval()
            self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
            self.ready = True
            return True

        async def predict(self, payload, headers=None, response_headers=None):
            # In a thread: an injected sleep must not block the event loop (and /stats with it).
            status = await asyncio.to_thread(FAULTS.before, headers or {})
            if status == 503:
                raise ServerNotReady("injected: warming up")
            if status == 401:
                raise InvalidInput("unauthorized")
            texts = [t.decode() if isinstance(t, bytes) else str(t) for t in payload.inputs[0].data]
            with torch.inference_mode():
                batch = self.tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
                logits = self.model(**batch).logits.double().numpy()
            FAULTS.count(texts)
            shifted = logits - logits.max(axis=1, keepdims=True)
            probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
            if mode == "labels":
                predicted = [self.labels[i] for i in probs.argmax(axis=1)]
                out = InferOutput("label", [len(texts)], "BYTES", predicted)
            else:
                # GARBLE: a shape that does not match the data, as a broken server might send.
                shape = [len(texts) + int(FAULTS.garble), probs.shape[1]]
                out = InferOutput(
                    "probabilities",
                    shape,
                    "FP64",
                    probs.reshape(-1).tolist(),
                    parameters={"labels": ",".join(self.labels)},
                )
            return InferResponse(response_id=str(uuid.uuid4()), model_name=name, infer_outputs=[out])

    return Classifier()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="intent")
    parser.add_argument("--mode", default="probabilities", choices=("probabilities", "labels"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    import kserve
    from kserve.model_server import app

    async def stats():
        return FAULTS.stats()

    app.add_api_route("/stats", stats, methods=["GET"])
    model = build(args.model_dir, args.name, args.mode)
    model.load()
    started = time.time()
    print(f"loaded in {time.time() - started:.1f}s", flush=True)
    kserve.ModelServer(http_port=args.port, enable_grpc=False, workers=1).start([model])


if __name__ == "__main__":
    main()
