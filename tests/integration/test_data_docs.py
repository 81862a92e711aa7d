"""Data Docs open with no network (pinned local assets), name the batch and file they checked, show each severity.

One failing batch goes through the ingest flow's own tasks (validate, store) into a fresh home; the pages are
then opened in headless Chromium with every network but loopback cut off, as on an air-gapped desk.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import re
import shutil
import tarfile
import urllib.parse
from collections import Counter
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest

from expectations import docs_assets
from expectations.checkpoint import check_batch
from expectations.data_docs import loaded_urls
from expectations.renderers import significant
from flows import ingest
from flows.orchestration.runtime import Runtime
from flows.settings import Settings
from tests import browser
from tests.conftest import write_csv

pytestmark = pytest.mark.integration


def local_assets(page: Path) -> dict[str, Path]:
    """The local files a page loads, by the reference in the page (relative, possibly %-quoted)."""
    return {u: (page.parent / urllib.parse.unquote(urllib.parse.urlsplit(u).path)).resolve()
            for u in loaded_urls(page.read_text(encoding="utf-8"))
            if not u.startswith("//") and not urllib.parse.urlsplit(u).scheme}


GX_TEMPLATES = Path(importlib.util.find_spec("great_expectations").origin).parent / "render" / "view" / "templates"
# What loads a file, independent of expectations/data_docs.py's own parser: a script, a stylesheet or icon, an image,
# or a CSS url()/@import. Plain <a href> links are for reading and do not count.
REMOTE_LOAD = re.compile(r"""<script\b[^>]*\bsrc=["']?(?:https?:)?//|<link\b[^>]*\bhref=["']?(?:https?:)?//"""
                         r"""|<img\b[^>]*\bsrc=["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import\s+["']?(?:https?:)?//""",
                         re.IGNORECASE)
TEXT_DANGER, TEXT_SUCCESS = (220, 53, 69), (40, 167, 69)  # Bootstrap's colours of GX's failed and passed icons


def _ingest(root: Path, rows, name: str) -> SimpleNamespace:
    """One file through validate_rows, validate_batch and store_batch (the flow's tasks, without the flow)."""
    rt = Runtime(Settings(home=root / "home"))
    batch = ingest.validate_rows.fn(str(write_csv(root / name, rows)), None, None)
    report = ingest.validate_batch.fn(rt, batch)
    summary = ingest.store_batch.fn(rt, batch, report)
    site = report.docs_index.parent
    page = next((site / "validations").rglob("*.html"))
    return SimpleNamespace(report=report, summary=summary, batch=batch, site=site, page=page, name=name, root=root)


@pytest.fixture(scope="module")
def fetched() -> None:
    """The pinned assets, as `make venv` leaves them (the tests never download anything)."""
    missing = docs_assets.problems()
    if missing:
        pytest.fail(f"the Data Docs assets are not fetched ({missing}); run `make venv` or `{docs_assets.FETCH_COMMAND}`")


@pytest.fixture(scope="module")
def failing(world, tmp_path_factory, fetched) -> SimpleNamespace:
    """A declarations file whose values were lost (a warning fails), ingested with the fetched assets."""
    return _ingest(tmp_path_factory.mktemp("docs"), world.declarations.head(400).assign(declared_value=0.0),
                   "declarations_2024.csv")


@pytest.fixture(scope="module")
def unfetched(world, tmp_path_factory) -> tuple[SimpleNamespace, str]:
    """The same file on a machine where the asset fetch never ran, and what the ingest printed."""
    root = tmp_path_factory.mktemp("unfetched")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ingest, "check_batch", partial(check_batch, docs_assets=root / "never-fetched"))
        patch.setattr(ingest, "name_docs_after_batch", partial(ingest.name_docs_after_batch,
                                                                docs_assets=root / "never-fetched"))
        printed = io.StringIO()
        patch.setattr("sys.stderr", printed)
        result = _ingest(root, world.declarations.head(400).assign(declared_value=0.0), "declarations_2024.csv")
    return result, printed.getvalue()


def _gx_results(ingested: SimpleNamespace) -> Path:
    return Settings(home=ingested.root / "home").gx_root / "gx" / "uncommitted" / "validations"


def _pixels_near(path: Path, colour: tuple[int, int, int], tolerance: int = 40) -> int:
    from PIL import Image

    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 24)
    return sum(n for n, c in colours if sum(abs(a - b) for a, b in zip(c, colour, strict=True)) <= tolerance)


def _rows(html: str) -> list[str]:
    return re.findall(r"<tr\b.*?</tr>", html, re.DOTALL)


# --- the site's files ---

def test_no_page_loads_a_script_stylesheet_font_or_image_from_the_network(failing):
    pages = list(failing.site.rglob("*.html"))
    assert len(pages) >= 3  # the index, the suite, the validation
    for page in pages:
        html = page.read_text()
        assert not REMOTE_LOAD.findall(html), f"{page.relative_to(failing.site)} loads {REMOTE_LOAD.findall(html)}"
        assert "static/vendor/" in html, page
    assert failing.report.docs_note is None


def test_every_local_file_a_page_or_stylesheet_loads_is_in_the_site(failing):
    for page in failing.site.rglob("*.html"):
        for reference, path in local_assets(page).items():
            assert path.is_file(), f"{page.relative_to(failing.site)}: {reference} is missing"
            assert path.is_relative_to(failing.site.resolve()), reference
    stylesheets = list((failing.site / "static" / "vendor").rglob("*.css"))
    fonts = 0
    for css in stylesheets:
        for url in re.findall(r"""url\(\s*["']?([^"')]+)""", css.read_text()):
            if not url.startswith("data:"):
                assert (css.parent / url.split("?")[0].split("#")[0]).is_file(), f"{css.name}: {url}"
                fonts += 1
    assert fonts, "Font Awesome's stylesheet names its web fonts"


def test_the_validation_is_named_after_the_stored_batch_and_its_file(failing):
    run_name = f"{failing.summary.batch_id}: {failing.name}"
    assert failing.report.docs_validation[-3] == run_name
    assert failing.report.docs_validation[-1] == failing.summary.batch_id
    html = failing.page.read_text()
    assert run_name in html
    assert f"Data asset: declarations: {failing.batch.source}" in html
    assert run_name in (failing.site / "index.html").read_text()
    # the stand-in name used before the warehouse assigned the id is gone from the store and the site
    assert [p.name for p in (failing.site / "validations").rglob("*.html")] == [f"{failing.summary.batch_id}.html"]
    assert not [p for p in _gx_results(failing).rglob("*") if "sha256-" in p.name]


def test_each_expectation_shows_its_severity_and_the_failed_one_is_marked(failing):
    html = failing.page.read_text()
    result = json.loads(next(_gx_results(failing).rglob(f"{failing.summary.batch_id}.json")).read_text())
    severities = [r["expectation_config"]["severity"] for r in result["results"]]
    assert Counter(re.findall(r'class="badge [^"]*ge-severity-(\w+)', html)) == Counter(severities)
    failed = [row for row in _rows(html) if "fa-times" in row]
    assert len(failed) == len(failing.report.failures) == 1
    severity = failing.report.failures[0].split(":")[0]
    assert f"ge-severity-{severity}" in failed[0]


def test_the_pages_have_no_newsletter_footer_and_show_fitted_thresholds_rounded(failing):
    for page in (failing.page, failing.site / "index.html"):
        assert "newsletter" not in page.read_text().lower(), page
    html = failing.page.read_text()
    result = json.loads(next(_gx_results(failing).rglob(f"{failing.summary.batch_id}.json")).read_text())
    fitted = [v for r in result["results"] for v in r["expectation_config"]["kwargs"].values()
              if isinstance(v, float) and len(repr(v)) > 8]  # thresholds fitted on data, stored exact
    assert fitted
    for value in fitted:
        assert repr(value) not in html and significant(value) in html, value


def test_without_the_fetched_assets_the_docs_build_and_the_ingest_says_how_to_get_them(unfetched):
    result, printed = unfetched
    assert result.summary.stored == 400 and result.page.is_file()
    assert REMOTE_LOAD.search(result.page.read_text())  # GX's CDN links, left as they are
    assert docs_assets.FETCH_COMMAND in result.report.docs_note
    assert docs_assets.FETCH_COMMAND in printed and "not render offline" in printed


# --- in a browser with the network cut off ---

def test_the_index_lists_the_validation_offline(failing):
    dom = browser.dump_dom((failing.site / "index.html").as_uri())
    table = re.search(r'<table[^>]*ge-index-page-validation-results-table.*?</table>', dom, re.DOTALL)
    assert table, "no validation results table"
    body = re.search(r"<tbody>(.*?)</tbody>", table.group(0), re.DOTALL)  # bootstrap-table builds it from JS data
    assert body and f"{failing.summary.batch_id}: {failing.name}" in body.group(1)
    assert "fa-times" in body.group(1)  # the batch failed a warning


def test_the_validation_page_shows_the_failed_expectation_with_its_icon_offline(failing, unfetched):
    dom = browser.dump_dom(failing.page.as_uri())
    assert 'class="bootstrap-table' in dom  # jQuery and bootstrap-table ran from the local copies
    failed = [row for row in _rows(dom) if "fa-times" in row and "ge-severity-" in row]
    assert len(failed) == 1 and "unexpected values found" in failed[0]
    assert "<footer" not in dom  # GX's newsletter footer no longer covers the tables' last rows

    shot = browser.screenshot(failing.page.as_uri(), "data-docs-validation", size="1400,1800")
    without_fonts = failing.root / "without-font-awesome"
    shutil.copytree(failing.site, without_fonts)
    shutil.rmtree(without_fonts / "static" / "vendor" / "@fortawesome")
    iconless = browser.screenshot((without_fonts / failing.page.relative_to(failing.site)).as_uri(),
                                  "data-docs-validation-without-font-awesome", size="1400,1800")
    unstyled = browser.screenshot(unfetched[0].page.as_uri(), "data-docs-validation-unfetched", size="1400,1800")

    colours, bare = browser.distinct_colours(shot), browser.distinct_colours(unstyled)
    assert colours > 1000 and colours > 2 * bare, (colours, bare)
    # the status icons are Font Awesome glyphs: the passed ones' green exists only with the local fonts
    assert _pixels_near(shot, TEXT_SUCCESS) > 50 and _pixels_near(iconless, TEXT_SUCCESS) == 0
    assert _pixels_near(shot, TEXT_DANGER) > _pixels_near(iconless, TEXT_DANGER) + 20


# --- the pins ---

def test_the_pins_cover_every_cdn_file_gx_asks_for_byte_for_byte(fetched):
    manifest = docs_assets.load_manifest()
    asked = set()
    for template in GX_TEMPLATES.glob("*.j2"):
        text = template.read_text()
        asked |= set(re.findall(r"""<(?:script|link)\b[^>]*\b(?:src|href)=["'](https?://[^"']+)""", text))
        for url, integrity in re.findall(r"""src=["'](https?://[^"']+)["'][^>]*integrity=["']([^"']+)""", text):
            algorithm, digest = integrity.split("-", 1)
            local = docs_assets.VENDOR_DIR / manifest["urls"][url]
            assert base64.b64encode(hashlib.new(algorithm, local.read_bytes()).digest()).decode() == digest, url
    assert asked and asked <= set(manifest["urls"]), asked - set(manifest["urls"])
    for path in manifest["urls"].values():
        spec = next(s for s in manifest["packages"] if path.startswith(s + "/"))
        assert docs_assets._wanted(path.removeprefix(spec + "/"), manifest["packages"][spec]["files"]), path


def _tarball(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_the_fetch_checks_integrity_and_is_idempotent(tmp_path, monkeypatch):
    data = _tarball({"dist/a.js": b"a();", "dist/b.js": b"b();", "README": b"not wanted"})
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    manifest = {"packages": {"demo@1.0.0": {"tarball": docs_assets.NPM_REGISTRY + "demo/-/demo-1.0.0.tgz",
                                            "integrity": integrity, "files": ["dist/a.js"]}}, "urls": {}}
    downloads = []
    monkeypatch.setattr(docs_assets, "_download", lambda url: downloads.append(url) or data)

    assert docs_assets.fetch(tmp_path, manifest, report=lambda _: None) == ["demo@1.0.0"]
    assert sorted(p.name for p in (tmp_path / "demo@1.0.0").rglob("*") if p.is_file()) == [".integrity.json", "a.js"]
    assert docs_assets.fetch(tmp_path, manifest, report=lambda _: None) == [] and len(downloads) == 1

    (tmp_path / "demo@1.0.0" / "dist" / "a.js").write_text("tampered();")
    assert "changed" in docs_assets.problems(tmp_path, manifest)["demo@1.0.0"]
    manifest["packages"]["demo@1.0.0"]["integrity"] = "sha512-" + base64.b64encode(hashlib.sha512(b"x").digest()).decode()
    with pytest.raises(ValueError, match="integrity mismatch"):
        docs_assets.fetch(tmp_path, manifest, report=lambda _: None)
    assert (tmp_path / "demo@1.0.0" / "dist" / "a.js").read_text() == "tampered();"  # nothing unpacked from it
