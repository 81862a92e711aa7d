"""customs-promote: the registry's champion and challenger, a promotion by hand, or a rollback of the champion.

Who and why are kept on the version's tags and in the promotions log (ADUANA_HOME), as the retrain flow's gate
keeps its own promotions."""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.orchestration import runtime
from flows.orchestration.runtime import Runtime
from training import registry

PROMOTIONS_SHOWN = 10  # the latest promotions shown beside the aliases


@task(name="read_aliases", cache_policy=NO_CACHE)
def read_aliases(rt: Runtime) -> dict:
    """The champion's and the challenger's versions (None where unset), and the latest promotions."""
    result = {alias: registry.alias_version(rt.client, alias) for alias in (registry.CHAMPION, registry.CHALLENGER)}
    result["versions"] = {alias: registry.version_summary(rt.client, version) for alias, version in result.items()
                          if version is not None}
    result["promotions"] = registry.read_promotions(rt.settings.promotions_log)[-PROMOTIONS_SHOWN:]
    return result


@task(name="promote_version", cache_policy=NO_CACHE)
def promote_version(rt: Runtime, version: str, reason: str, by: str) -> dict:
    previous = registry.promote_by_hand(rt.client, version, reason, by, rt.settings.promotions_log)
    return {"champion": version, "previous": previous, "reason": reason}


@task(name="roll_back_champion", cache_policy=NO_CACHE)
def roll_back_champion(rt: Runtime, by: str) -> dict:
    demoted, restored = registry.rollback(rt.client, rt.settings.promotions_log, by)
    return {"demoted": demoted, "champion": restored}


@flow(name="customs-promote")
def customs_promote(version: str | None = None, reason: str | None = None, rollback: bool = False,
                    by: str = "unknown") -> dict:
    """Promote `version` to champion by hand (with the reason), or roll the champion back, as `by`; with neither,
    show the aliases and the latest promotions."""
    rt = runtime.current()
    if rollback:
        return roll_back_champion(rt, by)
    if version is not None:
        return promote_version(rt, version, reason or "", by)
    return read_aliases(rt)
