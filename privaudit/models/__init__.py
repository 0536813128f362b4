"""privaudit's own text classifiers over word embeddings: a BiLSTM and Kim's CNN, optionally with character CNNs.

Both are transformers ``PreTrainedModel`` classes with a ``model_type`` of privaudit's (``privaudit-bilstm``,
``privaudit-cnn``). :func:`register` adds them to transformers' Auto classes, so a saved model directory loads through
``AutoModelForSequenceClassification`` with ``trust_remote_code=False``: the code is privaudit's, never the model's.
"""

from __future__ import annotations

from privaudit.models.config import BILSTM, CNN, BiLSTMConfig, CNNConfig, WordModelConfig

MODEL_TYPES = (BILSTM, CNN)
_registered = False


def register() -> None:
    """Register the configs and classifiers with transformers' Auto classes (once; later calls do nothing)."""
    global _registered
    if _registered:
        return
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from privaudit.models.convolutional import CNNForSequenceClassification
    from privaudit.models.recurrent import BiLSTMForSequenceClassification

    for config, model in ((BiLSTMConfig, BiLSTMForSequenceClassification), (CNNConfig, CNNForSequenceClassification)):
        AutoConfig.register(config.model_type, config, exist_ok=True)
        AutoModelForSequenceClassification.register(config, model, exist_ok=True)
    _registered = True


__all__ = ["MODEL_TYPES", "BILSTM", "CNN", "BiLSTMConfig", "CNNConfig", "WordModelConfig", "register"]
