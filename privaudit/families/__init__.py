"""Model families: one adapter per family, keyed by the config's ``model_type``, and the load self-check."""

from privaudit.families.adapter import ADAPTERS, FAMILIES, GENERIC, FamilyAdapter, adapter_for, register, tied_names

__all__ = ["ADAPTERS", "FAMILIES", "GENERIC", "FamilyAdapter", "adapter_for", "register", "tied_names"]
