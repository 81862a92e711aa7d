"""The registry: `customs-risk` versions, the @challenger and @champion aliases, the gate's decisions on them,
promotion by hand, rollback, and the promotions log (JSON lines under ADUANA_HOME, never rewritten)."""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.errors import UserError

if TYPE_CHECKING:  # reading the registry (`aduana promote`) needs neither scikit-learn nor CatBoost
    from training.gate import GateDecision
    from training.models import RiskModel

MODEL_NAME = "customs-risk"
CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "aduana.champion_history"  # on the registered model: JSON list of past champion versions
_logger = logging.getLogger("aduana.registry")


def register_challenger(client: MlflowClient, run_id: str) -> str:
    """Register the run's model as a new version of customs-risk and point @challenger at it."""
    from training.store import CHECKSUM_TAG, MODEL_URI_TAG

    try:
        client.get_registered_model(MODEL_NAME)
    except MlflowException:
        client.create_registered_model(MODEL_NAME, description="P(fraud) and expected revenue per declaration.")
    tags = client.get_run(run_id).data.tags
    role = tags.get("aduana.role", "model")
    description = (f"The {'library-default CatBoost reference' if role == 'reference' else 'engineered risk model'} "
                   f"trained on dataset `{tags.get('aduana.dataset', '?')}` (data hash {tags.get('aduana.data_hash', '?')}); "
                   "the gate's verdict and reasons are in this version's tags.")
    source = tags[MODEL_URI_TAG]  # models:/<model id>: a tracking server accepts it only with that id named
    model_id = source.removeprefix("models:/") if source.startswith("models:/m-") else None
    version = client.create_model_version(MODEL_NAME, source, run_id=run_id, model_id=model_id,
                                          description=description, tags={"artifact_sha256": tags[CHECKSUM_TAG]})
    client.set_registered_model_alias(MODEL_NAME, CHALLENGER, version.version)
    return str(version.version)


# A version's tags as `aduana promote` shows them: the gate's and people's first, in this order; the checksums
# (HASH_TAGS) left out.
TAG_ORDER = ("gate", "candidate", "gate_reference", "promoted_by", "promoted_at", "promotion_reason", "rolled_back")
HASH_TAGS = ("artifact_sha256",)


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters at a word boundary, with "…" where it was cut (a tag's size limit
    must not end a reason mid-word)."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    return (cut.rsplit(maxsplit=1)[0] if " " in cut.strip() else cut) + "…"


def version_summary(client: MlflowClient, version: str) -> dict:
    """What `aduana promote` shows of a version: the gate's verdict and reasons, and its other tags, the gate's and
    people's first and the checksums left out."""
    tags = dict(client.get_model_version(MODEL_NAME, version).tags)
    reasons = [r for r in tags.get("gate_reasons", "").split("\n") if r.strip()]
    shown = {k: tags[k] for k in TAG_ORDER if k in tags and k not in ("gate", "gate_reasons")}
    shown.update({k: v for k, v in sorted(tags.items()) if k not in shown and k not in HASH_TAGS
                  and k not in ("gate", "gate_reasons")})
    return {"version": str(version), "gate": tags.get("gate"), "gate_reasons": reasons, "tags": shown}


def alias_version(client: MlflowClient, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(MODEL_NAME, alias).version)
    except MlflowException:
        return None


def load_version(version: str) -> RiskModel:
    """The RiskModel behind a registry version, read from its CatBoost files after checking them against the
    checksums recorded at registration. Nothing is unpickled and no code from the store runs."""
    from training.store import load_risk_model, sha256

    client = MlflowClient()
    try:
        recorded = json.loads(client.get_model_version(MODEL_NAME, version).tags["artifact_sha256"])
    except KeyError as exc:
        raise UserError(f"{MODEL_NAME} v{version} has no recorded artifact checksums: it was registered before "
                        "checksums existed; retrain or re-register it") from exc
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{MODEL_NAME}/{version}", dst_path=tmp))
        files = {p.name: p for p in (local / "artifacts").iterdir() if p.is_file()}
        if set(files) != set(recorded) or any(sha256(files[n]) != digest for n, digest in recorded.items()):
            raise UserError(f"{MODEL_NAME} v{version}: its artifacts do not match the checksums recorded at "
                            "registration; refusing to serve a model that was changed in the store")
        parts = {"classifier": "classifier.cbm", "revenue": "revenue.cbm", "spec": "spec.json",
                 "price_bands": "price_bands.parquet", "shap_tables": "shap_tables.npz"}
        return load_risk_model({key: str(files[name]) for key, name in parts.items() if name in files})


PROMOTION_FIELDS = ("at", "action", "version", "by", "reason")  # what a reader (`aduana promote`) shows of a record


def append_promotion(log: Path | None, record: dict) -> None:
    """Append one line to the promotions log (JSON lines, never rewritten).

    The line goes out in one write on a descriptor opened for appending, then to disk, so a crash leaves at most
    a torn last line; when the file does not end with a newline (such a tear), this line starts on a new one
    instead of being glued to it."""
    if log is None:
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps({"at": datetime.now(UTC).isoformat(), **record}) + "\n").encode()
    fd = os.open(log, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"promotions log {log}: wrote {written} of {len(line)} bytes (disk full?)")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_promotions(log: Path) -> list[dict]:
    """The promotions log's records, oldest first. A line that is not a whole record (torn by a crash while it
    was written, or edited by hand) is skipped with a warning naming its line number: one bad line must not
    hide the others, nor stop `aduana promote`."""
    if not log.exists():
        return []
    records = []
    for number, line in enumerate(log.read_text(errors="replace").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not all(field in record for field in PROMOTION_FIELDS):
            _logger.warning("promotions log %s: line %d is not a whole record (torn or edited); skipped", log,
                            number)
            continue
        records.append(record)
    return records


def _move_champion(client: MlflowClient, version: str) -> str | None:
    """Point @champion at `version`, remembering the previous champion for rollback; returns the previous one."""
    current = alias_version(client, CHAMPION)
    if current is not None and current != version:
        history = _history(client)
        history.append(current)
        client.set_registered_model_tag(MODEL_NAME, HISTORY_TAG, json.dumps(history))
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
    return current


def record_decision(client: MlflowClient, run_id: str, version: str, decision: GateDecision,
                    compared_with: str | None = None, log: Path | None = None) -> None:
    """Log the gate's decision on the run and as tags on the version; move @champion when it promotes.

    `compared_with`: the champion the challenger was measured against. If @champion has moved since (another
    retrain promoted meanwhile), the promotion is refused: the comparison no longer holds."""
    current = alias_version(client, CHAMPION)
    if decision.promote and current != compared_with:
        decision.promote = False
        decision.reasons.append(f"@{CHAMPION} moved from {'v' + compared_with if compared_with else 'none'} to "
                                f"v{current} during this evaluation: not promoted; retrain to compare with v{current}")
    text = "\n".join(decision.reasons)
    verdict = "promoted" if decision.promote else "refused"
    client.set_tag(run_id, "aduana.gate", verdict)
    client.log_text(run_id, json.dumps(asdict(decision), indent=2), "gate_decision.json")
    for key, value in (("gate", verdict), ("gate_reference", decision.reference), ("gate_reasons", clip(text, 5000)),
                       ("candidate", decision.candidate)):
        client.set_model_version_tag(MODEL_NAME, version, key, value)
    if decision.promote:
        previous = _move_champion(client, version)
        append_promotion(log, {"action": "promote", "version": version, "previous": previous, "by": "gate",
                               "reason": clip(text, 2000)})


def promote_by_hand(client: MlflowClient, version: str, reason: str, who: str, log: Path | None) -> str | None:
    """Move @champion to `version` by a person's decision, with the reason, who and when on the version's tags and
    in the promotions log. Returns the previous champion."""
    if not reason.strip():
        raise UserError("promote --version needs --reason: say why this version should serve")
    try:
        client.get_model_version(MODEL_NAME, version)
    except MlflowException as exc:
        raise UserError(f"{MODEL_NAME} has no version {version}") from exc
    when = datetime.now(UTC).isoformat()
    for key, value in (("promoted_by", who), ("promoted_at", when), ("promotion_reason", clip(reason, 5000))):
        client.set_model_version_tag(MODEL_NAME, version, key, value)
    previous = _move_champion(client, version)
    append_promotion(log, {"action": "promote", "version": version, "previous": previous, "by": who, "reason": reason})
    return previous


def _history(client: MlflowClient) -> list[str]:
    tags = client.get_registered_model(MODEL_NAME).tags
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def rollback(client: MlflowClient, log: Path | None = None, who: str = "") -> tuple[str, str]:
    """Restore the previous champion. Returns (version demoted, version restored)."""
    current = alias_version(client, CHAMPION)
    history = _history(client) if current is not None else []
    if current is None or not history:
        raise UserError("no previous champion to roll back to")
    restored = history.pop()
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, restored)
    client.set_registered_model_tag(MODEL_NAME, HISTORY_TAG, json.dumps(history))
    client.set_model_version_tag(MODEL_NAME, current, "rolled_back", datetime.now().isoformat())
    append_promotion(log, {"action": "rollback", "version": restored, "previous": current, "by": who or "unknown",
                           "reason": "rollback"})
    return current, restored


class RegistryModels:
    """The champion as the scorer sees it (serving.scorer.ModelSource): its version, and the model behind one."""

    def __init__(self, client: MlflowClient):
        self.client = client

    def champion_version(self) -> str | None:
        return alias_version(self.client, CHAMPION)

    def load(self, version: str) -> RiskModel:
        return load_version(version)
