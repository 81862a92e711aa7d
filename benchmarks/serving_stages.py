"""The serving stages: batch scoring against CatBoost's own predict_proba and the API's latency under a load
generator against a plain FastAPI app around CatBoost's predict_proba (benchmarks/plain_api.py), then the costliest
bodies a client can send the API."""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

from http_load import api_process, measure
from processes import fitted_world, peak_mb, postgres_cluster, summary

WORST_BODIES = ("empty_objects_100k", "fields_50k", "valid_list_100", "chunked_2mb")
PLAIN = 8768  # the plain app's port, in this process
CROSSING_PORT = 8769  # the slot-crossing app's (`slot_crossings`)
SLOT_S = 2.0  # its reload slots: short, so that a run crosses a few dozen
CROSSING_CALLS = 6_000  # about 20 s of calls at c=1
C16_REQUESTS = 2000


def stage_serving(work: Path, rows: int) -> dict:
    """Batch scoring end to end on every declaration vs CatBoost's own predict_proba, where the time goes; then the
    API against the plain FastAPI + CatBoost app, from a load generator in its own process (benchmarks/http_load.py):
    c=1 in this process (with the decision log in the journal, in PostgreSQL and off: what durability costs), c=16
    on 2 uvicorn worker processes; each app's start to ready and first call; a promotion's model load; and the goals
    (`goals`: p99 under 5 ms at c=1 with the decision log on, 500 calls/s at c=16 on 2 workers, aduana/plain)."""
    import threading

    import numpy as np
    import pandas as pd
    import plain_api
    import uvicorn
    from catboost import Pool

    from features.build import build_features, integrate
    from features.collector import collector_paused
    from features.intake.mapping import ColumnMapping
    from features.intake.prepared import prepare_batch
    from features.intake.validation import check_rows
    from features.warehouse import Warehouse, open_log
    from serving.api import create_app, server_config
    from serving.api.body import read_canonical
    from serving.batch import score_file, write_output
    from serving.lanes import RED, YELLOW, LanePolicy, allocate
    from serving.model_source import FixedSource
    from serving.reasons import explanations
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

    runs = []  # the first in this process (cold: its memory not yet the process's), then two more (warm)
    for _ in range(3):
        t = time.perf_counter()
        scored = score_file(landing / "declarations.parquet", scorer)
        write_output(scored.output, work / "scores.parquet")
        runs.append(time.perf_counter() - t)
    e2e_s, warm_s = runs[0], min(runs[1:])

    # The same work again, step by step, to show where the time goes. As the scorer does, with Python's cyclic
    # collector held off once the rows are read; both models predicted one after the other (the scorer predicts the revenue model's on another
    # thread while the lanes and reasons are made).
    steps = {}
    t = time.perf_counter()
    declarations = check_rows(pd.read_parquet(landing / "declarations.parquet"), "declarations", ColumnMapping()).valid
    steps["read_validate_s"] = time.perf_counter() - t
    with collector_paused():
        t = time.perf_counter()
        frame = integrate(declarations.reset_index(drop=True), context=scorer.context())
        X = build_features(frame, bands=model.price_bands, profiles=scorer.context().profiles,
                           columns=model.columns).X[model.columns]  # the profiles the model reads, as the scorer builds
        steps["features_s"], t = time.perf_counter() - t, time.perf_counter()
        pool = model.pool(X)  # built once, as the scorer does: both models read it
        risk, expected = model.predict_pool(pool)
        steps["predict_s"], t = time.perf_counter() - t, time.perf_counter()
        lanes = allocate(frame.assign(risk_score=risk, expected_revenue=expected), scorer.policy)
        steps["lanes_s"], t = time.perf_counter() - t, time.perf_counter()
        chosen = lanes["lane"].isin([RED, YELLOW]).to_numpy()
        explanations(model, X[chosen], frame[chosen])  # their own pool, as the scorer builds
        steps["reasons_s"] = time.perf_counter() - t

    # Raw CatBoost as a user would call it: its pool from the same frame, then its own predict_proba.
    t = time.perf_counter()
    pool = Pool(X[model.columns], cat_features=model.categorical)
    pool_s = time.perf_counter() - t
    t = time.perf_counter()
    model.classifier.predict_proba(pool)
    raw_s = time.perf_counter() - t
    # The same file in a process of its own (benchmarks/scored_batch.py), whole and in partitions of 100,000 (as
    # `aduana score` reads a file beyond ADUANA_SCORE_PARTITION_ROWS), the history in pandas, and in partitions
    # through the snapshot in DuckDB (as for a warehouse beyond ADUANA_TRAINING_MEMORY_ROWS): the time from a cold
    # start, history read and indexed, the peak memory of the scoring alone, and raw pool + predict over that time.
    model_file = work / "serving-model.pickle"
    model_file.write_bytes(pickle.dumps(model))
    alone = {}
    for name, args in (("whole", ["0"]), ("partitions_of_100k", ["100000"]),
                       ("partitions_of_100k_snapshot", ["100000", "snapshot"])):
        out = subprocess.run([sys.executable, str(Path(__file__).with_name("scored_batch.py")), str(warehouse.path),
                              str(model_file), str(landing / "declarations.parquet"), str(work / f"scores-{name}.parquet"),
                              *args], capture_output=True, text=True, check=True)
        alone[name] = json.loads(out.stdout.strip().splitlines()[-1])
        alone[name]["raw_pool_and_predict_over_scoring"] = (raw_s + pool_s) / alone[name]["scoring_s"]
    result = {"rows": rows, "batch_end_to_end_s": e2e_s, "batch_rows_per_s": rows / e2e_s, "batch_in_own_process": alone,
              "catboost_predict_proba_s": raw_s, "catboost_rows_per_s": rows / raw_s,
              "catboost_pool_from_dataframe_s": pool_s,
              "batch_vs_raw_throughput": raw_s / e2e_s,
              "batch_vs_raw_including_pool": (raw_s + pool_s) / e2e_s,
              "batch_end_to_end_runs_s": runs, "batch_vs_raw_including_pool_warm": (raw_s + pool_s) / warm_s,
              "batch_steps": steps, "explained_rows": int(chosen.sum())}

    # The API against the plain one (benchmarks/plain_api.py: a FastAPI route around CatBoost's predict_proba on the
    # same model and the same bodies), measured the same way: at c=1 served in this process, at c=16 by 2 uvicorn
    # worker processes (serving/api/fixed.py: the app on this model, with the batch's cut-offs pinned), as
    # `aduana serve --workers 2` serves it.
    decisions = scored.output.assign(batch_id="bench")
    thresholds = Thresholds.from_decisions(decisions, "risk_score", scorer.policy.seed)
    pinned = work / "serving-pinned.parquet"
    decisions[["declaration_id", "risk_score", "lane", "selected_by", "batch_id"]].to_parquet(pinned)
    os.environ[plain_api.SETTING] = str(model_file)
    apps, servers = {}, {}
    # 8765: every answer durable in the home's journal (the default); 8766: no log at all (what durability is
    # measured against); 8767: durable in PostgreSQL (the production stack), when Debian's server is installed;
    # PLAIN: the plain app.
    cluster = postgres_cluster(work)
    logs = {8765: (True, None), 8766: (False, None)}
    if cluster is not None:
        logs[8767] = (True, open_log(cluster.create_database("bench_ops"), warehouse.path))
    for port, (decision_log, oplog) in logs.items():
        apps[port] = app = create_app(scorer, api_key="", decision_log=decision_log, oplog=oplog)
        app.state.service.pin(thresholds)
        servers[port] = uvicorn.Server(server_config(app, "127.0.0.1", port, log_level="error"))
    apps[PLAIN] = plain_api.app()
    servers[PLAIN] = uvicorn.Server(uvicorn.Config(apps[PLAIN], "127.0.0.1", PLAIN, log_level="error"))
    threads = [threading.Thread(target=server.run, daemon=True) for server in servers.values()]
    for thread, server in zip(threads, servers.values(), strict=True):
        thread.start()
        while not server.started:
            time.sleep(0.05)
    journals = [log for app in apps.values() if (log := getattr(app.state, "decision_log", None)) is not None]
    sample = pd.read_parquet(landing / "declarations.parquet").tail(2000)
    bodies = [{k: (str(v.date()) if k == "declaration_date" else (None if pd.isna(v) else v))
               for k, v in r.items() if k not in ("inspected", "fraud", "revenue", "critical", "control_date")}
              for r in sample.to_dict("records")]
    (work / "bodies.json").write_text(json.dumps(bodies, default=float))

    for port in servers:
        measure(f"http://127.0.0.1:{port}", work, 20, 1)  # warm-up
    # What a durable record costs a call: the same calls against the app with each log and without one, and against
    # the plain app, in rounds ordered forwards then backwards so that a drift in the machine's load favours none.
    # The copy of each log to the warehouse is made between rounds, so that none lands in another round's timings.
    rounds: dict[int, list] = {port: [] for port in servers}
    for port in [*servers, *reversed(servers)]:
        rounds[port].append(measure(f"http://127.0.0.1:{port}", work, 250, 1))
        for log in journals:
            log.sync()
    named = {8765: "api_concurrency_1", 8766: "api_concurrency_1_decision_log_off",
             8767: "api_concurrency_1_postgres_log", PLAIN: "plain_concurrency_1"}
    for port, measured in rounds.items():
        ms, wall, load_cpu = zip(*measured, strict=True)
        result[named[port]] = summary(np.concatenate(ms), sum(wall), sum(load_cpu))
    off = result[named[8766]]
    result["api_concurrency_1_durability_cost_ms"] = {
        store: {q: result[named[port]][f"{q}_ms"] - off[f"{q}_ms"] for q in ("p50", "p99")}
        for store, port in (("journal", 8765), ("postgres", 8767)) if port in logs}
    result["group_commits"] = {store: apps[port].state.decision_log.commits
                               for store, port in (("journal", 8765), ("postgres", 8767)) if port in logs}
    for server in servers.values():
        server.should_exit = True
    for thread in threads:
        thread.join(timeout=30)
    for log in journals:
        log.close()
    result["decisions_logged"] = int(warehouse.read(
        "SELECT count(*) AS n FROM decisions WHERE request_id IS NOT NULL")["n"].iloc[0])
    if cluster is not None:
        cluster.remove()

    result["api_slot_crossings"] = slot_crossings(scorer, work)

    # Fixed costs: a process's start to its first 200 from /readyz (1 worker) and its first call; then c=16 on 2
    # workers (benchmarks/serve_workers.py: as `aduana serve --workers 2` runs). Last, a promotion's model load in
    # this process: the champion's pickle read back, the switch to it (refresh_model), and the first scoring call on
    # it against the next.
    plain = {"api_concurrency_1": result.pop(named[PLAIN]), "model_columns": len(model.columns),  # how many of them
             "model_columns_in_body": len(set(model.columns) & set(bodies[0]))}  # a body gives it: the rest missing
    served_by = {"aduana": ("serving.api.fixed:app", {"ADUANA_FIXED_API": json.dumps(
                     {"model": str(model_file), "warehouse": str(warehouse.path), "ops_url": None,
                      "pinned": str(pinned)})}, result),
                 "plain": ("benchmarks.plain_api:app", {plain_api.SETTING: str(model_file)}, plain)}
    # Concurrency 1 again, each app in a process of its own with one worker, as `aduana serve` runs it (the rounds
    # above share this process, its threads and its heap with three other servers): rounds in turn, forwards then
    # backwards. Each process's start to ready is timed as it starts (the plain app's with Aduana's idle beside it).
    with contextlib.ExitStack() as alone:
        served_alone = {}
        for name, (factory, env, into) in served_by.items():
            served_alone[name] = served = alone.enter_context(
                api_process(factory, env, 1, work / f"serving-{name}-1.log", plain=name == "plain"))
            into["start_to_ready_s"] = served.start_to_ready_s
            into["first_call_ms"] = measure(served.url, work, 1, 1)[0][0]
            measure(served.url, work, 20, 1)  # warm-up
        alone_rounds: dict[str, list] = {name: [] for name in served_by}
        for name in [*served_by, *reversed(served_by)]:
            alone_rounds[name].append(measure(served_alone[name].url, work, 250, 1))
        for name, measured in alone_rounds.items():
            ms, wall, load_cpu = zip(*measured, strict=True)
            served_by[name][2]["api_concurrency_1_own_process"] = summary(np.concatenate(ms), sum(wall), sum(load_cpu))
    for name, (factory, env, into) in served_by.items():
        with api_process(factory, env, 2, work / f"serving-{name}-2.log", plain=name == "plain") as served:
            measure(served.url, work, 40, 4)  # warm-up: every worker's first calls
            into["api_concurrency_16"] = {**summary(*measure(served.url, work, C16_REQUESTS, 16)), "workers": 2}
    result["plain_fastapi_catboost"] = plain

    record = read_canonical([json.loads((work / "bodies.json").read_text())[-1]], False)[0].model_dump()
    blob = model_file.read_bytes()
    t = time.perf_counter()
    promoted = pickle.loads(blob)
    loads_s = time.perf_counter() - t
    scorer.source = FixedSource({"bench": model, "promoted": promoted}, "promoted")
    t = time.perf_counter()
    scorer.refresh_model(force=True)  # the switch: the model made ready to serve (its SHAP tables, as pickled)
    switch_s = time.perf_counter() - t
    calls = []
    for _ in range(2):
        t = time.perf_counter()
        scorer.score_realtime([record], thresholds)
        calls.append(time.perf_counter() - t)
    result["model_load_after_promotion"] = {"pickle_mb": len(blob) / 2**20, "pickle_loads_ms": 1000 * loads_s,
                                            "switch_ms": 1000 * switch_s,
                                            "first_call_ms": 1000 * calls[0], "next_call_ms": 1000 * calls[1]}

    aduana_1, plain_1 = result["api_concurrency_1"], plain["api_concurrency_1"]
    aduana_16, plain_16 = result["api_concurrency_16"], plain["api_concurrency_16"]
    result["goals"] = {
        "c1_p99_under_5ms_decision_log_on": aduana_1["p99_ms"] < 5,
        "c1_p99_under_5ms_decision_log_on_own_process": result["api_concurrency_1_own_process"]["p99_ms"] < 5,
        "c16_at_least_500_requests_per_s_2_workers": aduana_16["requests_per_s"] >= 500, "cpus": os.cpu_count(),
        "batch_at_least_0_4_of_raw_pool_and_predict": {"cold": result["batch_vs_raw_including_pool"] >= 0.4,
                                                       "warm": result["batch_vs_raw_including_pool_warm"] >= 0.4},
        "batch_in_own_process_at_least_0_4_of_raw_and_under_2gb": {
            name: run["raw_pool_and_predict_over_scoring"] >= 0.4 and run["peak_mb"] < 2048
            for name, run in result["batch_in_own_process"].items()},
        "aduana_over_plain": {"c1_p50_ms": aduana_1["p50_ms"] / plain_1["p50_ms"],
                              "c1_p99_ms": aduana_1["p99_ms"] / plain_1["p99_ms"],
                              "c1_p99_ms_own_process": result["api_concurrency_1_own_process"]["p99_ms"]
                              / plain["api_concurrency_1_own_process"]["p99_ms"],
                              "c16_requests_per_s": aduana_16["requests_per_s"] / plain_16["requests_per_s"],
                              "c16_p99_ms": aduana_16["p99_ms"] / plain_16["p99_ms"],
                              "start_to_ready_s": result["start_to_ready_s"] / plain["start_to_ready_s"]}}
    result["peak_rss_mb"] = peak_mb()
    return result


def slot_crossings(scorer, work: Path) -> dict:  # noqa: ANN001 - a Scorer
    """Reload slots crossed under load: the scorer on SLOT_S-second slots, CROSSING_CALLS calls at c=1 (a few dozen
    slots) to an app without a decision log, with the refresher (each slot's reload on a thread of its own) and
    without it (as before 0.25.2: the call that crosses a slot checks the champion, the snapshot's version and the
    thresholds itself)."""
    import threading

    import numpy as np
    import uvicorn

    from serving.api import create_app, server_config

    period, out = scorer.reload_seconds, {}
    scorer.reload_seconds = SLOT_S
    try:
        for name, refresher in (("refresher", True), ("in_the_crossing_call", False)):
            app = create_app(scorer, api_key="", decision_log=False, refresher=refresher)
            server = uvicorn.Server(server_config(app, "127.0.0.1", CROSSING_PORT, log_level="error"))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started:
                time.sleep(0.05)
            url = f"http://127.0.0.1:{CROSSING_PORT}"
            measure(url, work, 20, 1)  # warm-up
            ms, wall, load_cpu = measure(url, work, CROSSING_CALLS, 1)
            server.should_exit = True
            thread.join(timeout=30)
            out[name] = {**summary(ms, wall, load_cpu), "p999_ms": float(np.percentile(ms, 99.9)),
                         "max_ms": float(max(ms)), "calls_over_20_ms": int(sum(m > 20 for m in ms)),
                         "slots_crossed": int(wall // SLOT_S)}
    finally:
        scorer.reload_seconds = period
    return {"slot_s": SLOT_S, **out}


def stage_source_layout(work: Path, rows: int) -> dict:
    """The API in an export's own layout (`aduana serve --mapping`, every answer durable in the journal), served by
    uvicorn in this process: one islas arrival per call at concurrency 1, its records read in plain Python (as
    served) against the same records read through the frame and pandera (`fast_reads` off, the way before 0.25.1),
    in rounds forwards then backwards. The arrivals are those the export's checks accept (it holds refused rows
    too)."""
    import csv
    import threading

    import numpy as np
    import uvicorn

    from features.intake.checked import read_checked
    from features.intake.mapping import load_mapping
    from features.intake.prepared import prepare_batch
    from features.intake.records import records_frame
    from features.simulator import simulate_islas, write_islas
    from features.warehouse import Warehouse
    from serving.api import create_app, server_config
    from serving.lanes import LanePolicy
    from serving.model_source import FixedSource
    from serving.scorer import Scorer
    from training.models import FitConfig
    from training.pipeline import train_and_evaluate

    paths = write_islas(simulate_islas(20_000, seed=7), work / "layout-islas")
    mapping = load_mapping(paths["mapping"])
    warehouse = Warehouse(work / "layout-home" / "warehouse.duckdb")
    warehouse.store(prepare_batch(paths["train"], "declarations", mapping))
    scorer = Scorer(warehouse, LanePolicy(), FixedSource({}, None), reload_seconds=3600)
    model = train_and_evaluate(scorer.context().history, FitConfig(iterations=100)).model
    scorer.source = FixedSource({"bench": model}, "bench")
    scorer.refresh_model(force=True)
    with paths["arrivals"].open(newline="") as fh:
        arrivals = list(csv.DictReader(fh))
    accepted = read_checked(records_frame(arrivals, mapping), "declarations", mapping).valid.index
    bodies = [arrivals[i] for i in accepted[:2000]]
    (work / "layout").mkdir(exist_ok=True)
    (work / "layout" / "bodies.json").write_text(json.dumps(bodies))
    app = create_app(scorer, api_key="", mapping=mapping)
    server = uvicorn.Server(server_config(app, "127.0.0.1", 8768, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url, layout = "http://127.0.0.1:8768", app.state.layout
    measure(url, work / "layout", 20, 1)  # warm-up
    rounds: dict[bool, list] = {True: [], False: []}
    for fast in (True, False, False, True):
        layout.fast_reads = fast
        rounds[fast].append(measure(url, work / "layout", 250, 1))
        app.state.decision_log.sync()
    server.should_exit = True
    thread.join(timeout=30)
    app.state.decision_log.close()
    result = {"arrivals": len(bodies), "mapping": "islas"}
    for fast, name in ((True, "plain_python"), (False, "frame")):
        ms, wall, load_cpu = zip(*rounds[fast], strict=True)
        result[f"api_concurrency_1_{name}"] = summary(np.concatenate(ms), sum(wall), sum(load_cpu))
    result["frame_over_plain_python"] = {
        q: result["api_concurrency_1_frame"][f"{q}_ms"] / result["api_concurrency_1_plain_python"][f"{q}_ms"]
        for q in ("p50", "p99")}
    result["peak_rss_mb"] = peak_mb()
    return result


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

