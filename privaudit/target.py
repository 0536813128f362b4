"""Load an audited classifier safely and give batched, white-box access to it.

Model files are untrusted input: weights load from safetensors only, remote code never runs, nothing is fetched from a
hub. Pickled weights (``pytorch_model.bin``) execute code on load, so they are refused unless the user passes
``--allow-pickle``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from privaudit import model_files  # noqa: E402
from privaudit.device import CPU, Compute  # noqa: E402
from privaudit.errors import PrivauditError  # noqa: E402
from privaudit.families.adapter import FamilyAdapter, adapter_for  # noqa: E402
from privaudit.families.forward import pad_token_id, prepare  # noqa: E402
from privaudit.families.selfcheck import PROBE_TOKENS, PROBES, own_logits, self_check  # noqa: E402
from privaudit.shards import shard_files  # noqa: E402

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZE_CHUNK = 4096  # texts tokenized per call: large enough for the Rust tokenizer's batching, small in memory
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "vocab.json")
RECIPE_FILE = "privaudit.json"


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def check_model_dir(path: Path, *, allow_pickle: bool = False) -> None:
    """Refuse, with one clear line, a directory that is not a safely loadable sequence classifier."""
    if not path.is_dir():
        raise PrivauditError(f"{path}: no such model directory; give a directory written by 'privaudit train'")
    model_files.check_no_escaping_links(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise PrivauditError(
            f"{path}: not a model directory (no config.json); give a Hugging Face sequence-classification directory"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PrivauditError(f"{config_file}: unreadable model config ({err})") from err
    if not isinstance(config, dict):
        raise PrivauditError(f"{config_file}: a model config must be a JSON object")
    architectures = config.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        raise PrivauditError(
            f"{config_file}: the model is not a sequence classifier (architectures: {architectures or 'none'}); "
            "privaudit audits *ForSequenceClassification models"
        )
    if not any((path / name).is_file() for name in SAFE_WEIGHTS):
        if any((path / name).is_file() for name in PICKLED_WEIGHTS):
            if not allow_pickle:
                raise PrivauditError(
                    f"{path}: weights are pickled (pytorch_model.bin), which can run arbitrary code when loaded; "
                    "convert them to model.safetensors, or pass --allow-pickle if you trust this file"
                )
        else:
            raise PrivauditError(f"{path}: no model weights (model.safetensors) in the directory")
    shard_files(path)  # a sharded checkpoint: every shard a safetensors file inside the directory
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise PrivauditError(
            f"{path}: no tokenizer files (tokenizer.json or vocab.txt); save the tokenizer beside the model"
        )
    _check_files_before_loading(path, config_file, config)


def _check_files_before_loading(path: Path, config_file: Path, config: dict) -> int:
    """The checks of :mod:`privaudit.model_files`, before torch reads anything: safetensors headers, labels against
    the head, and ``max_length`` against the position embeddings. Returns the recipe's ``max_length``.

    Raises:
        PrivauditError: one line naming the file and field.
    """
    model_files.check_weights(path, config_file, config)
    return model_files.check_max_length(path / RECIPE_FILE, _read_recipe(path / RECIPE_FILE), config)


def _read_recipe(recipe_file: Path) -> dict | None:
    if not recipe_file.is_file():
        return None
    try:
        recipe = json.loads(recipe_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PrivauditError(f"{recipe_file}: unreadable training recipe ({err})") from err
    if not isinstance(recipe, dict):
        raise PrivauditError(f"{recipe_file}: the training recipe must be a JSON object")
    return recipe


def directory_fingerprint(path: Path) -> str:
    """SHA-256 over the model's weights and config: names the audited model in reports and caches."""
    digest = hashlib.sha256()
    shards = [shard.name for shard in shard_files(path)]
    for name in ("config.json", *SAFE_WEIGHTS, *shards, *PICKLED_WEIGHTS):
        file = path / name
        if file.is_file():
            digest.update(name.encode())
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


@dataclass
class Target:
    """A loaded sequence classifier with its tokenizer.

    Attributes:
        path: the model directory.
        model: the ``*ForSequenceClassification`` module, in eval mode.
        tokenizer: its tokenizer.
        label2id: label name to id, from the model config.
        recipe: the training recipe from ``privaudit.json`` when present, else ``None``.
        provides: what extraction attacks may use (see :mod:`privaudit.canary.attack`): black-box ``scores``
            (:meth:`logits`) and white-box ``inputs_embeds`` (:meth:`logits_from_embeddings`).

        compute: the device the model is on, and the autocast precision of scoring.
    """

    provides: ClassVar[frozenset[str]] = frozenset({"scores", "inputs_embeds"})

    path: Path
    model: torch.nn.Module
    tokenizer: object
    label2id: dict[str, int]
    recipe: dict | None
    max_length: int = 64
    compute: Compute = CPU

    @classmethod
    def load(cls, path: str | Path, *, allow_pickle: bool = False, compute: Compute = CPU) -> Target:
        """Load a model directory: safetensors only unless ``allow_pickle``; local files only; no remote code.

        The weights load on the CPU and move to ``compute.device``.

        Raises:
            PrivauditError: the directory is missing, not a classifier, pickled, or has no tokenizer.
        """
        path = Path(path)
        check_model_dir(path, allow_pickle=allow_pickle)
        _quiet_transformers()
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from privaudit.models import register

        register()  # privaudit's own model types (privaudit-bilstm, privaudit-cnn): its code, never the model's
        safe = any((path / name).is_file() for name in SAFE_WEIGHTS)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
            model = AutoModelForSequenceClassification.from_pretrained(
                path, local_files_only=True, trust_remote_code=False, use_safetensors=safe
            )
        except (OSError, ValueError, KeyError) as err:
            raise PrivauditError(f"{path}: cannot load the model ({str(err).splitlines()[0]})") from err
        model.eval()
        model.to(compute.device)
        recipe = _read_recipe(path / RECIPE_FILE)
        max_length = model_files.check_max_length(path / RECIPE_FILE, recipe, model.config.to_dict())
        # The model's own function, before privaudit sets anything (a decoder's pad token): one unpadded text at a time.
        own = own_logits(model, tokenizer, PROBES, max_length=min(max_length, PROBE_TOKENS))
        prepare(model, tokenizer, where=str(path))
        id2label = {int(k): str(v) for k, v in model.config.id2label.items()}
        target = cls(
            path=path,
            model=model,
            tokenizer=tokenizer,
            label2id={name: i for i, name in sorted(id2label.items())},
            recipe=recipe,
            max_length=max_length,
            compute=compute,
        )
        # Scored at fp32 whatever the precision, so a reduced precision's rounding is not taken for a wrong function.
        fp32 = dataclasses.replace(
            target, compute=dataclasses.replace(compute, precision="fp32"), max_length=min(max_length, PROBE_TOKENS)
        )
        self_check(model=model, where=str(path), own=own, padded_logits=fp32._padded_logits)
        return target

    @property
    def family(self) -> FamilyAdapter:
        """The model family's adapter (:mod:`privaudit.families`)."""
        return adapter_for(self.model)

    @property
    def id2label(self) -> dict[int, str]:
        return {i: name for name, i in self.label2id.items()}

    @property
    def n_labels(self) -> int:
        return len(self.label2id)

    def fingerprint(self) -> str:
        return directory_fingerprint(self.path)

    def encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenize a batch, padded to its longest text (at most ``max_length`` tokens)."""
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )

    def logits(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 128,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Logits for every text, shape ``(n, n_labels)``, float64, in input order.

        Texts are sorted by length so each batch pads little, and scored under ``torch.inference_mode`` on the
        target's device, in its precision (autocast); the logits come back to the CPU as float64.
        ``progress`` is called with the number of texts done after each batch.
        """
        return self._padded_logits(texts, batch_size=batch_size, progress=progress)

    def _padded_logits(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 128,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        # The scoring itself, which the load self-check runs too (so that it checks exactly this code).
        n = len(texts)
        out = np.empty((n, self.n_labels), dtype=np.float64)
        if n == 0:
            return out
        # Tokenize once (the fast tokenizer batches in Rust), then pad each length-sorted batch by hand. The token ids
        # are kept as one flat array: the tokenizer's own output for every text (Python lists of ids, masks and
        # type ids, and an Encoding object each) would take several KB a text, 0.6 GB at 100k texts.
        lengths = np.empty(n, dtype=np.int64)
        pieces = []
        for start in range(0, n, _TOKENIZE_CHUNK):
            chunk = self.tokenizer(
                list(texts[start : start + _TOKENIZE_CHUNK]),
                truncation=True,
                max_length=self.max_length,
                return_attention_mask=False,
                return_token_type_ids=False,
            )["input_ids"]
            lengths[start : start + len(chunk)] = [len(x) for x in chunk]
            pieces.append(np.fromiter(itertools.chain.from_iterable(chunk), dtype=np.int64))
        flat = np.concatenate(pieces)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        order = np.argsort(lengths, kind="stable")
        pad = pad_token_id(self.model, self.tokenizer)
        device = self.compute.device
        with torch.inference_mode(), self.compute.autocast():
            for start in range(0, n, batch_size):
                index = order[start : start + batch_size]
                # Row r holds text index[r]'s ids in its first lengths[index[r]] columns, then padding.
                columns = np.arange(lengths[index[-1]])
                valid = columns < lengths[index][:, None]
                positions = np.where(valid, offsets[index][:, None] + columns, 0)
                input_ids = torch.from_numpy(np.where(valid, flat[positions], pad)).to(device)
                attention_mask = torch.from_numpy(valid.astype(np.int64)).to(device)
                logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
                out[index] = logits.double().cpu().numpy()
                if progress is not None:
                    progress(len(index))
        return out

    def input_embeddings(self) -> torch.nn.Embedding:
        """The token embedding table, for white-box attacks that optimise in embedding space."""
        return self.family.input_embeddings(self.model)

    def logits_from_embeddings(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Differentiable logits from token embeddings (``inputs_embeds``), shape ``(batch, n_labels)``.

        Unpadded rows only for a decoder: its head finds the last token from ``input_ids``, which this path has not.
        """
        if self.family.needs_pad_token and not bool(attention_mask.all()):
            raise PrivauditError(f"{self.family.name}: inputs_embeds scoring needs unpadded rows (all-ones mask)")
        return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).logits
