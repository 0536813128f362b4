"""``privaudit mia``: load -> score once -> attack -> measure, into a :class:`MiaResult`.

Logits are computed once per (model, data set) and shared by every attack; reference models are trained only when a
selected attack needs them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from privaudit.data import TextDataset, encode_labels, read_dataset
from privaudit.endpoint.client import EndpointConfig
from privaudit.errors import PrivauditError
from privaudit.mia.records import examples_from_files, examples_from_scores, most_exposed
from privaudit.mia.registry import build_attacks, get_attack_class, resolve
from privaudit.mia.scoring import check_sides, describe_target, extra_queries, load_target, score_texts
from privaudit.mia.signals import Signals
from privaudit.mia.slices import DEFAULT_MIN_PER_SIDE, check_slice_kinds, compute_slices
from privaudit.mia.types import SCHEMA, AttackResult, MiaResult, UserLevel
from privaudit.mia.users import check_aggregate, check_users, choose_on_references, user_view
from privaudit.ranges import check_epsilon
from privaudit.stats.accounting import epsilon_from_model
from privaudit.stats.metrics import evaluate


@dataclass(frozen=True)
class MiaRequest:
    """Everything ``privaudit mia`` was asked to do.

    The data sets are files, or examples already read (:func:`privaudit.data.dataset_from_records`, for the API).
    """

    model_dir: Path | None
    members: Path | TextDataset | None
    non_members: Path | TextDataset | None
    attacks: str | None = None  # default: "loss" on a model or logits, none on ready scores
    population: Path | TextDataset | None = None
    reference_models: int = 0
    reference_dirs: tuple[Path, ...] = ()
    scores: Path | None = None
    epsilon: float | None = None
    delta: float | None = None
    seed: int = 0
    alpha: float = 0.05
    allow_pickle: bool = False
    batch_size: int = 128
    train_config: Path | None = None
    cache_dir: Path | None = None
    attack_options: tuple[str, ...] = ()  # ATTACK:PARAM=VALUE, e.g. "rmia:a=0.5"
    slices: tuple[str, ...] = ()  # slice kinds, privaudit.mia.slices.SLICE_KINDS
    slice_min: int = DEFAULT_MIN_PER_SIDE
    top: int = 20  # most exposed members listed in the report; 0: none
    redact_texts: bool = False  # keep only each text's hash
    group_by: str | None = None  # a data column naming each record's owner: the audit is then per user
    group_aggregate: str | None = None  # mean, max, logsumexp, top-k-mean; None: chosen (privaudit.mia.users)

    endpoint: EndpointConfig | None = None  # audit a classifier behind this endpoint instead of model_dir
    endpoint_cache: Path | None = None  # its response cache (default .cache/privaudit/endpoint)

    device: str = "cpu"  # auto, cpu, cuda, cuda:N, mps (privaudit.device)
    precision: str = "fp32"
    executor: str = "local"  # reference models: local or ray (privaudit.training.executor)
    ray_address: str | None = None
    workers: int | None = None
    cpus_per_job: int = 1
    gpus_per_job: float = 0.0
    max_retries: int = 3


Progress = Callable[[str, int, int | None], None]


def _theoretical(request: MiaRequest) -> tuple[float | None, float]:
    check_epsilon(request.epsilon, where="--epsilon")
    if request.epsilon is not None:
        return request.epsilon, request.delta if request.delta is not None else 1e-5
    if request.endpoint is None and request.model_dir is not None and (request.model_dir / "privaudit.json").is_file():
        found = epsilon_from_model(request.model_dir)
        if found is not None:
            eps, delta = found
            return eps, request.delta if request.delta is not None else delta
    return None, request.delta if request.delta is not None else 1e-5


def run_mia(request: MiaRequest, *, progress: Progress | None = None) -> MiaResult:
    """Run a membership-inference audit.

    Raises:
        PrivauditError: bad input or an attack whose needs are not met; nothing is written.
    """

    def tell(stage: str, done: int, total: int | None) -> None:
        if progress is not None:
            progress(stage, done, total)

    if request.scores is not None and (request.model_dir is not None or request.endpoint is not None):
        raise PrivauditError("give MODEL_DIR, --endpoint URL or --scores FILE, only one")
    kinds = check_slice_kinds(request.slices)
    if kinds and request.slice_min < 2:
        raise PrivauditError(
            f"--slice-min must be at least 2 (the epsilon bound splits each side), got {request.slice_min}"
        )
    eps, delta = _theoretical(request)
    given_aggregate = check_aggregate(request.group_aggregate)
    if given_aggregate is not None and request.group_by is None:
        raise PrivauditError(f"--group-aggregate {given_aggregate} needs --group-by FIELD (it aggregates per user)")
    if request.group_by is not None and request.scores is not None:
        raise PrivauditError(
            "--group-by reads the owners from --members and --non-members; it cannot be used with --scores"
        )
    owners = None
    if request.scores is not None:
        from privaudit.mia.scores import read_scores

        signals, is_member, precomputed = read_scores(request.scores)
        model = {"path": None, "fingerprint": None, "scores": str(request.scores)}
        if signals is None and request.attacks is not None:
            raise PrivauditError(f"{request.scores}: --attack needs 'logits' and 'label' columns; it has only 'score'")
        names = resolve(request.attacks or "loss") if signals is not None else []
        attacks = build_attacks(names, request.attack_options)
        examples = examples_from_scores(str(request.scores), is_member, signals)
        compute = None
    else:
        attacks = build_attacks(resolve(request.attacks or "loss"), request.attack_options)
        signals, is_member, model, examples, compute, owners = _signals_from_model(request, attacks, tell)
        precomputed = None
    results = []
    for attack in attacks:
        attack.check(signals)
    for i, attack in enumerate(attacks):
        tell(f"attack {attack.name}", i, len(attacks))
        scores = np.asarray(attack.score(signals), dtype=np.float64)
        metrics = evaluate(scores, is_member, alpha=request.alpha, delta=delta, seed=request.seed)
        results.append(
            AttackResult(
                name=attack.name,
                description=attack.description,
                params=_jsonable(attack.get_params()),
                metrics=metrics,
                scores=scores,
            )
        )
    if precomputed is not None:
        metrics = evaluate(precomputed, is_member, alpha=request.alpha, delta=delta, seed=request.seed)
        results.append(AttackResult("precomputed", "scores given in --scores", {}, metrics, precomputed))
    tell("attacks", len(attacks), len(attacks))
    users = None
    if owners is not None:
        groups, method, how, tpr = owners
        if given_aggregate is not None:
            method, how, tpr = given_aggregate, "given", {}
        n_member_records = int(is_member.sum())
        record_level = {a.name: a.metrics for a in results}
        results, is_member, examples = user_view(
            groups=groups,
            is_member=is_member,
            examples=examples,
            results=results,
            method=method,
            evaluate_users=lambda s, m: evaluate(s, m, alpha=request.alpha, delta=delta, seed=request.seed),
        )
        users = UserLevel(
            field=request.group_by,
            aggregate=method,
            aggregate_source=how,
            aggregate_tpr=tpr,
            records=examples.records,
            n_member_records=n_member_records,
            n_non_member_records=len(groups) - n_member_records,
            record_level=record_level,
            epsilon=eps,
            delta=delta,
        )
    slices = None
    if kinds:
        slices = compute_slices(
            kinds,
            examples=examples,
            is_member=is_member,
            attacks=results,
            min_per_side=request.slice_min,
            alpha=request.alpha,
            delta=delta,
            seed=request.seed,
        )
    return MiaResult(
        model=model,
        seed=request.seed,
        theoretical_epsilon=eps,
        delta=delta,
        n_members=int(is_member.sum()),
        n_non_members=int((~is_member).sum()),
        n_reference_models=0 if signals is None else signals.n_reference_models,
        attacks=results,
        is_member=is_member,
        examples=examples,
        most_exposed=most_exposed(results, is_member, examples, request.top),
        slices=slices,
        compute=compute,
        users=users,
    )


def _jsonable(params: dict) -> dict:
    return json.loads(json.dumps(params, default=str))


def _signals_from_model(request: MiaRequest, attacks: list, tell) -> tuple:
    from privaudit.device import Compute
    from privaudit.training.executor import EXECUTORS, RayOptions

    if request.members is None or request.non_members is None:
        raise PrivauditError("give MODEL_DIR (or --endpoint URL) with --members and --non-members, or --scores FILE")
    compute = Compute.from_flags(request.device, request.precision)
    if request.executor not in EXECUTORS:
        raise PrivauditError(f"--executor '{request.executor}' is unknown; use one of {', '.join(EXECUTORS)}")
    ray = RayOptions(
        address=request.ray_address,
        workers=request.workers,
        cpus_per_job=request.cpus_per_job,
        gpus_per_job=request.gpus_per_job,
        max_retries=request.max_retries,
    )
    members = read_dataset(request.members, group_by=request.group_by)
    non_members = read_dataset(request.non_members, group_by=request.group_by)
    check_sides(members, non_members)
    if request.group_by is not None:
        check_users(members, non_members)
    target = load_target(request, members, non_members, compute=compute)
    texts = list(members.texts) + list(non_members.texts)
    labels = np.concatenate([encode_labels(members, target.label2id), encode_labels(non_members, target.label2id)])
    is_member = np.r_[np.ones(len(members), dtype=bool), np.zeros(len(non_members), dtype=bool)]
    needs = set().union(*(a.requires for a in attacks))
    online = any(a.online for a in attacks)
    if request.endpoint is not None and needs & {"reference_logits", "population_reference_logits"}:
        if not request.reference_dirs or request.reference_models:
            raise PrivauditError(
                "with --endpoint, reference models are your own: train them locally ('privaudit train' on population "
                "data) and pass them with --reference-dir DIR"
            )
    population = None
    if request.population is not None:
        population = read_dataset(request.population, group_by=request.group_by)
        if request.group_by is not None:
            check_users(members, non_members, population)
        pop_labels = encode_labels(population, target.label2id)
        clash = set(population.texts) & set(texts)
        if clash:
            raise PrivauditError(
                f"{population.path}: {len(clash)} texts are also audited; the population must be disjoint"
            )
    elif needs & {"population_logits", "population_reference_logits"} or (
        "reference_logits" in needs and not request.reference_dirs
    ):
        # Reference models are trained on the population; models given with --reference-dir need it only for RMIA.
        need = sorted(n for n in needs if n != "logits")
        raise PrivauditError(f"the selected attacks need {', '.join(need)}: pass --population FILE")
    # The population is scored only for the attacks that read it (RMIA's z-samples): LiRA needs it only as the
    # reference models' training pool.
    score_population = population is not None and "population_logits" in needs
    extra = extra_queries(attacks, texts, seed=request.seed)
    all_texts = texts + (list(population.texts) if score_population else [])
    n_scored = len(all_texts)
    for queries in extra.values():
        all_texts += queries
    total = len(all_texts)
    done = [0]

    def step(n: int) -> None:
        done[0] += n
        tell("scoring", done[0], total)

    target_outputs = score_texts(target, all_texts, attacks=attacks, batch_size=request.batch_size, progress=step)
    extra_predicted, start = {}, n_scored
    for name, queries in extra.items():
        extra_predicted[name] = target_outputs.predicted[start : start + len(queries)]
        start += len(queries)
    reference_population = "population_reference_logits" in needs
    # --group-by with a chosen aggregation: the reference models' population users are its game (privaudit.mia.users)
    choosing = request.group_by is not None and request.group_aggregate in (None, "auto")
    reference = None
    if request.reference_dirs:
        if request.reference_models:
            raise PrivauditError("give --reference-models K (train) or --reference-dir DIR (reuse), not both")
        if reference_population and population is None:
            raise PrivauditError("--reference-dir needs --population FILE (RMIA's z-samples are scored by them too)")
        from privaudit.training.reference import ReferenceSignals, load_reference_dirs

        tell("reference models", 0, len(request.reference_dirs))
        scored_texts = texts + (list(population.texts) if reference_population else [])
        scored = load_reference_dirs(
            target, request.reference_dirs, texts=scored_texts, allow_pickle=request.allow_pickle, compute=compute
        )
        reference = ReferenceSignals(
            logits=scored[:, : len(texts)],
            is_in=np.zeros((len(request.reference_dirs), len(texts)), dtype=bool),
            population_logits=scored[:, len(texts) :] if reference_population else None,
        )
        tell("reference models", len(request.reference_dirs), len(request.reference_dirs))
    elif needs & {"reference_logits", "population_reference_logits"}:
        if request.reference_models < 1:
            wanting = ", ".join(a.name for a in attacks if a.requires & {"reference_logits"})
            raise PrivauditError(
                f"attacks {wanting} need reference models: pass --reference-models K (e.g. 4) or --reference-dir DIR"
            )
        from privaudit.training.reference import DEFAULT_CACHE, reference_signals

        recipe = None
        if request.train_config is not None:
            try:
                recipe = json.loads(Path(request.train_config).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                raise PrivauditError(f"{request.train_config}: cannot read the training recipe ({err})") from err
        tell("reference models", 0, request.reference_models)
        reference = reference_signals(
            target,
            audited_texts=texts,
            audited_labels=labels,
            population_texts=population.texts,
            population_labels=pop_labels,
            n_models=request.reference_models,
            online=online,
            seed=request.seed,
            recipe=recipe,
            cache_dir=request.cache_dir or DEFAULT_CACHE,
            score_population=reference_population or choosing,
            audited_groups=members.groups + non_members.groups if request.group_by else None,
            population_groups=population.groups,
            on_model=lambda i, k, _status: tell("reference models", i, k),
            on_step=lambda i, done, total: tell(f"training reference model {i + 1}", done, total),
            compute=compute,
            executor=request.executor,
            ray=ray,
        )
    n = len(texts)
    own, pop = target_outputs.rows(0, n), target_outputs.rows(n, n_scored)
    signals = Signals(
        logits=own.logits,
        labels=labels,
        reference_logits=None if reference is None else reference.logits,
        reference_in=None if reference is None else reference.is_in,
        population_logits=pop.logits if score_population else None,
        population_labels=pop_labels if score_population else None,
        population_reference_logits=None
        if reference is None or not reference_population
        else reference.population_logits,
        population_reference_in=None if reference is None or not reference_population else reference.population_is_in,
        top_k_log_probs=own.top_k_log_probs,
        predicted=own.predicted,
        extra_predicted=extra_predicted,
        source=target_outputs.source,
    )
    model = describe_target(target, request)
    examples = examples_from_files(
        member_file=str(members.path),
        non_member_file=str(non_members.path),
        texts=texts,
        n_members=len(members),
        signals=signals,
        id2label=target.id2label,
        redact_texts=request.redact_texts,
    )
    owners = None
    if request.group_by is not None:
        method, how, tpr = choose_on_references(reference, population, pop_labels if population is not None else None)
        owners = (members.groups + non_members.groups, method, how, tpr)
    return signals, is_member, model, examples, {**compute.to_dict(), "executor": request.executor}, owners


__all__ = ["SCHEMA", "MiaRequest", "MiaResult", "AttackResult", "run_mia", "get_attack_class"]
