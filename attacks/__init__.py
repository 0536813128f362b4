"""Built-in attacks, one module per attack: membership inference and canary extraction.

To add one, write a module here with a subclass of :class:`~privaudit.mia.attack.Attack` (membership) or
:class:`~privaudit.canary.attack.ExtractionAttack` (canary extraction) and add the class to ``BUILTINS`` below:
:mod:`privaudit.mia.registry` and :mod:`privaudit.canary.registry` each register the built-ins of their kind from
that tuple, so attack modules never import a registry.
"""

from privaudit.attacks.confidence import ConfidenceAttack
from privaudit.attacks.entropy import EntropyAttack, ModifiedEntropyAttack
from privaudit.attacks.exposure import ExposureAttack
from privaudit.attacks.gap import GapAttack
from privaudit.attacks.label_only import LabelOnlyAugment
from privaudit.attacks.lira import LiRAOffline, LiRAOnline
from privaudit.attacks.loss import LossAttack
from privaudit.attacks.modiva import ModivaAttack
from privaudit.attacks.reference_loss import ReferenceLossAttack
from privaudit.attacks.rmia import RMIA

# How `--attack all` and `privaudit attacks` list the built-ins of each kind: membership attacks from the cheapest
# signal to the strongest attacks, then the label-only ones; then the extraction attacks, black-box before white-box.
BUILTINS = (
    LossAttack,
    ConfidenceAttack,
    EntropyAttack,
    ModifiedEntropyAttack,
    ReferenceLossAttack,
    LiRAOffline,
    LiRAOnline,
    RMIA,
    # Label-only: they read the predicted label alone, so they run on endpoints that return nothing else.
    GapAttack,
    LabelOnlyAugment,
    # Canary extraction.
    ExposureAttack,
    ModivaAttack,
)
ORDER = tuple(cls.name for cls in BUILTINS)

__all__ = ["BUILTINS", "ORDER"]
