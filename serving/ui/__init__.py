"""The analysts' page (`GET /ui`): plain server-rendered HTML from the API app, with nothing but inline CSS and
inline SVG, so it works on an offline customs network and its Content-Security-Policy allows no script at all.

- `/ui`: the latest scoring batch (lanes by office and by day over the declarations the warehouse holds, the score
  distribution with the lane cut-offs, its red declarations as links to their pages), the latest post-clearance
  audit list and the latest stored risk ratings, each with what to run when there is none.
- `/ui/declaration?id=ID`: a declaration's latest decision (lane, score, selected_by, reasons, model version), the
  declaration as the warehouse stores it with its control outcome, and its top feature contributions (SHAP values,
  log-odds): those the deciding model gave at decision time, stored with the decision (the decision log's
  `contributions`); for a decision without them (a green release, or one logged before they were stored) the
  current champion's, recomputed for the declaration as the warehouse stores it through the scorer's own one-row
  path (serving/scorer.py), and the page says so.

The page reads the warehouse as the scorer reads its snapshot (`PageSnapshot`): under the process's warehouse lock,
waiting at most the scorer's `snapshot_wait` for another process, at most every `reload_seconds`; while the file is
busy the last read keeps serving, so the page never blocks on a writer. A lookup reads one declaration live, with
the same bounded wait (503 when the warehouse stays busy).

With ADUANA_API_KEY set the page needs the key, like scoring (one check, serving/keys.py `ServiceKey`): as
X-API-Key, or once as `?key=` on any /ui URL, which answers a redirect to the same URL without it and sets an
HttpOnly, SameSite=Strict cookie. The cookie holds a signed, expiring token (when it was issued, and an HMAC of that
under the key), not the key: a copied cookie opens these pages only, never /v1/score, and only for
SESSION_SECONDS. It is Secure when the request came over HTTPS, or always with `create_app(secure_cookie=True)`.
Links between the pages carry no key: the cookie opens them. The 401 page names no model.

The rooms: routes.py (`install`, the key check), snapshot.py (`PageSnapshot`), data.py (the batch as shown),
contributions.py (stored or recomputed SHAP values), overview.py and lookup.py (each page's sections), layout.py
(the page shell and formatters), charts.py (inline SVG) and style.py (the stylesheet).
"""
from __future__ import annotations

from serving.reasons import TOP_CONTRIBUTIONS
from serving.ui.contributions import Contributions, contributions, scorer_input, stored_contributions
from serving.ui.layout import HEADERS
from serving.ui.lookup import contributions_section
from serving.ui.page_data import BatchView, PageData, summarise_batch
from serving.ui.page_snapshot import PageSnapshot
from serving.ui.routes import install

__all__ = ["HEADERS", "TOP_CONTRIBUTIONS", "BatchView", "Contributions", "PageData", "PageSnapshot", "contributions",
           "contributions_section", "install", "scorer_input", "stored_contributions", "summarise_batch"]
