"""Built-in membership inference attacks, one module per attack.

Importing this package registers every built-in attack with :mod:`privaudit.registry`. To add one, write a
module here whose class carries ``@register_attack``, and import it below.
"""

from privaudit.attacks import confidence, entropy, lira, loss, reference_loss, rmia

__all__ = ["confidence", "entropy", "lira", "loss", "reference_loss", "rmia"]

# How `--attack all` and `privaudit attacks` list the built-ins: from the cheapest signal to the strongest attacks.
ORDER = ("loss", "confidence", "entropy", "modified-entropy", "reference-loss", "lira-offline", "lira-online", "rmia")
