"""The training recipe, below the modules that use it: :class:`TrainConfig` (how to train) and :class:`Architecture`
(the small BERT trained from scratch). ``train`` and ``model`` both read them from here, so the two do not lean on
each other (``tests/test_layout.py``); their old import paths keep working.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from privaudit.errors import PrivauditError
from privaudit.training.layers import parse_train_layers
from privaudit.training.word_models import WordModel, check_arch


@dataclass(frozen=True)
class Architecture:
    """A small BERT for ``--from-scratch`` training."""

    hidden_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    intermediate_size: int = 256
    vocab_size: int = 4000
    dropout: float = 0.1


@dataclass(frozen=True)
class TrainConfig:
    """How to train: enough, with the data, to train reference models the same way."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    max_length: int = 64
    seed: int = 0
    weight_decay: float = 0.0
    base: str | None = None
    architecture: Architecture | None = field(default_factory=Architecture)
    # What trains (privaudit/training/layers.py): "all", "head" or "last:N"; with lora_rank > 0, LoRA adapters on
    # lora_targets plus the head. Recorded in privaudit.json, so reference models train the same parameters.
    train_layers: str = "all"
    lora_rank: int = 0
    lora_alpha: float | None = None
    lora_targets: tuple[str, ...] = ()  # empty: the family's attention projections (privaudit.families)
    # "bert" (the small BERT above, or --base), or privaudit's own "bilstm" / "cnn" (privaudit.models) sized by
    # word_model. Early stopping: stop after `early_stopping` epochs without a lower validation loss and keep the
    # best epoch's weights; the validation data is `validation_file`, or a `validation_fraction` of the training data
    # held out (so reference models, which read this recipe, split theirs alike).
    arch: str = "bert"
    word_model: WordModel | None = None
    early_stopping: int = 0
    validation_fraction: float = 0.0
    validation_file: str | None = None

    def __post_init__(self) -> None:
        check_arch(self.arch)
        if self.early_stopping < 0:
            raise PrivauditError(
                f"--early-stopping must be 0 (off) or a patience of 1 or more epochs, not {self.early_stopping}"
            )
        if not 0 <= self.validation_fraction < 1:
            raise PrivauditError(f"--validation-fraction must be in [0, 1) (0: off), not {self.validation_fraction}")
        if self.early_stopping and not (self.validation_fraction or self.validation_file):
            raise PrivauditError(
                "--early-stopping needs validation data: pass --validation FILE or --validation-fraction F"
            )
        spec = parse_train_layers(self.train_layers)  # fails early, before any data is read
        if self.lora_rank < 0:
            raise PrivauditError(f"--lora-rank must be at least 1 (0: no LoRA), not {self.lora_rank}")
        if self.lora_rank and spec.kind != "all":
            raise PrivauditError("give --train-layers or --lora-rank, not both: LoRA trains its adapters and the head")
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
