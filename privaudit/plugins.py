"""Attack plugins of every kind: the parameter convention they share, and one registry per kind.

There are two kinds of attack, each with its own base class and entry-point group, and one :class:`Registry`
each: membership attacks (:mod:`privaudit.mia.registry`, group ``privaudit.attacks``) and canary-extraction attacks
(:mod:`privaudit.canary.registry`, group ``privaudit.extraction_attacks``). The machinery lives here, below both
stages, because mia and canary never import each other.

A built-in attack lives in its own file under ``attacks/`` and is listed in ``privaudit.attacks.BUILTINS``; each
registry takes the built-ins that subclass its base, on first use (so attack modules never import a registry). A
third-party package adds one by declaring an entry point::

    [project.entry-points."privaudit.attacks"]             # or "privaudit.extraction_attacks"
    my-attack = "my_package.my_module:MyAttack"

Plugins are imported lazily: only the plugin that is selected is imported, so a broken plugin cannot break an audit
that does not use it. :meth:`Registry.describe` imports them all and reports a broken one instead of raising.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from privaudit.errors import PrivauditError


class Parameterised:
    """An object whose parameters are its ``__init__``'s keyword arguments, stored unchanged (scikit-learn style)."""

    def __init__(self, **params: Any) -> None:
        """Store the parameters as attributes, unchanged.

        Args:
            **params: the parameters; names must match the subclass's ``__init__`` arguments.
        """
        for key, value in params.items():
            setattr(self, key, value)

    @classmethod
    def parameter_names(cls) -> list[str]:
        """Names of the keyword parameters the class accepts (from its ``__init__`` signature)."""
        if cls.__init__ is Parameterised.__init__:
            return []
        signature = inspect.signature(cls.__init__)
        return [
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """The parameters and their current values, e.g. for a report."""
        return {key: getattr(self, key) for key in self.parameter_names()}

    def __repr__(self) -> str:
        params = ", ".join(f"{key}={value!r}" for key, value in self.get_params().items())
        return f"{type(self).__name__}({params})"


@dataclass(frozen=True)
class AttackInfo:
    """One row of ``privaudit attacks``.

    Attributes:
        name: the attack's command-line name.
        description: its one-line description, or ``""`` when the plugin is broken.
        requires: what it needs (membership: signals; extraction: ``scores`` or ``inputs_embeds``).
        online: whether it needs reference models trained with the audited examples (membership only).
        parameters: names of its keyword parameters.
        source: ``"built-in"`` or the plugin's ``module:object`` reference.
        error: why the plugin cannot be used, or ``None`` when it loads.
        kind: ``"membership"`` or ``"extraction"``.
    """

    name: str
    description: str
    requires: frozenset[str]
    online: bool
    parameters: tuple[str, ...]
    source: str
    error: str | None = None
    kind: str = "membership"


class Registry:
    """The attacks of one kind by name: built-ins from ``privaudit.attacks.BUILTINS``, plugins from entry points.

    Args:
        kind: ``"membership"`` or ``"extraction"``, as ``privaudit attacks`` shows it.
        base: the base class every attack of this kind subclasses.
        requirements: what an attack's ``requires`` may name.
        group: the entry-point group of third-party attacks.
        noun: what messages call one, e.g. ``"extraction attack"``.
    """

    def __init__(self, *, kind: str, base: type, requirements: frozenset[str], group: str, noun: str) -> None:
        self.kind, self.base, self.requirements, self.group, self.noun = kind, base, requirements, group, noun
        self.classes: dict[str, type] = {}

    def register(self, cls: type) -> type:
        """Add an attack under ``cls.name`` (usable as a class decorator); returns ``cls`` unchanged.

        Raises:
            PrivauditError: when a class attribute is missing or malformed, or another class holds the name.
        """
        self.builtins()  # a built-in's name is taken even before the built-ins are first used
        return self._add(cls)

    def _add(self, cls: type) -> type:
        self.validate(cls)
        holder = self.classes.get(cls.name)
        if holder is not None and holder is not cls:
            raise PrivauditError(f"{self.noun} name '{cls.name}' is taken by {holder.__module__}.{holder.__qualname__}")
        self.classes[cls.name] = cls
        return cls

    def validate(self, cls: Any) -> None:
        """Check that ``cls`` is a concrete attack of this kind that declares itself.

        Raises:
            PrivauditError: naming the class and what it lacks.
        """
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise PrivauditError(f"{cls!r} is not a subclass of {self.base.__module__}.{self.base.__qualname__}")
        for attribute in ("name", "description", "requires"):
            if not getattr(cls, attribute, None):
                raise PrivauditError(f"{self.noun} class {cls.__qualname__} must set the class attribute '{attribute}'")
        unknown = set(cls.requires) - self.requirements
        if unknown:
            raise PrivauditError(
                f"{self.noun} '{cls.name}' requires unknown {sorted(unknown)}; choose from {sorted(self.requirements)}"
            )

    def builtins(self) -> dict[str, type]:
        """The built-ins of this kind (and any class registered in-process), in ``BUILTINS`` order."""
        for cls in importlib.import_module("privaudit.attacks").BUILTINS:
            if issubclass(cls, self.base) and self.classes.get(cls.name) is not cls:
                self._add(cls)
        return dict(self.classes)

    def entry_points(self) -> dict[str, metadata.EntryPoint]:
        """This kind's entry points, by name, without importing them."""
        return {ep.name: ep for ep in metadata.entry_points(group=self.group)}

    def load(self, ep: metadata.EntryPoint) -> type:
        """Import a plugin and check it.

        Raises:
            PrivauditError: the plugin fails to import, is not an attack of this kind, or names itself otherwise.
        """
        try:
            cls = ep.load()
        except Exception as exc:  # a plugin may fail in any way; report it, do not crash the audit
            raise PrivauditError(
                f"{self.noun} plugin '{ep.name}' ({ep.value}) failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        self.validate(cls)
        if cls.name != ep.name:
            raise PrivauditError(
                f"{self.noun} plugin '{ep.name}' ({ep.value}) declares name '{cls.name}'; the entry point and the "
                "class attribute 'name' must match"
            )
        return cls

    def names(self) -> list[str]:
        """Built-ins in ``BUILTINS`` order, then plugins sorted; no plugin is imported. A built-in shadows a plugin."""
        builtins = self.builtins()
        return list(builtins) + sorted(set(self.entry_points()) - set(builtins))

    def get_class(self, name: str) -> type:
        """The attack class called ``name``, importing it if it is a plugin.

        Raises:
            PrivauditError: when no attack has that name, or the plugin fails to import.
        """
        builtins = self.builtins()
        if name in builtins:
            return builtins[name]
        plugins = self.entry_points()
        if name in plugins:
            return self.load(plugins[name])
        raise PrivauditError(f"unknown {self.noun} '{name}'; choose from: {', '.join(self.names())}")

    def create(self, name: str, **params: Any) -> Any:
        """Build the attack called ``name`` with the given parameters.

        Raises:
            PrivauditError: for an unknown name, a broken plugin, or a parameter the attack does not take.
        """
        cls = self.get_class(name)
        accepted = cls.parameter_names()
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            takes = f"takes: {', '.join(accepted)}" if accepted else "takes no parameters"
            raise PrivauditError(f"{self.noun} '{name}' has no parameter {', '.join(map(repr, unknown))}; it {takes}")
        return cls(**params)

    def resolve(self, spec: str) -> list[str]:
        """Parse a comma-separated list such as ``"loss,lira-offline"``, or ``"all"``; plugins are not imported.

        Returns:
            The names, in the order given, without duplicates (``"all"``: every name, as :meth:`names`).

        Raises:
            PrivauditError: when the list is empty or names an unknown attack.
        """
        names = [token.strip() for token in spec.split(",") if token.strip()]
        valid = self.names()
        if not names:
            raise PrivauditError(f"no {self.noun} given; choose from: all, {', '.join(valid)}")
        if "all" in names:
            return valid
        unknown = [name for name in names if name not in valid]
        if unknown:
            raise PrivauditError(
                f"unknown {self.noun} {', '.join(map(repr, unknown))}; choose from: all, {', '.join(valid)}"
            )
        return list(dict.fromkeys(names))

    def describe(self) -> list[AttackInfo]:
        """Every attack of this kind, sorted by name, importing all plugins; a broken one has ``error`` set."""
        builtins = self.builtins()
        infos = {name: self._info(cls, "built-in") for name, cls in builtins.items()}
        for name, ep in self.entry_points().items():
            if name in builtins:
                continue  # the built-in wins; the plugin is unreachable by this name
            try:
                infos[name] = self._info(self.load(ep), ep.value)
            except PrivauditError as exc:
                infos[name] = AttackInfo(name, "", frozenset(), False, (), ep.value, error=str(exc), kind=self.kind)
        return [infos[name] for name in sorted(infos)]

    def _info(self, cls: type, source: str) -> AttackInfo:
        online = bool(getattr(cls, "online", False))
        parameters = tuple(cls.parameter_names())
        return AttackInfo(
            cls.name, cls.description, frozenset(cls.requires), online, parameters, source, kind=self.kind
        )


def parse_attack_options(specs: Sequence[str], source: str = "--attack-option") -> dict[str, dict[str, Any]]:
    """Parse ``ATTACK:PARAM=VALUE`` settings, such as ``rmia:a=0.5``, into parameters per attack.

    Values are read as ``none``, ``true``/``false``, an integer, a number, or else left as text; the attack checks
    them when it runs.

    Args:
        specs: the settings, as given (repeatable flag or config list).
        source: where they came from, for messages.

    Returns:
        ``{attack: {param: value}}``, for :meth:`Registry.create`.

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
