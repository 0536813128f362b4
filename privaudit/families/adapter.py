"""What differs between model families, in one table keyed by the config's ``model_type``.

Like transformers' auto classes and peft's ``TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING``, each family's facts
live in one entry here, and nothing else in privaudit asks which family it holds. A family of privaudit's own (or one
a plugin brings) is one more :func:`register` call. A ``model_type`` with no entry gets :data:`GENERIC`, which a model
may use only after it passes the load self-check (:mod:`privaudit.families.selfcheck`).

What every family shares, and so needs no entry: privaudit pads on the right and lets the model number its own
positions (RoBERTa and XLM-R from ``padding_idx + 1``, counting non-pad tokens; BERT, GPT-2 from 0; rotary models
from 0), so a padded row sees the positions its unpadded text would. With right padding a decoder's causal attention
never reads the padding, and its head pools the last token before it (``config.pad_token_id`` marks it).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from privaudit.errors import PrivauditError

FIRST, LAST = "first", "last"


@dataclass(frozen=True)
class FamilyAdapter:
    """One model family's facts.

    Attributes:
        name: the family as users know it ("RoBERTa / XLM-R").
        model_types: the config ``model_type`` values it covers.
        pooling: ``first`` (the head reads the first token, [CLS] or <s>) or ``last`` (a decoder's head reads the last
            non-pad token, which ``config.pad_token_id`` marks, so the model needs a pad token).
        lora_targets: the attention projections LoRA adapts by default (peft's table; GPT-2's are ``Conv1D``).
        positions: how the family numbers positions (documentation; the model computes them itself).
        known: whether privaudit's tests cover the family (the generic fallback is not).
    """

    name: str
    model_types: tuple[str, ...]
    pooling: str = FIRST
    lora_targets: tuple[str, ...] = ()
    positions: str = "0..T-1"
    known: bool = True
    # The token table ModIvA searches: an ``nn.Embedding``, or (privaudit's word models, whose rows join a word's
    # vector and its characters' features) any module with a computed 2-D ``weight`` of one row per token.
    computed_table: bool = False

    @property
    def padding_side(self) -> str:
        # Right for every family: positions then match the unpadded text, and causal attention never reads padding.
        return "right"

    @property
    def needs_pad_token(self) -> bool:
        """A decoder's head finds its last token through ``config.pad_token_id``, so padded batches need one."""
        return self.pooling == LAST

    def input_embeddings(self, model: nn.Module) -> nn.Embedding:
        """The token embedding matrix (its ties: :func:`tied_names`).

        Raises:
            PrivauditError: the model has no ``nn.Embedding`` input embedding.
        """
        embedding = model.get_input_embeddings()
        if self.computed_table and getattr(getattr(embedding, "weight", None), "ndim", 0) == 2:
            return embedding
        if not isinstance(embedding, nn.Embedding):
            raise PrivauditError(f"{self.name}: the model's input embedding is not an nn.Embedding")
        return embedding

    def default_lora_targets(self) -> tuple[str, ...]:
        """The family's LoRA targets.

        Raises:
            PrivauditError: a family without known projections (the generic fallback): name them.
        """
        if not self.lora_targets:
            raise PrivauditError(
                f"--lora-rank: privaudit knows no attention projections for {self.name}; name them with --lora-targets"
            )
        return self.lora_targets


GENERIC = FamilyAdapter("generic", (), pooling="the model's own", known=False)

FAMILIES: tuple[FamilyAdapter, ...] = (
    FamilyAdapter("BERT", ("bert",), lora_targets=("query", "value")),
    FamilyAdapter("DistilBERT", ("distilbert",), lora_targets=("q_lin", "v_lin")),
    FamilyAdapter(
        "RoBERTa / XLM-R",
        ("roberta", "xlm-roberta"),
        lora_targets=("query", "value"),
        positions="padding_idx+1.., counting non-pad tokens",
    ),
    FamilyAdapter("DeBERTa-v2", ("deberta-v2",), lora_targets=("query_proj", "value_proj")),
    FamilyAdapter("ELECTRA", ("electra",), lora_targets=("query", "value")),
    FamilyAdapter("ALBERT", ("albert",), lora_targets=("query", "value")),
    FamilyAdapter("ModernBERT", ("modernbert",), lora_targets=("Wqkv",), positions="rotary, 0..T-1"),
    FamilyAdapter("GPT-2", ("gpt2",), pooling=LAST, lora_targets=("c_attn",)),
    FamilyAdapter("Llama", ("llama",), pooling=LAST, lora_targets=("q_proj", "v_proj"), positions="rotary, 0..T-1"),
    FamilyAdapter("Qwen2", ("qwen2",), pooling=LAST, lora_targets=("q_proj", "v_proj"), positions="rotary, 0..T-1"),
    # privaudit's own word models (privaudit.models): max-pooled over time, no positions, no attention for LoRA.
    FamilyAdapter(
        "privaudit BiLSTM / CNN",
        ("privaudit-bilstm", "privaudit-cnn"),
        pooling="max over time",
        positions="none",
        computed_table=True,
    ),
)

ADAPTERS: dict[str, FamilyAdapter] = {}


def register(adapter: FamilyAdapter) -> None:
    """Add a family: each of its ``model_types`` maps to it.

    Raises:
        PrivauditError: a ``model_type`` that another family already holds.
    """
    for model_type in adapter.model_types:
        if model_type in ADAPTERS and ADAPTERS[model_type] is not adapter:
            raise PrivauditError(f"model_type '{model_type}' already has the {ADAPTERS[model_type].name} adapter")
        ADAPTERS[model_type] = adapter


for _family in FAMILIES:
    register(_family)


def adapter_for(model_or_config: object) -> FamilyAdapter:
    """The adapter for a model, its config, or a ``model_type`` string; :data:`GENERIC` for an unknown one."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = config if isinstance(config, str) else getattr(config, "model_type", None)
    return ADAPTERS.get(str(model_type), GENERIC)


def tied_names(model: nn.Module) -> list[list[str]]:
    """Groups of parameter names that share one tensor (tied weights), e.g. an LM head tied to the embedding."""
    groups: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    return [names for names in groups.values() if len(names) > 1]
