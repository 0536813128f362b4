"""Built-in membership inference attacks, one module per attack.

To add one, write a module here with an :class:`~privaudit.mia.attack.Attack` subclass and add the class to
``BUILTINS`` below: :mod:`privaudit.mia.registry` registers them from that tuple, so attack modules never import the
registry.
"""

from privaudit.attacks.confidence import ConfidenceAttack
from privaudit.attacks.entropy import EntropyAttack, ModifiedEntropyAttack
from privaudit.attacks.gap import GapAttack
from privaudit.attacks.label_only import LabelOnlyAugment
from privaudit.attacks.lira import LiRAOffline, LiRAOnline
from privaudit.attacks.loss import LossAttack
from privaudit.attacks.reference_loss import ReferenceLossAttack
from privaudit.attacks.rmia import RMIA

# How `--attack all` and `privaudit attacks` list the built-ins: from the cheapest signal to the strongest attacks,
# then the label-only ones.
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
)
ORDER = tuple(cls.name for cls in BUILTINS)

__all__ = ["BUILTINS", "ORDER"]
