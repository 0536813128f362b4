"""Attack registry: built-in attacks by name, plus third-party plugins from entry points.

A built-in attack lives in its own file under ``attacks/`` and is listed in ``privaudit.attacks.BUILTINS``, which
this module registers on first use (so attack modules never import the registry). A third-party
package adds one by declaring an entry point in the group ``privaudit.attacks``::

    [project.entry-points."privaudit.attacks"]
    my-attack = "my_package.my_module:MyAttack"

Plugins are imported lazily: only the plugin that is selected is imported, so a broken plugin cannot break
an audit that does not use it. :func:`list_attacks` imports them all and reports a broken one instead of
raising.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from privaudit.errors import PrivauditError
from privaudit.mia.attack import SIGNAL_NAMES, Attack

ENTRY_POINT_GROUP = "privaudit.attacks"

_ATTACKS: dict[str, type[Attack]] = {}


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
    _validate(cls)
    holder = _ATTACKS.get(cls.name)
    if holder is not None and holder is not cls:
        raise PrivauditError(f"attack name '{cls.name}' is taken by {holder.__module__}.{holder.__qualname__}")
    _ATTACKS[cls.name] = cls
    return cls


def _validate(cls: Any) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Attack)):
        raise PrivauditError(f"{cls!r} is not a subclass of privaudit.mia.attack.Attack")
    for attribute in ("name", "description", "requires"):
        if not getattr(cls, attribute, None):
            raise PrivauditError(f"attack class {cls.__qualname__} must set the class attribute '{attribute}'")
    unknown = set(cls.requires) - SIGNAL_NAMES
    if unknown:
        raise PrivauditError(f"attack '{cls.name}' requires unknown signals {sorted(unknown)}")


def _builtin_attacks() -> dict[str, type[Attack]]:
    builtins = importlib.import_module("privaudit.attacks").BUILTINS
    for cls in builtins:
        if _ATTACKS.get(cls.name) is not cls:
            register_attack(cls)
    return dict(_ATTACKS)


def _plugin_entry_points() -> dict[str, metadata.EntryPoint]:
    """Entry points in the ``privaudit.attacks`` group, by name, without importing them."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _load_plugin(ep: metadata.EntryPoint) -> type[Attack]:
    try:
        cls = ep.load()
    except Exception as exc:  # a plugin may fail in any way; report it, do not crash the audit
        raise PrivauditError(
            f"attack plugin '{ep.name}' ({ep.value}) failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    _validate(cls)
    if cls.name != ep.name:
        raise PrivauditError(
            f"attack plugin '{ep.name}' ({ep.value}) declares name '{cls.name}'; the entry point and the "
            "class attribute 'name' must match"
        )
    return cls


def available_attacks() -> list[str]:
    """Names of all attacks: built-ins in ``privaudit.attacks.ORDER``, then plugins, sorted; nothing is imported.

    Returns:
        Attack names as used on the command line. A built-in name shadows a plugin of the same name.
    """
    from privaudit.attacks import ORDER

    builtins = _builtin_attacks()
    ordered = [name for name in ORDER if name in builtins]
    ordered += sorted(set(builtins) - set(ordered))
    return ordered + sorted(set(_plugin_entry_points()) - set(builtins))


def get_attack_class(name: str) -> type[Attack]:
    """The attack class registered under ``name``, importing it if it is a plugin.

    Args:
        name: an attack name from :func:`available_attacks`.

    Returns:
        The attack class.

    Raises:
        PrivauditError: when no attack has that name, or the plugin fails to import.
    """
    builtins = _builtin_attacks()
    if name in builtins:
        return builtins[name]
    plugins = _plugin_entry_points()
    if name in plugins:
        return _load_plugin(plugins[name])
    raise PrivauditError(f"unknown attack '{name}'; choose from: {', '.join(available_attacks())}")


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
    cls = get_attack_class(name)
    accepted = cls.parameter_names()
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        takes = f"takes: {', '.join(accepted)}" if accepted else "takes no parameters"
        raise PrivauditError(f"attack '{name}' has no parameter {', '.join(map(repr, unknown))}; it {takes}")
    return cls(**params)


def parse_attack_options(specs: Sequence[str], source: str = "--attack-option") -> dict[str, dict[str, Any]]:
    """Parse ``ATTACK:PARAM=VALUE`` settings, such as ``rmia:a=0.5``, into parameters per attack.

    Values are read as ``none``, ``true``/``false``, an integer, a number, or else left as text; the attack checks
    them when it runs.

    Args:
        specs: the settings, as given (repeatable flag or config list).
        source: where they came from, for messages.

    Returns:
        ``{attack: {param: value}}``, for :func:`get_attack`.

    Raises:
        PrivauditError: for a setting not of the form ``ATTACK:PARAM=VALUE``.
    """
    options: dict[str, dict[str, Any]] = {}
    for spec in specs:
        head, equals, text = spec.partition("=")
        attack, colon, param = head.partition(":")
        attack, param, text = attack.strip(), param.strip(), text.strip()
        if not (equals and colon and attack and param and text):
            raise PrivauditError(f"{source} '{spec}': expected ATTACK:PARAM=VALUE, e.g. rmia:a=0.5")
        options.setdefault(attack, {})[param] = _option_value(text)
    return options


def _option_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("none", "auto"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


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
    names = [token.strip() for token in spec.split(",") if token.strip()]
    valid = available_attacks()
    if not names:
        raise PrivauditError(f"no attack given; choose from: all, {', '.join(valid)}")
    if "all" in names:
        return valid
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise PrivauditError(f"unknown attack {', '.join(map(repr, unknown))}; choose from: all, {', '.join(valid)}")
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class AttackInfo:
    """One row of ``privaudit attacks``.

    Attributes:
        name: the attack's command-line name.
        description: its one-line description, or ``""`` when the plugin is broken.
        requires: the signals it needs.
        online: whether it needs reference models trained with the audited examples.
        parameters: names of its keyword parameters.
        source: ``"built-in"`` or the plugin's ``module:object`` reference.
        error: why the plugin cannot be used, or ``None`` when it loads.
    """

    name: str
    description: str
    requires: frozenset[str]
    online: bool
    parameters: tuple[str, ...]
    source: str
    error: str | None = None


def _info(cls: type[Attack], source: str) -> AttackInfo:
    return AttackInfo(
        cls.name, cls.description, frozenset(cls.requires), cls.online, tuple(cls.parameter_names()), source
    )


def list_attacks() -> list[AttackInfo]:
    """Describe every attack, importing all plugins; a broken plugin is reported, never raised.

    Returns:
        One :class:`AttackInfo` per name, sorted by name; a plugin that fails to load has ``error`` set.
    """
    builtins = _builtin_attacks()
    infos = {name: _info(cls, "built-in") for name, cls in builtins.items()}
    for name, ep in _plugin_entry_points().items():
        if name in builtins:
            continue  # the built-in wins; the plugin is unreachable by this name
        try:
            infos[name] = _info(_load_plugin(ep), ep.value)
        except PrivauditError as exc:
            infos[name] = AttackInfo(name, "", frozenset(), False, (), ep.value, error=str(exc))
    return [infos[name] for name in sorted(infos)]
