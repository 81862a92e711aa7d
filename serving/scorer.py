"""The scorer: one piece of code for the batch flow and the API.

Canonical declarations → features as of now (the warehouse snapshot) → customs-risk@champion → lanes → reasons.
The champion is re-checked once per reload slot of `reload_seconds` (`reload_slot`, the same slots in every worker); when the registry cannot be reached, the last good
champion keeps serving and `registry_error` says why.
"""
from __future__ import annotations

import logging
import math
import queue
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionArray

from features.build import FeatureSet, build_features, integrate
from features.collector import collector_paused, memory_returned
from features.context import BatchState, ScoringContext
from features.entities import MISSING
from features.leads import lead_keys, lead_scores, residuals, strongest_leads
from features.novelty import NOVELTY_COLUMNS
from features.prices import PriceBands
from features.profiles import RECENT_DAYS, profile_entities
from features.progress import Advance, quiet
from features.warehouse import (
    WAREHOUSE_ERRORS,
    Refreshing,
    Tables,
    Warehouse,
    failure_text,
    read_tables,
    snapshot_version,
)
from serving import one_row
from serving.lanes import LanePolicy, allocate
from serving.one_row import reason_items
from serving.reasons import Explanation, entity_named, explanations
from serving.selection import (  # noqa: F401 - Thresholds is re-exported: serving.scorer.Thresholds
    RED,
    YELLOW,
    Thresholds,
)
from serving.targeting import COMBINED, RANDOM, SOURCE_PREFIX, SOURCES, Bandit, bandit_from_evidence, signals
from training.anomaly import ANOMALY_MODEL_NAME, CHAMPION, AnomalyModel, load_anomaly
from training.models import RiskModel, revenue_predictor

OUTPUT_COLUMNS = ["declaration_id", "risk_score", "expected_revenue", "lane", "selected_by", "reasons", "model_version"]
# What the scorer's output carries beyond the score output contract, for the API and the decision log (not for the
# output file): `reason_list`, the reasons as a list (the `reasons` sentence is these joined with "; ", so an item
# may itself hold "; "); `contributions`, an explained row's strongest SHAP contributions (serving/reasons.py
# `TopContributions`: in a batch's frame an Arrow list column, the decision log's type, missing for a row not
# explained; in a real-time answer a list of dicts, None); `contribution_base`, the SHAP base value those add to.
DETAIL_COLUMNS = ["reason_list", "contributions", "contribution_base", "inclusion_probability", "stratum"]
# A scored frame's column of the lead entity each declaration's leads score follows most (features/leads.py).
LEAD_ENTITY = "lead_entity"
# What lane allocation reads of a declaration besides its scores (serving/lanes.py `allocate`).
ALLOCATION_COLUMNS = ["declaration_id", "importer_id", "hs_code", "origin_country", "office_id", "declaration_date"]
log = logging.getLogger("aduana.serving")
# A batch's model input goes to CatBoost this many rows at a time (`_predicted`): each part's pool is 50-70 MB.
POOL_ROWS = 250_000


@dataclass
class _Scored:
    """A batch's integrated declarations, model input, the scores lane allocation reads (`ranked`: risk_score, then
    the targeted sources') and its expected revenue (`revenue`, perhaps still being predicted on another thread).
    The model's pool of that input is not kept: it goes once both models have read it (the reasons build their
    rows' own: at 1M rows, 150k explained, 0.2 s, and their SHAP no slower than on a slice of the batch's pool,
    which would keep the batch's alive)."""

    frame: pd.DataFrame
    X: pd.DataFrame
    ranked: pd.DataFrame
    revenue: Future

    @cached_property
    def scores(self) -> pd.DataFrame:
        """risk_score, expected_revenue, then the targeted sources' scores: once the revenue is predicted."""
        out = self.ranked.copy(deep=False)
        out.insert(1, "expected_revenue", self.revenue.result())
        return out

    def explained_rows(self, chosen: np.ndarray) -> _Scored:
        """The same scores (every row's) with the integrated declarations and model input of the `chosen` rows only:
        what explaining them reads, so that the batch's own can go once its lanes are allocated."""
        if chosen.all():
            return self
        at = np.flatnonzero(chosen)
        return _Scored(self.frame.iloc[at], self.X.iloc[at], self.ranked, self.revenue)


def _predicted(model: RiskModel, X: pd.DataFrame, revenue_later: bool) -> tuple[np.ndarray, Future]:
    """The risk scores of a batch's model input, and a future of its expected revenue: both models read each part
    of POOL_ROWS rows from one pool, which goes once they have (at 1M rows the whole batch's pool held 150-280 MB
    while the lanes were allocated). `revenue_later`: the expected revenue predicted on another thread, on one core,
    a part behind the risk scores and going on while the caller does (CatBoost lets go of the GIL: it takes the
    core the lanes' and reasons' Python leaves); at most three parts' pools live at once (one being read by each
    model, one waiting). Else predicted here, on every core. CatBoost predicts a row the same in any part (the
    same bytes as from one pool)."""
    risk = np.empty(len(X))
    parts = [slice(start, start + POOL_ROWS) for start in range(0, len(X), POOL_ROWS)] or [slice(0, 0)]
    if not revenue_later:
        expected = np.empty(len(X))
        for at in parts:
            pool = model.pool(X.iloc[at])
            risk[at] = model.classifier.predict_proba(pool)[:, 1]
            expected[at] = model.expected_revenue(pool, risk[at])
        revenue: Future = Future()
        revenue.set_result(expected)
        return risk, revenue
    handed: queue.Queue = queue.Queue(maxsize=1)  # a part's pool waits here for the revenue model

    def predict_revenue() -> np.ndarray:
        found = []
        while (item := handed.get()) is not None:
            found.append(model.expected_revenue(*item, 1))
            item = None  # the part's pool goes now, not when the next one comes
        return np.concatenate(found) if found else np.empty(0)

    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aduana-revenue")
    revenue = background.submit(predict_revenue)
    background.shutdown(wait=False)  # its thread ends with the last part: no pool outlives the batch
    try:
        for at in parts:
            pool = model.pool(X.iloc[at])
            risk[at] = model.classifier.predict_proba(pool)[:, 1]
            _hand(handed, (pool, risk[at]), revenue)
            pool = None
    finally:
        _hand(handed, None, revenue)
    return risk, revenue


def _hand(handed: queue.Queue, item: object, taker: Future) -> None:
    """Put `item` in the queue for the thread of `taker`, unless that thread has ended (an error, which its result
    raises) and nobody would take it."""
    while not taker.done():
        try:
            handed.put(item, timeout=0.05)
            return
        except queue.Full:
            continue


def _scoring_context(tables: Tables, names: tuple[str, ...]) -> ScoringContext:
    """The snapshot's context, with the profile indexes of the entities `names` built now (the others are built on
    their first lookup)."""
    return ScoringContext.from_tables(tables.declarations, tables.manifests, tables.traders).index_rows(names)


class ModelSource(Protocol):
    """Where the champion comes from: the MLflow registry (training.registry.RegistryModels), or a fixed model."""

    def champion_version(self) -> str | None: ...

    def load(self, version: str) -> RiskModel: ...


def reload_slot(period: float) -> float:
    """The reload slot of now: wall-clock time cut into `period`-second slots, the same in every worker process and
    replica, so that all of them check the champion and the thresholds in the same slots and switch to a new one
    together, not each on the clock of its own start. A zero period gives every call a slot of its own."""
    return float(time.time() // period) if period > 0 else time.monotonic()


@dataclass
class Scorer:
    warehouse: Warehouse
    policy: LanePolicy
    source: ModelSource
    reload_seconds: float = 30.0
    model: RiskModel | None = None
    version: str | None = None
    registry_error: str | None = None
    snapshot_wait: float | None = None  # seconds to wait for a warehouse another process holds (None: its own wait)
    refreshed_apart: bool = False  # a refresher checks the snapshot each slot (serving/realtime.py), not `context`
    anomaly: AnomalyModel | None = None  # customs-anomaly@champion, read when the lane policy targets exploration
    _anomaly_version: str | None = None
    leads: dict[str, pd.Series] | None = None  # the leads source's residuals pinned for a run (None: read per batch)
    _checked_slot: float | None = None
    _snapshot: Refreshing[ScoringContext] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._snapshot = Refreshing(read_tables, build=lambda tables: _scoring_context(tables, self.profiles_read()),
                                    version=snapshot_version)

    def refresh_model(self, force: bool = False) -> None:
        """Pick up a new champion without a restart, checking once per reload slot (`reload_slot`)."""
        slot = reload_slot(self.reload_seconds)
        if not force and slot == self._checked_slot:
            return
        self._checked_slot = slot
        try:
            version = self.source.champion_version()
            if version is not None and version != self.version:
                model = self.source.load(version)
                model.shap_tables()  # the reasons' SHAP tables, stored with the model or made before it serves
                if model.revenue_model is not None:
                    revenue_predictor(model.revenue_model)  # and the revenue model's lean copy
                self.model, self.version = model, version
            if self.policy.targeting is not None and "anomaly" in signals(self.policy.targeting):
                self.anomaly = self._anomaly_model()
            self.registry_error = None
        except Exception as exc:  # keep serving the last good champion
            error = failure_text(exc)
            if error != self.registry_error:  # the details stay in the server's log
                log.warning("model registry unreachable, serving v%s: %s", self.version, error)
            self.registry_error = error

    def bandit(self) -> Bandit | None:
        """Targeted exploration's bandit, from the decision log's targeted picks whose controls reported (None
        without targeting; a bandit that knows nothing when the log cannot be read)."""
        targeting = self.policy.targeting
        if targeting is None:
            return None
        try:
            evidence = self.reader().decisions.targeting_evidence()
        except WAREHOUSE_ERRORS as exc:
            log.warning("targeted exploration without the decision log's evidence: %s", failure_text(exc))
            evidence = pd.DataFrame()
        return bandit_from_evidence(evidence, targeting, pd.Timestamp.now())

    def lead_residuals(self) -> dict[str, pd.Series]:
        """The leads source's residuals (features/leads.py), from the decision log's exploration picks (random or
        targeted) decided in the last RECENT_DAYS whose control reported; none without a `leads` source, or while
        the log cannot be read. A partition's scorer reads its run's, pinned in `leads`."""
        targeting = self.policy.targeting
        if self.leads is not None or targeting is None or "leads" not in signals(targeting):
            return self.leads or {}
        try:
            evidence = self.reader().decisions.lead_evidence(pd.Timestamp.now() - pd.Timedelta(days=RECENT_DAYS))
        except WAREHOUSE_ERRORS as exc:
            log.warning("targeted exploration without its leads: %s", failure_text(exc))
            return {}
        evidence = evidence[evidence["stratum"].isin([RANDOM, *SOURCES])] if len(evidence) else evidence
        if evidence.empty:
            return {}
        return residuals(lead_keys(evidence), evidence["fraud"].to_numpy(), evidence["risk_score"].to_numpy())

    def _anomaly_model(self) -> AnomalyModel | None:
        """customs-anomaly@champion from the registry the champion comes from; None (the anomaly source is left out
        of targeting, with a warning) when none is registered or the source is not a registry."""
        client = getattr(self.source, "client", None)
        if client is None:
            return None
        try:
            version = client.get_model_version_by_alias(ANOMALY_MODEL_NAME, CHAMPION).version
            if version != self._anomaly_version:  # read again only when @champion moves
                self.anomaly, self._anomaly_version = load_anomaly(client=client), version
        except Exception as exc:  # noqa: BLE001 - any registry failure leaves the source out, never the scoring
            if self.anomaly is None:
                log.warning("targeted exploration without its anomaly source: %s", failure_text(exc))
        return self.anomaly

    @property
    def ready(self) -> bool:
        return self.model is not None

    @property
    def has_snapshot(self) -> bool:
        return self._snapshot.held

    @property
    def snapshot_error(self) -> str | None:
        """Why the last snapshot refresh failed (the previous snapshot serves); None after a good one."""
        return self._snapshot.error

    def reader(self, patient: bool = False) -> Warehouse:
        """The warehouse as the snapshot reads it: waiting at most `snapshot_wait` for another process's lock, or,
        `patient` (a service starting), the warehouse's own wait."""
        if self.snapshot_wait is None or patient:
            return self.warehouse
        return self.warehouse.waiting_at_most(self.snapshot_wait)

    def read_ahead(self) -> None:
        """Before the first snapshot, start reading it on another thread, so that a batch's file is read and checked
        meanwhile (DuckDB and Arrow let go of the GIL): `context` waits for it, and reads again, raising why, where
        it failed. Nothing is read before there is a champion (scoring refuses first). A scorer that holds a snapshot
        refreshes it when its batch asks, as before (read ahead, that batch would be scored on the last one)."""
        if self.model is not None:
            self._snapshot.start(self.reader())

    def context(self, patient: bool = False, check: bool = False) -> ScoringContext:
        """The warehouse snapshot, rebuilt when the warehouse has changed (checked at most every reload_seconds, or,
        while a refresher keeps it (`refreshed_apart`), only when it `check`s; always before there is one).

        While the warehouse cannot be read (another process is writing it), the last snapshot keeps serving;
        before there is one, the error is raised (one of WAREHOUSE_ERRORS)."""
        max_age = 0 if check else math.inf if self.refreshed_apart else self.reload_seconds
        return self._snapshot.require(self.reader(patient), max_age)

    def _scores(self, declarations: pd.DataFrame, advance: Advance = quiet, batch: BatchState | None = None,
                context: ScoringContext | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(integrated frame, model input, scores); `batch`: the state of the whole batch `declarations` are a
        partition of (features/context.py), else theirs; `context`: what the warehouse holds for them (default: the
        snapshot's)."""
        scored = self._scored(declarations, advance, batch, context)
        return scored.frame, scored.X, scored.scores

    def _scored(self, declarations: pd.DataFrame, advance: Advance = quiet, batch: BatchState | None = None,
                context: ScoringContext | None = None, revenue_later: bool = False) -> _Scored:
        """`revenue_later`: the expected revenue predicted on another thread, on one core, while the caller goes on
        (`scores` waits for it); else before this returns, on every core."""
        self._require_model()
        context = context or self.context()
        frame, features = self._features(declarations, advance, batch, context)
        X = self._model_input(features.X)
        risk, revenue = _predicted(self.model, X, revenue_later)
        ranked = pd.DataFrame({"risk_score": risk})
        if self.policy.targeting is not None:
            ranked = pd.concat([ranked, self._sources(frame, features.X, context)], axis=1)
        return _Scored(frame, X, ranked, revenue)

    def _features(self, declarations: pd.DataFrame, advance: Advance, batch: BatchState | None,
                  context: ScoringContext) -> tuple[pd.DataFrame, FeatureSet]:
        """The declarations integrated with what the warehouse holds for them, and their features."""
        frame = integrate(declarations.reset_index(drop=True), context=context,
                          batch_totals=None if batch is None else batch.bill_totals)
        features = build_features(frame, bands=self._bands(context), profiles=context.profiles, advance=advance,
                                  batch_first=None if batch is None else batch.first_filed, columns=self._read())
        frame["price_reference_log"] = features.price_reference_log.to_numpy()
        return frame, features

    def _require_model(self) -> None:
        """Before any read of the snapshot: scoring needs a champion."""
        if self.model is None:
            raise RuntimeError("no champion model is loaded: train and promote one first ('aduana train')")

    def _sources(self, frame: pd.DataFrame, X: pd.DataFrame, context: ScoringContext) -> pd.DataFrame:
        """The targeted sources' scores of a batch (serving/targeting.py): novelty against the warehouse's filings
        (in pandas, or in DuckDB for a partition), how unusual each declaration is to the anomaly model, and its
        leads from recent controls. A source that cannot score a row (no anomaly model; no history yet; no lead) leaves
        it missing, and the slots it cannot fill go to the model."""
        if context.has_novelty:
            found = context.novelty.lookup(frame).reset_index(drop=True)
            out = pd.DataFrame({f"{SOURCE_PREFIX}{c}": found[c].to_numpy() for c in NOVELTY_COLUMNS})
        else:  # an empty warehouse: nothing to be new against
            out = pd.DataFrame({f"{SOURCE_PREFIX}{c}": np.full(len(frame), np.nan) for c in NOVELTY_COLUMNS})
        usable = self.anomaly is not None and all(c in X.columns for c in self.anomaly.used)
        out[f"{SOURCE_PREFIX}anomaly"] = self.anomaly.score(X) if usable else np.nan
        if "leads" in signals(self.policy.targeting):
            found = self.lead_residuals()  # the batch's keys are cut only for the entities with a lead
            keys = lead_keys(frame, tuple(name for name, residual in found.items() if len(residual)))
            out[f"{SOURCE_PREFIX}leads"] = lead_scores(found, keys, len(frame))
            out[LEAD_ENTITY] = strongest_leads(found, keys, len(frame))
        return out

    def _read(self) -> list[str]:
        """The features scoring reads: the model's inputs, and the anomaly source's when targeting reads it."""
        used = list(self.anomaly.used) if self.policy.targeting is not None and self.anomaly is not None else []
        return [*self.model.columns, *used]

    def profiles_read(self) -> tuple[str, ...]:
        """The entities whose profiles scoring reads (none before a champion is loaded)."""
        return profile_entities(self._read()) if self.model is not None else ()

    def _bands(self, context: ScoringContext) -> PriceBands:
        """The model's own price bands; for a model without (the reference), the snapshot's."""
        return self.model.price_bands if self.model.price_bands is not None else context.price_bands

    def _model_input(self, X: pd.DataFrame) -> pd.DataFrame:
        """The model's columns, whatever the feature set holds: a column the declarations cannot give (an extra
        the model was trained with, absent here) is missing, as training reads a missing value."""
        absent = [c for c in self.model.categorical if c not in X.columns]
        X = X.reindex(columns=self.model.columns)
        if absent:
            X[absent] = MISSING
        return X

    def score(self, declarations: pd.DataFrame, explain_lanes: tuple[str, ...] = (RED, YELLOW),
              advance: Advance = quiet) -> pd.DataFrame:
        """Batch scoring: lanes allocated within the batch's capacity; reasons for the selected rows. `advance` is
        told as the features and scores, the lanes and the reasons are done."""
        what = f"scoring {len(declarations):,} declarations"
        advance(what, 0, 3)
        with collector_paused():
            later = self.policy.rank_by != "expected_revenue"  # the lanes do not read it: predicted meanwhile
            scored = self._scored(declarations, advance, revenue_later=later)
            memory_returned()  # the features' and the pools' transients, before the lanes'
            advance(what, 1, 3)
            lanes = allocate(pd.concat([scored.frame, scored.ranked if later else scored.scores], axis=1), self.policy,
                             self.bandit())
            advance(what, 2, 3)
            chosen = lanes["lane"].isin(explain_lanes).to_numpy()
            ids = scored.frame["declaration_id"]
            followed = _followed(scored.ranked, lanes, scored.frame, np.arange(len(ids)))
            scored = scored.explained_rows(chosen)  # the batch's frame and model input go before the reasons
            explained = explanations(self.model, scored.X, scored.frame)
            scores, scored = scored.scores, None  # and the explained rows' before the output is assembled
            memory_returned()
            output = self._assemble(ids, scores, lanes, chosen, explained, followed)
        advance(what, 3, 3)
        return output

    def scores_rows(self, declarations: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Each declaration's features on the one-row path, as if it came alone, as frames (integrated rows, model
        input, scores): what the analysts' page and the tests read of it."""
        scored = self._one_row(declarations)
        X = pd.DataFrame(np.array(scored.values, dtype=object), columns=self.model.columns, dtype=object)
        columns = list(dict.fromkeys(k for r in scored.rows for k in r))
        frame = pd.DataFrame(np.array([[r.get(c) for c in columns] for r in scored.rows], dtype=object),
                             columns=columns, dtype=object)
        return frame, X, pd.DataFrame({"risk_score": scored.risk, "expected_revenue": scored.expected})

    def _one_row(self, declarations: list[dict], model: RiskModel | None = None) -> one_row.RowsScored:
        model = model or self.model
        if model is None:
            raise RuntimeError("no champion model is loaded: train and promote one first ('aduana train')")
        context = self.context()
        bands = model.price_bands if model.price_bands is not None else context.price_bands
        return one_row.score_rows(model, context, bands, declarations)

    def score_realtime(self, declarations: pd.DataFrame | dict | list[dict],
                       thresholds: Thresholds | None) -> list[dict]:
        """A few declarations (canonical fields, as dicts or a typed frame) at a time, each scored as if it came
        alone (features/row.py: so an answer never depends on the rest of the request), lanes from thresholds
        learned on the latest batch: the scorer's output records (OUTPUT_COLUMNS, then DETAIL_COLUMNS), in request
        order, on the one-row path (serving/one_row.py)."""
        if isinstance(declarations, pd.DataFrame):
            declarations = declarations.to_dict("records")
        elif isinstance(declarations, dict):
            declarations = [declarations]
        model, version = self.model, self.version  # one champion for the whole request, even across a reload
        return one_row.answers(model, version, self.policy, thresholds, self._one_row(declarations, model))

    def score_partition(self, declarations: pd.DataFrame, batch: BatchState, context: ScoringContext | None = None,
                        revenue_later: bool = False) -> tuple[pd.DataFrame, Future]:
        """A partition of a batch scored in partitions (serving/partitions.py): its scores but the expected revenue,
        beside the columns lane allocation reads, for lanes allocated over the whole batch; and its expected revenue,
        still being predicted on another thread when `revenue_later` (as `score` predicts it)."""
        with collector_paused():
            scored = self._scored(declarations, batch=batch, context=context, revenue_later=revenue_later)
            return pd.concat([scored.frame[[c for c in ALLOCATION_COLUMNS if c in scored.frame]], scored.ranked],
                             axis=1), scored.revenue

    def explain_partition(self, declarations: pd.DataFrame, scored: pd.DataFrame, batch: BatchState | None,
                          explain_lanes: tuple[str, ...] = (RED, YELLOW),
                          context: ScoringContext | None = None) -> pd.DataFrame:
        """A partition's output, as `score` gives it for these rows in the whole batch: `scored` is its
        `score_partition` with the batch's lanes (lane, selected_by, rule); the features are built again for the
        explained rows only (`batch` and `context` need hold only theirs), and not scored again."""
        chosen = scored["lane"].isin(explain_lanes).to_numpy()
        explained, followed = Explanation.none(), {}
        with collector_paused():
            if chosen.any():
                self._require_model()
                frame, features = self._features(declarations[chosen], quiet, batch, context or self.context())
                explained = explanations(self.model, self._model_input(features.X), frame)
                followed = _followed(scored, scored, frame, np.flatnonzero(chosen))
            return self._assemble(scored["declaration_id"], scored, scored, chosen, explained, followed)

    def _assemble(self, ids: pd.Series, scores: pd.DataFrame, lanes: pd.DataFrame, chosen: np.ndarray,
                  explained: Explanation, followed: dict[int, str]) -> pd.DataFrame:
        """The scorer's output (OUTPUT_COLUMNS, then DETAIL_COLUMNS): reasons from the explained (`chosen`) rows'
        SHAP pass, the exploration draw (`followed`: a leads pick's relationship, by position) and the rules."""
        rules, selected_by = lanes["rule"].to_numpy(), lanes["selected_by"].to_numpy()
        n = len(ids)
        reasons = np.full(n, "", dtype=object)
        reason_list: list[list[str]] = [[] for _ in range(n)]
        at = np.flatnonzero(chosen)
        base = np.full(n, np.nan)
        base[chosen] = explained.base
        said = dict(zip(at.tolist(), explained.reasons, strict=True))
        stratum = lanes["stratum"].to_numpy() if "stratum" in lanes else np.full(n, "", dtype=object)
        source_score = lanes["source_score"].to_numpy() if "source_score" in lanes else np.full(n, np.nan)
        if "source_detail" in lanes:  # what a combined pick's signals saw
            detail = lanes["source_detail"].to_numpy()
            followed = followed | {i: detail[i] for i in np.flatnonzero(stratum == COMBINED).tolist() if detail[i]}
        for i in np.flatnonzero(chosen | (rules != "") | (selected_by == "exploration")).tolist():  # the rest: none
            items = reason_items(selected_by[i], rules[i], said.get(i, []), stratum[i], source_score[i],
                                 followed.get(i, ""))
            reason_list[i], reasons[i] = items, "; ".join(items)
        return pd.DataFrame({
            "declaration_id": _text(ids),
            "risk_score": scores["risk_score"].to_numpy(),
            "expected_revenue": scores["expected_revenue"].to_numpy(),
            "lane": _text(lanes["lane"]),
            "selected_by": _text(lanes["selected_by"]),
            "reasons": reasons,
            "model_version": self.version,
            "reason_list": reason_list,
            "contributions": pd.arrays.ArrowExtensionArray(explained.top.arrow(at, n)),  # the reasons' own SHAP pass
            "contribution_base": base,
            "inclusion_probability": lanes["inclusion_probability"].to_numpy() if "inclusion_probability" in lanes
            else np.nan,
            "stratum": _text(lanes["stratum"]) if "stratum" in lanes else stratum,
        })


def _text(column: pd.Series) -> ExtensionArray | np.ndarray:
    """A column of text as the output frame takes it: as it is when it already is text (not made Python strings and
    text again), else its values."""
    return column.array if isinstance(column.dtype, pd.StringDtype) else column.to_numpy()


def _followed(scores: pd.DataFrame, lanes: pd.DataFrame, frame: pd.DataFrame, at: np.ndarray) -> dict[int, str]:
    """Each leads pick's relationship in words (the label of its strongest lead entity, as reasons name it), by
    position; `frame` holds the integrated declarations at positions `at` (the picks among them)."""
    if LEAD_ENTITY not in scores or "stratum" not in lanes:
        return {}
    picks = np.flatnonzero(lanes["stratum"].to_numpy() == "leads")
    picks = picks[np.isin(picks, at)]
    if not len(picks):
        return {}
    rows = frame.iloc[np.searchsorted(at, picks)].to_dict("records")
    names = scores[LEAD_ENTITY].to_numpy()[picks]
    return {i: entity_named(name, row) for i, name, row in zip(picks.tolist(), names, rows, strict=True)
            if name}
