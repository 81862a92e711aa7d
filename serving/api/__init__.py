"""The real-time scoring API (HTTP only): the batch scorer, one declaration (or a short list) per request.

Two request layouts:
- canonical fields (contract §4), always: read by the `Declaration` model as ingest reads the same cells
  (features/intake/cell.py: the same parsing, normal form, rules and reason codes), then scored;
- with a column mapping (`aduana serve --mapping M.yaml`), also the mapping's source layout (its column names,
  units and codes): records go through features/intake (`read_checked`), the same mapping and row checks as ingest and batch
  scoring (`aduana score --mapping`), so a declaration gets the same score and lane both ways and the mapping's
  extras (xcat_/xnum_) reach the model.
In either layout, keys and text values holding what no text field may hold (NUL, control characters, unpaired
surrogates) are refused first, by name (422 `invalid_text`). Either way each declaration is scored on the
pandas-free one-row path (features/row.py), as if it came alone: an answer does not depend on what else the
request holds.

Lanes in real time come from thresholds (serving/selection.py `Thresholds`) that serving/realtime.py learns
from the latest scoring batch; every answer is appended to the decision log (serving/realtime.py `DecisionLog`).

The app also serves the analysts' page (`GET /ui`, serving/ui/) behind the same key, and documents `/v1/score`
with request examples drawn from the built-in simulator (`request_examples`).

What a request may cost is bounded before any per-item work: the body (size, and time to arrive: `BodyGuard`),
the request head (size, 431, and time to arrive: `SlowClientGuard`), then the JSON's shape (an object, or a list of at most
`max_items` objects); parsing, validation and scoring run in worker threads, never on the event loop, so
/healthz answers while the heaviest request is served. Error lists are capped at MAX_ERRORS.

Every answer carries security headers (`SecurityHeaders`: nosniff, a Content-Security-Policy, no framing, no
referrer, no-store). /readyz says only whether the service is ready, unless the caller gives the key.

Where each part lives:
- schemas.py: the request model `Declaration` (derived from the declarations contract), the answers `ScoreOut`,
  `HealthOut` and `ReadyOut`, and the fields' JSON schemas;
- body.py: the body read into records (`parse_records`), text no field may hold, canonical records read
  (`read_canonical`), 422 details;
- source.py: a mapping's source layout (`SourceLayout`);
- guards.py: the ASGI and HTTP guards (`BodyGuard`, `SlowClientGuard`, `SecurityHeaders`) and `server_config`;
- docs.py: the OpenAPI texts and request examples, and the docs pages;
- app.py: `create_app`, its routes and error handlers.
"""
from serving.api.app import create_app
from serving.api.guards import server_config
from serving.api.schemas import Declaration, ScoreOut

__all__ = ["Declaration", "ScoreOut", "create_app", "server_config"]
