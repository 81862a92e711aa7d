"""The serving stages: batch scoring against CatBoost's own predict_proba and the API's latency under a load
generator, then the costliest bodies a client can send the API."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from processes import ENTRY, fitted_world, peak_mb, postgres_cluster, summary

WORST_BODIES = ("empty_objects_100k", "fields_50k", "valid_list_100", "chunked_2mb")


def stage_serving(work: Path, rows: int) -> dict:
    """Batch scoring end to end on every declaration vs CatBoost's own predict_proba, where the time goes, then
    API latency from a load generator in its own process."""
    import threading

    import numpy as np
    import pandas as pd
    import uvicorn

    from features.build import build_features, integrate
    from features.intake.mapping import ColumnMapping
    from features.intake.prepared import prepare_batch
    from features.intake.validation import check_rows
    from features.warehouse import Warehouse, open_log
    from serving.api import create_app, server_config
    from serving.batch import score_file, write_output
    from serving.lanes import RED, YELLOW, LanePolicy, allocate
    from serving.model_source import FixedSource
    from serving.reasons import explain
    from serving.scorer import Scorer, Thresholds
    from training.models import FitConfig
    from training.pipeline import train_and_evaluate

    landing = work / "landing"
    warehouse = Warehouse(work / "serving-home" / "warehouse.duckdb")
    for kind in ("traders", "manifests", "declarations"):
        warehouse.store(prepare_batch(landing / f"{kind}.parquet"))
    scorer = Scorer(warehouse, LanePolicy(), FixedSource({}, None), reload_seconds=3600)
    history = scorer.context().history  # the warehouse snapshot: built once, outside the timings
    model = train_and_evaluate(history, FitConfig(iterations=300)).model
    scorer.source = FixedSource({"bench": model}, "bench")
    scorer.refresh_model(force=True)

    t = time.perf_counter()
    scored = score_file(landing / "declarations.parquet", scorer)
    write_output(scored.output, work / "scores.parquet")
    e2e_s = time.perf_counter() - t

    # The same work again, step by step, to show where the time goes.
    steps = {}
    t = time.perf_counter()
    declarations = check_rows(pd.read_parquet(landing / "declarations.parquet"), "declarations", ColumnMapping()).valid
    steps["read_validate_s"], t = time.perf_counter() - t, time.perf_counter()
    frame = integrate(declarations.reset_index(drop=True), context=scorer.context())
    X = build_features(frame, bands=model.price_bands, profiles=scorer.context().profiles).X[model.columns]
    steps["features_s"], t = time.perf_counter() - t, time.perf_counter()
    scores = model.predict(X)
    steps["predict_s"], t = time.perf_counter() - t, time.perf_counter()
    lanes = allocate(pd.concat([frame, scores], axis=1), scorer.policy)
    steps["lanes_s"], t = time.perf_counter() - t, time.perf_counter()
    chosen = lanes["lane"].isin([RED, YELLOW]).to_numpy()
    explain(model, X[chosen], frame[chosen])
    steps["reasons_s"] = time.perf_counter() - t

    t = time.perf_counter()
    pool = model.pool(X)
    pool_s = time.perf_counter() - t
    t = time.perf_counter()
    model.classifier.predict_proba(pool)
    raw_s = time.perf_counter() - t
    result = {"rows": rows, "batch_end_to_end_s": e2e_s, "batch_rows_per_s": rows / e2e_s,
              "catboost_predict_proba_s": raw_s, "catboost_rows_per_s": rows / raw_s,
              "catboost_pool_from_dataframe_s": pool_s,
              "batch_vs_raw_throughput": raw_s / e2e_s,
              "batch_vs_raw_including_pool": (raw_s + pool_s) / e2e_s,
              "batch_steps": steps, "explained_rows": int(chosen.sum())}

    thresholds = Thresholds.from_decisions(scored.output.assign(batch_id="bench"), "risk_score", scorer.policy.seed)
    apps, servers = {}, {}
    # 8765: every answer durable in the home's journal (the default); 8766: no log at all (what durability is
    # measured against); 8767: durable in PostgreSQL (the production stack), when Debian's server is installed.
    cluster = postgres_cluster(work)
    logs = {8765: (True, None), 8766: (False, None)}
    if cluster is not None:
        logs[8767] = (True, open_log(cluster.create_database("bench_ops"), warehouse.path))
    for port, (decision_log, oplog) in logs.items():
        apps[port] = app = create_app(scorer, api_key="", decision_log=decision_log, oplog=oplog)
        app.state.service.pin(thresholds)
        servers[port] = uvicorn.Server(server_config(app, "127.0.0.1", port, log_level="error"))
        threading.Thread(target=servers[port].run, daemon=True).start()
        while not servers[port].started:
            time.sleep(0.05)
    sample = pd.read_parquet(landing / "declarations.parquet").tail(2000)
    bodies = [{k: (str(v.date()) if k == "declaration_date" else (None if pd.isna(v) else v))
               for k, v in r.items() if k not in ("inspected", "fraud", "revenue", "critical", "control_date")}
              for r in sample.to_dict("records")]
    (work / "bodies.json").write_text(json.dumps(bodies, default=float))

    def measure(concurrency: int, requests: int, port: int = 8765) -> tuple[np.ndarray, float]:
        out = subprocess.run([sys.executable, str(ENTRY), "--load", f"http://127.0.0.1:{port}", "--work", str(work),
                              "--rows", str(requests), "--concurrency", str(concurrency)],
                             capture_output=True, text=True, check=True)
        measured = json.loads(out.stdout)
        return np.array(measured["latencies"]) * 1000, measured["wall_s"]

    def run(concurrency: int, requests: int, port: int = 8765) -> dict:
        return summary(*measure(concurrency, requests, port))

    for port in logs:
        run(1, 20, port)  # warm-up
    # What a durable record costs a call: the same calls against the app with each log and without one, in rounds
    # ordered forwards then backwards so that a drift in the machine's load favours none. The copy of each log to
    # the warehouse is made between rounds, so that none lands in another round's timings.
    rounds: dict[int, list] = {port: [] for port in logs}
    for port in [*logs, *reversed(logs)]:
        rounds[port].append(measure(1, 250, port))
        for app in apps.values():
            if app.state.decision_log is not None:
                app.state.decision_log.sync()
    named = {8765: "api_concurrency_1", 8766: "api_concurrency_1_decision_log_off",
             8767: "api_concurrency_1_postgres_log"}
    for port, measured in rounds.items():
        result[named[port]] = summary(np.concatenate([m for m, _ in measured]), sum(w for _, w in measured))
    off = result[named[8766]]
    result["api_concurrency_1_durability_cost_ms"] = {
        store: {q: result[named[port]][f"{q}_ms"] - off[f"{q}_ms"] for q in ("p50", "p99")}
        for store, port in (("journal", 8765), ("postgres", 8767)) if port in logs}
    result["api_concurrency_16"] = run(16, 800)
    result["group_commits"] = {store: apps[port].state.decision_log.commits
                               for store, port in (("journal", 8765), ("postgres", 8767)) if port in logs}
    for server in servers.values():
        server.should_exit = True
    for app in apps.values():
        if app.state.decision_log is not None:
            app.state.decision_log.close()
    result["decisions_logged"] = int(warehouse.read(
        "SELECT count(*) AS n FROM decisions WHERE request_id IS NOT NULL")["n"].iloc[0])
    if cluster is not None:
        cluster.remove()
    result["peak_rss_mb"] = peak_mb()
    return result


def load(url: str, work: Path, requests: int, concurrency: int) -> dict:
    """The API load generator, in a process of its own so that it does not share the server's interpreter."""
    import threading

    import httpx

    bodies = [json.dumps(b) for b in json.loads((work / "bodies.json").read_text())]
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(offset: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            for i in range(offset, requests, concurrency):
                start = time.perf_counter()
                response = client.post("/v1/score", content=bodies[i % len(bodies)],
                                       headers={"content-type": "application/json"})
                elapsed = time.perf_counter() - start
                assert response.status_code == 200, response.text
                with lock:
                    latencies.append(elapsed)

    t = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(o,)) for o in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return {"latencies": latencies, "wall_s": time.perf_counter() - t}


def stage_worst_request(work: Path, rows: int) -> dict:
    """The costliest bodies a client can send the API (100,000 empty objects in 400 KB, one object with 50,000
    fields, the largest valid list, a 2 MB chunked body), each timed while another process polls /healthz
    every 10 ms: the request's time to answer and /healthz's latency meanwhile."""
    import threading

    import uvicorn

    from serving.api import create_app, server_config

    world, scorer = fitted_world(work, "worst", seed=7)
    labels = ("inspected", "fraud", "revenue", "critical", "control_date")
    valid = [{k: (str(v.date()) if k == "declaration_date" else (None if v != v or v is None else v))
              for k, v in r.items() if k not in labels} for r in world.declarations.tail(100).to_dict("records")]
    bodies = {"empty_objects_100k": b"[" + b", ".join([b"{}"] * 100_000) + b"]",
              "fields_50k": json.dumps({f"k{i}": 0 for i in range(50_000)}).encode(),
              "valid_list_100": json.dumps(valid, default=float).encode()}
    for name, body in bodies.items():
        (work / f"worst-{name}.json").write_bytes(body)
    server = uvicorn.Server(server_config(create_app(scorer, api_key=""), "127.0.0.1", 8767, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    rss = lambda: int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20  # noqa: E731
    before = rss()
    probe = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                            f"import serving_stages; serving_stages.probe_worst('http://127.0.0.1:8767', {str(work)!r})"],
                           capture_output=True, text=True, check=True)
    server.should_exit = True
    return {**json.loads(probe.stdout.strip().splitlines()[-1]), "server_rss_mb_before": before,
            "server_rss_mb_after": rss(), "peak_rss_mb": peak_mb()}


def probe_worst(url: str, work: str) -> None:
    """stage_worst_request's client, in a process of its own: each body sent while a thread polls /healthz."""
    import threading

    import httpx
    import numpy as np

    def chunks():  # noqa: ANN202
        for _ in range(20):
            yield b" " * 100_000

    out = {}
    httpx.post(f"{url}/v1/score", content=b"{}", timeout=60)  # warm-up: the first call's one-off costs
    for name in WORST_BODIES:
        body = chunks() if name == "chunked_2mb" else (Path(work) / f"worst-{name}.json").read_bytes()
        stop, latencies = threading.Event(), []

        def poll(stop: threading.Event = stop, latencies: list[float] = latencies) -> None:
            with httpx.Client(base_url=url, timeout=60) as client:
                while not stop.is_set():
                    t = time.perf_counter()
                    client.get("/healthz")
                    latencies.append(time.perf_counter() - t)
                    time.sleep(0.01)

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(0.3)
        t = time.perf_counter()
        response = httpx.post(f"{url}/v1/score", content=body, headers={"content-type": "application/json"},
                              timeout=120)
        elapsed = time.perf_counter() - t
        time.sleep(0.3)
        stop.set()
        poller.join()
        ms = np.array(latencies) * 1000
        out[name] = {"status": response.status_code, "answer_s": elapsed, "answer_bytes": len(response.content),
                     "healthz_polls": len(ms), "healthz_p50_ms": float(np.percentile(ms, 50)),
                     "healthz_p99_ms": float(np.percentile(ms, 99)), "healthz_max_ms": float(ms.max())}
    print(json.dumps(out))

