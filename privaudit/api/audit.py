"""``privaudit.audit_membership`` and ``privaudit.audit_canaries``: ``privaudit mia`` and ``privaudit canary`` from
Python, through the same requests and runners as the command line, without its output, gate or exit codes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from privaudit.api.inputs import (
    Data,
    PathLike,
    Progress,
    as_data,
    as_path,
    as_paths,
    attack_option_specs,
    attack_spec,
    check_ranges,
    stage_callback,
)
from privaudit.api.results import CanaryAudit, MembershipAudit, adopt


def audit_membership(
    model_dir: PathLike | None = None,
    *,
    members: Data | None = None,
    non_members: Data | None = None,
    attacks: str | Sequence[str] | None = None,
    attack_options: Mapping[str, Mapping[str, Any]] | Sequence[str] | None = None,
    population: Data | None = None,
    reference_models: int = 0,
    reference_dirs: PathLike | Sequence[PathLike] | None = None,
    train_config: PathLike | None = None,
    scores: PathLike | None = None,
    epsilon: float | None = None,
    delta: float | None = None,
    seed: int = 0,
    allow_pickle: bool = False,
    batch_size: int = 128,
    cache_dir: PathLike | None = None,
    slices: str | Sequence[str] | None = None,
    slice_min: int = 20,
    top: int = 20,
    redact_texts: bool = False,
    group_by: str | None = None,
    group_aggregate: str = "auto",
    endpoint: str | None = None,
    endpoint_format: str = "v2",
    endpoint_labels: str | None = None,
    endpoint_batch: int = 32,
    concurrency: int = 4,
    endpoint_timeout: float = 30.0,
    endpoint_retries: int = 5,
    max_queries: int | None = None,
    header: Sequence[str] | None = None,
    insecure: bool = False,
    endpoint_cache: PathLike | None = None,
    device: str = "auto",
    precision: str = "fp32",
    executor: str = "local",
    ray_address: str | None = None,
    workers: int | None = None,
    cpus_per_job: int = 1,
    gpus_per_job: float = 0.0,
    max_retries: int = 3,
    progress: Progress | None = None,
) -> MembershipAudit:
    """Membership inference: how well can an attacker tell the model's training examples from others?

    ``privaudit mia`` without its reports and gate: every example is scored once, each attack turns the signals
    into membership scores, and each gets ROC AUC, TPR at 0.1%, 1% and 10% FPR, the advantage and an empirical
    epsilon lower bound (95% confidence). The same arguments and seed give the same numbers as the command.

    Args:
        model_dir: the audited model directory (safetensors); ``None`` with ``scores``.
        members: the training examples: a JSONL or CSV file, a list of ``{"text", "label"}`` dicts, or a pandas
            ``DataFrame`` with those columns. Labels by name or by id.
        non_members: examples not trained on, from the same distribution, in any form ``members`` takes.
        attacks: attack names as a list, a comma-separated string, or ``"all"``; ``None``: ``"loss"`` on a model
            (``privaudit attacks`` lists them, ``privaudit.mia.registry.list_attacks()`` too).
        attack_options: attack parameters, ``{"rmia": {"a": 0.3}}`` or ``["rmia:a=0.3"]`` (``--attack-option``).
        population: more non-members, to train reference models on and for RMIA's z-samples; any data form.
        reference_models: reference models to train (cached under ``cache_dir``) for reference-loss, LiRA, RMIA.
        reference_dirs: reference models already trained without the audited examples, used instead of training.
        train_config: the training recipe (``privaudit.json``) for reference models, if not the model's.
        scores: audit precomputed logits or scores from this file instead of a model.
        epsilon: the theoretical epsilon; ``None``: from the model's ``privaudit.json``.
        delta: delta of the bounds; ``None``: the model's, else 1e-5.
        seed: seed of the reference models, bootstrap and splits.
        allow_pickle: load pickled weights (runs code from the file: trust it first).
        batch_size: texts per forward pass.
        cache_dir: the reference-model cache; ``None``: ``.cache/privaudit`` under the working directory.
        slices: slice kinds, ``"class"`` and/or ``"correctness"`` (``--slice``): every attack measured per slice.
        slice_min: members and non-members a slice needs, each, to be measured (``--slice-min``).
        top: the most exposed members listed in ``to_dict()["most_exposed"]`` (``--top``); 0: none. Every example's
            scores are in ``privaudit.mia.records.example_rows(result)`` (the rows of ``--per-example``).
        redact_texts: keep no audited text in the result, only each text's SHA-256 (``--redact-texts``).
        group_by: audit users, not records (``--group-by``): the field of every record (file column or dict key)
            naming its owner. Members and non-members are then users, every metric and example is per user, and
            ``to_dict()["users"]`` gives the record-level numbers and the group-privacy bound beside them.
        group_aggregate: how a user's record scores become one (``--group-aggregate``): ``"mean"``, ``"max"``,
            ``"logsumexp"``, ``"top-k-mean"``, or ``"auto"`` (chosen on the reference models' population users).
        endpoint: audit the classifier behind this URL instead of ``model_dir`` (docs/endpoints.md); the other
            ``endpoint_*`` keywords, ``concurrency``, ``max_queries``, ``header`` (``["NAME=@ENVVAR"]``: values
            come from the environment, never stored) and ``insecure`` are the command's ``--endpoint-*`` flags.
        device: ``auto`` (CUDA, then MPS, then the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (``--device``).
        precision: ``fp32``, ``bf16`` or ``fp16`` autocast for scoring (``--precision``).
        executor: where reference models train, ``local`` or ``ray``; ``ray_address``, ``workers``, ``cpus_per_job``,
            ``gpus_per_job`` and ``max_retries`` are the command's Ray flags (README, "Running on a GPU or a cluster").
        progress: called as ``progress(stage, done, total)`` as work advances (``total`` may be ``None``); stages
            are ``"scoring"``, ``"reference models"``, ``"training reference model K"``, ``"attack NAME"`` and
            ``"attacks"``. Nothing is printed either way.

    Returns:
        The ``MiaResult`` of ``privaudit mia``: ``to_dict()`` is its JSON document (``to_json()`` the exact text of
        ``--format json``), ``summary()`` its table as text, ``write_html(path)`` its HTML report.

    Raises:
        PrivauditError: bad input or an audit that cannot complete, with the message the command line prints.

    Example:
        >>> import privaudit
        >>> result = privaudit.audit_membership(
        ...     "fixtures/models/intent-tiny",
        ...     members="fixtures/data/members.jsonl",
        ...     non_members="fixtures/data/non_members.jsonl",
        ...     attacks=["loss", "entropy"],
        ... )
        >>> round(result.to_dict()["attacks"][0]["auc"]["value"], 2)  # doctest: +SKIP
        0.71
    """
    from privaudit.endpoint.client import endpoint_from_flags
    from privaudit.mia.run import MiaRequest, run_mia

    check_ranges(
        reference_models=(reference_models, 0), batch_size=(batch_size, 1), top=(top, 0), slice_min=(slice_min, 2)
    )
    remote = endpoint_from_flags(locals())
    request = MiaRequest(
        model_dir=as_path(model_dir, name="model_dir"),
        members=as_data(members, name="members", group_by=group_by),
        non_members=as_data(non_members, name="non_members", group_by=group_by),
        attacks=attack_spec(attacks),
        attack_options=attack_option_specs(attack_options),
        population=as_data(population, name="population", group_by=group_by),
        reference_models=reference_models,
        reference_dirs=as_paths(reference_dirs, name="reference_dirs"),
        scores=as_path(scores, name="scores"),
        epsilon=epsilon,
        delta=delta,
        seed=seed,
        allow_pickle=allow_pickle,
        batch_size=batch_size,
        train_config=as_path(train_config, name="train_config"),
        cache_dir=as_path(cache_dir, name="cache_dir"),
        slices=(slices,) if isinstance(slices, str) else tuple(slices or ()),
        slice_min=slice_min,
        top=top,
        redact_texts=redact_texts,
        group_by=group_by,
        group_aggregate=group_aggregate,
        endpoint=remote,
        endpoint_cache=as_path(endpoint_cache, name="endpoint_cache"),
        device=device,
        precision=precision,
        executor=executor,
        ray_address=ray_address,
        workers=workers,
        cpus_per_job=cpus_per_job,
        gpus_per_job=gpus_per_job,
        max_retries=max_retries,
    )
    return adopt(MembershipAudit, run_mia(request, progress=stage_callback(progress)))


def audit_canaries(
    model_dir: PathLike | None = None,
    *,
    canaries: PathLike,
    attacks: str | Sequence[str] | None = None,
    attack_options: Mapping[str, Mapping[str, Any]] | Sequence[str] | None = None,
    exposure: bool = True,
    extract: bool = True,
    one_run: bool = False,
    sample: int | None = None,
    epsilon: float | None = None,
    delta: float | None = None,
    seed: int = 0,
    steps: int = 300,
    restarts: int = 16,
    allow_pickle: bool = False,
    batch_size: int = 512,
    endpoint: str | None = None,
    endpoint_format: str = "v2",
    endpoint_labels: str | None = None,
    endpoint_batch: int = 256,
    concurrency: int = 4,
    endpoint_timeout: float = 30.0,
    endpoint_retries: int = 5,
    max_queries: int | None = None,
    header: Sequence[str] | None = None,
    insecure: bool = False,
    endpoint_cache: PathLike | None = None,
    device: str = "auto",
    precision: str = "fp32",
    progress: Progress | None = None,
) -> CanaryAudit:
    """Canary extraction: can an attacker read the secrets planted in training back out of the model?

    ``privaudit canary`` without its reports and gate: each secret's exposure (log2 of the candidate space minus
    log2 of its rank), whether white-box ModIvA rebuilds it from the weights, and with ``one_run`` the epsilon lower
    bound of Steinke, Nasr and Jagielski (2023) from the one-run audit canaries.

    Args:
        model_dir: the audited model directory.
        canaries: the canary file (JSONL) that ``privaudit.train(..., canaries_out=...)`` wrote.
        attacks: extraction attacks, as a list or a comma string (``"exposure,modiva"``, ``"all"``, plugins by
            name); ``None``: exposure and modiva (``--attack``). ``exposure=False``/``extract=False`` take those out.
        attack_options: attack parameters, ``{"modiva": {"steps": 100}}`` or ``["modiva:steps=100"]``
            (``--attack-option``); they win over ``steps``, ``restarts`` and ``sample``.
        exposure: rank each secret among all candidates of its template (Secret Sharer).
        extract: white-box ModIvA extraction of each secret.
        one_run: the one-run epsilon audit on the audit canaries (train with ``audit_canaries=M``).
        sample: sample this many candidates and extrapolate (at least 100), for spaces over 1e6.
        epsilon: the theoretical epsilon; ``None``: from the model's ``privaudit.json``.
        delta: delta of the one-run bound; ``None``: the model's, else 1e-5.
        seed: seed of sampling and of ModIvA's restarts.
        steps: ModIvA optimisation steps.
        restarts: ModIvA random restarts (run as one batch).
        allow_pickle: load pickled weights (trust them first).
        batch_size: candidates per forward pass.
        endpoint: audit the classifier behind this URL instead of ``model_dir`` (docs/endpoints.md); the other
            ``endpoint_*`` keywords, ``concurrency``, ``max_queries``, ``header`` (``["NAME=@ENVVAR"]``: values
            come from the environment, never stored) and ``insecure`` are the command's ``--endpoint-*`` flags.
        device: ``auto`` (CUDA, then MPS, then the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (``--device``).
        precision: ``fp32``, ``bf16`` or ``fp16`` autocast for scoring (``--precision``).
        progress: called as ``progress(stage, done, total)``; stages are ``"exposure"``, ``"ModIvA extraction"``
            and ``"one-run audit"``. Nothing is printed either way.

    Returns:
        The ``CanaryResult`` of ``privaudit canary``: ``to_dict()`` is its JSON document (``to_json()`` the exact
        text of ``--format json``), ``summary()`` its tables as text, ``write_html(path)`` its HTML report.

    Raises:
        PrivauditError: bad input or an audit that cannot complete, with the message the command line prints.

    Example:
        >>> import privaudit
        >>> result = privaudit.audit_canaries(
        ...     "fixtures/models/intent-tiny",
        ...     canaries="fixtures/models/intent-tiny.canaries.jsonl",
        ...     one_run=True,
        ... )
        >>> result.to_dict()["summary"]["n_inserted"]  # doctest: +SKIP
        10
    """
    from privaudit.canary.canaries import read_canaries
    from privaudit.canary.run import CanaryRequest, run_canary
    from privaudit.endpoint.client import endpoint_from_flags

    check_ranges(sample=(sample, 100), steps=(steps, 1), restarts=(restarts, 1), batch_size=(batch_size, 1))
    canaries_file = as_path(canaries, name="canaries", required=True)
    read_canaries(canaries_file)  # as the command does first: a missing or broken file fails in milliseconds
    remote = endpoint_from_flags(locals())
    request = CanaryRequest(
        model_dir=as_path(model_dir, name="model_dir"),
        canaries=canaries_file,
        exposure=exposure,
        extract=extract,
        one_run=one_run,
        sample=sample,
        seed=seed,
        epsilon=epsilon,
        delta=delta,
        allow_pickle=allow_pickle,
        batch_size=batch_size,
        modiva_steps=steps,
        modiva_restarts=restarts,
        attacks=attack_spec(attacks),
        attack_options=attack_option_specs(attack_options),
        endpoint=remote,
        endpoint_cache=as_path(endpoint_cache, name="endpoint_cache"),
        device=device,
        precision=precision,
    )
    return adopt(CanaryAudit, run_canary(request, progress=stage_callback(progress)))
