"""serving/ui/routes.py: the key in front of the analysts' pages (serving/keys.py): as a header, or once in the URL
and then a signed, expiring cookie; the 401 page says nothing of the model; the overview's links to declarations
keep working on the cookie alone, and never carry the key."""
from __future__ import annotations

import re
import time
from html import unescape

import pytest
from fastapi.testclient import TestClient

from serving import keys
from serving.api import create_app
from serving.ui import routes
from tests.integration.test_ui import store_scored_world

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scored(world, trained, tmp_path_factory):
    return store_scored_world(world, trained, tmp_path_factory.mktemp("ui-routes"))


def test_with_a_key_the_page_needs_it_as_a_header_or_once_in_the_url_then_a_cookie(scored):
    scorer, batch = scored
    keyed = TestClient(create_app(scorer, api_key="s3cret", decision_log=False), follow_redirects=False)
    one = batch["declaration_id"].iloc[0]
    for path in ("/ui", f"/ui/declaration?id={one}", f"/ui/declaration?id={one}&key=wrong", "/ui?key="):
        refused = keyed.get(path)
        assert refused.status_code == 401 and "ADUANA_API_KEY" in refused.text, path
    assert keyed.get("/ui", headers={"X-API-Key": "wrong"}).status_code == 401
    assert keyed.get("/ui", headers={"X-API-Key": "s3cret"}).status_code == 200
    handed = keyed.get(f"/ui/declaration?id={one}&key=s3cret")
    assert handed.status_code == 303 and handed.headers["location"] == f"/ui/declaration?id={one}"  # key out of the URL
    cookie = handed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert f"Max-Age={keys.SESSION_SECONDS}" in cookie and "Secure" not in cookie  # plain HTTP: no Secure
    assert "s3cret" not in cookie  # a token derived from the key, which opens the pages only
    assert keyed.get(handed.headers["location"]).status_code == 200  # the client keeps the cookie
    assert keyed.get("/ui").status_code == 200
    keyed.cookies.clear()
    assert keyed.get("/ui").status_code == 401
    assert keyed.get("/healthz").status_code == 200


def test_the_cookie_expires_is_bound_to_the_key_and_is_secure_over_https(scored, monkeypatch):
    """The cookie's token says when it was issued, signed with the key: it stops opening the pages after
    SESSION_SECONDS, a token signed with another key (or edited) opens nothing, and over HTTPS, or with
    `secure_cookie`, the cookie is Secure."""
    from serving.keys import ServiceKey

    scorer, _ = scored
    keyed = TestClient(create_app(scorer, api_key="s3cret", decision_log=False), follow_redirects=False)
    key, now = ServiceKey("s3cret"), int(time.time())

    def opens(token: str) -> bool:
        keyed.cookies.clear()
        keyed.cookies.set(keys.KEY_COOKIE, token)
        return keyed.get("/ui").status_code == 200

    assert opens(keys.session_token(key, now - 60))
    assert not opens(keys.session_token(key, now - keys.SESSION_SECONDS - 1))  # expired
    assert not opens(keys.session_token(ServiceKey("other"), now))  # another key's
    signature = keys.session_token(key, now - keys.SESSION_SECONDS - 1).split(".")[1]
    assert not opens(f"{now}.{signature}")  # an old signature with a new date
    assert not opens(keys.session_token(key, now + 3600))  # issued in the future: not by this server
    assert opens(keys.session_token(key, now + 30))  # a replica's clock a little ahead
    assert not opens("") and not opens("x.y") and not opens(keys.KEY_COOKIE)
    keyed.cookies.clear()
    for cookie in ('aduana_ui="\\262.abc"', "aduana_ui=" + "9" * 5000 + ".abc"):  # '²' once unquoted; 5,000 digits
        assert keyed.get("/ui", headers={"Cookie": cookie}).status_code == 401  # not the 500 of int()
    keyed.cookies.clear()
    assert keyed.get("/ui?key=s3cret").status_code == 303 and keyed.get("/ui").status_code == 200
    monkeypatch.setattr(routes.time, "time", lambda: now + keys.SESSION_SECONDS + 5)  # the cookie handed out expires too
    assert keyed.get("/ui").status_code == 401
    monkeypatch.undo()

    over_tls = TestClient(create_app(scorer, api_key="s3cret", decision_log=False), base_url="https://testserver",
                          follow_redirects=False)
    assert "Secure" in over_tls.get("/ui?key=s3cret").headers["set-cookie"]
    behind_proxy = TestClient(create_app(scorer, api_key="s3cret", decision_log=False, secure_cookie=True),
                              follow_redirects=False)
    assert "Secure" in behind_proxy.get("/ui?key=s3cret").headers["set-cookie"]


def test_the_401_page_says_nothing_of_the_champion(scored):
    keyed = TestClient(create_app(scored[0], api_key="s3cret", decision_log=False), follow_redirects=False)
    refused = keyed.get("/ui")
    assert refused.status_code == 401 and scored[0].version  # a champion is loaded, and not named
    assert "champion" not in refused.text and "(none loaded)" not in refused.text and "customs-risk" not in refused.text
    keyed.cookies.clear()
    assert "champion customs-risk v3" in keyed.get("/ui", headers={"X-API-Key": "s3cret"}).text


def test_the_overviews_declaration_links_work_behind_the_key_on_the_cookie_alone(scored):
    scorer, batch = scored
    keyed = TestClient(create_app(scorer, api_key="s3cret", decision_log=False), follow_redirects=False)
    assert keyed.get("/ui?key=s3cret").status_code == 303
    html = keyed.get("/ui").text
    links = [unescape(h) for h in re.findall(r'href="(/ui/declaration\?[^"]+)"', html)]
    assert links and not any("key" in h or "s3cret" in h for h in links)  # the cookie carries the session
    red = batch.loc[batch["lane"] == "red"].sort_values("risk_score", ascending=False, kind="stable")
    assert links[0] == f"/ui/declaration?id={red['declaration_id'].iloc[0]}"
    page = keyed.get(links[0])
    assert page.status_code == 200 and '<span class="lane lane-red">red</span>' in page.text
