"""Membership attack registry: built-in attacks by name, plus third-party plugins from entry points.

A built-in attack lives in its own file under ``attacks/`` and is listed in ``privaudit.attacks.BUILTINS``, which
this module registers on first use (so attack modules never import the registry). A third-party package adds one
by declaring an entry point in the group ``privaudit.attacks``::

    [project.entry-points."privaudit.attacks"]
    my-attack = "my_package.my_module:MyAttack"

Plugins are imported lazily: only the plugin that is selected is imported, so a broken plugin cannot break
an audit that does not use it. :func:`list_attacks` imports them all and reports a broken one instead of
raising. The machinery is :class:`privaudit.plugins.Registry`, shared with the canary-extraction attacks
(:mod:`privaudit.canary.registry`); this module is its membership instance.
"""

from __future__ import annotations

from importlib import metadata  # noqa: F401  (tests patch registry.metadata.entry_points; the registry reads it)
from typing import Any

from privaudit.errors import PrivauditError
from privaudit.mia.attack import SIGNAL_NAMES, Attack
from privaudit.plugins import AttackInfo, Registry, parse_attack_options

ENTRY_POINT_GROUP = "privaudit.attacks"

MEMBERSHIP = Registry(kind="membership", base=Attack, requirements=SIGNAL_NAMES, group=ENTRY_POINT_GROUP, noun="attack")


def register_attack(cls: type[Attack]) -> type[Attack]:
    """Class decorator: add an attack to the registry under ``cls.name``.

    Args:
        cls: a concrete :class:`~privaudit.mia.attack.Attack` subclass with ``name``, ``description`` and
            ``requires`` set.

    Returns:
        ``cls`` unchanged.

    Raises:
        PrivauditError: when a class attribute is missing or malformed, or another class holds the name.
    """
    return MEMBERSHIP.register(cls)


def _plugin_entry_points() -> dict[str, metadata.EntryPoint]:
    """Entry points in the ``privaudit.attacks`` group, by name, without importing them."""
    return MEMBERSHIP.entry_points()


def available_attacks() -> list[str]:
    """Names of all attacks: built-ins in ``privaudit.attacks.ORDER``, then plugins, sorted; nothing is imported.

    Returns:
        Attack names as used on the command line. A built-in name shadows a plugin of the same name.
    """
    return MEMBERSHIP.names()


def get_attack_class(name: str) -> type[Attack]:
    """The attack class registered under ``name``, importing it if it is a plugin.

    Args:
        name: an attack name from :func:`available_attacks`.

    Returns:
        The attack class.

    Raises:
        PrivauditError: when no attack has that name, or the plugin fails to import.
    """
    return MEMBERSHIP.get_class(name)


def get_attack(name: str, **params: Any) -> Attack:
    """Build the attack called ``name`` with the given parameters.

    Args:
        name: an attack name from :func:`available_attacks`.
        **params: the attack's parameters, e.g. ``a=0.3`` for ``rmia``.

    Returns:
        An attack instance, ready for ``check`` and ``score``.

    Raises:
        PrivauditError: for an unknown name, a broken plugin, or a parameter the attack does not take.
    """
    return MEMBERSHIP.create(name, **params)


def resolve(spec: str) -> list[str]:
    """Parse a comma-separated attack list such as ``"loss,lira-offline"``, or ``"all"``.

    Args:
        spec: attack names separated by commas (spaces allowed), or ``"all"`` for every attack.

    Returns:
        The attack names, in the order given, without duplicates. Plugins are not imported here; a broken
        one raises when :func:`get_attack` builds it.

    Raises:
        PrivauditError: when the list is empty or names an unknown attack.
    """
    return MEMBERSHIP.resolve(spec)


def list_attacks() -> list[AttackInfo]:
    """Describe every membership attack, importing all plugins; a broken plugin is reported, never raised.

    Returns:
        One :class:`~privaudit.plugins.AttackInfo` per name, sorted by name; a plugin that fails to load has
        ``error`` set.
    """
    return MEMBERSHIP.describe()


__all__ = [
    "ENTRY_POINT_GROUP",
    "MEMBERSHIP",
    "AttackInfo",
    "available_attacks",
    "get_attack",
    "get_attack_class",
    "list_attacks",
    "parse_attack_options",
    "register_attack",
    "resolve",
]


def build_attacks(names: list[str], option_specs: tuple[str, ...]) -> list:
    """The selected attacks, each with its ``--attack-option`` parameters (checked before anything is scored)."""
    options = parse_attack_options(option_specs)
    stray = sorted(set(options) - set(names))
    if stray:
        raise PrivauditError(
            f"--attack-option for {', '.join(map(repr, stray))}, which is not selected; selected: {', '.join(names)}"
        )
    return [get_attack(name, **options.get(name, {})) for name in names]
