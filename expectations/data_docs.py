"""Data Docs that render with no network and say which batch, which file and which severity.

GX builds the site; this module configures it (the Severity column, expectations/renderers.py), names each
validation after its batch and file, and after every build makes the site self-contained: it copies the pinned
assets (expectations/docs_assets.py) under `static/vendor/` and points every page's CDN scripts, stylesheets and
images at those copies. When the assets were never fetched the site still builds, with its CDN links, and the
note it returns says how to get them.
"""
from __future__ import annotations

import os
import re
import shutil
import urllib.parse
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from expectations.docs_assets import FETCH_COMMAND, MANIFEST, STAMP, VENDOR_DIR, load_manifest, problems

SITE_NAME = "local_site"
SITE_VENDOR = Path("static") / "vendor"
GX_WEB_ASSETS = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"
# GX's hosted images and the local copy each stands for (GX ships only the light logo).
GX_IMAGES = {"logo-long.png": "logo-long.png", "full_logo_dark.png": "logo-long.png"}

_TAG = re.compile(r"<(?:script|link|img)\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r"""\b(src|href)=(["'])(.*?)\2""", re.DOTALL)
_SRI = re.compile(r"""\s(?:integrity|crossorigin)=(["']).*?\1""", re.DOTALL)
_CSS_URL = re.compile(r"""(url\(\s*)(["']?)([^"')\s]+)\2(\s*\))""")
_CSS_IMPORT = re.compile(r"""@import\s+(?:url\()?\s*["']?([^"')\s;]+)""")
# GX's newsletter footer, fixed over the bottom of every page (and of the tables under it).
_NEWSLETTER = re.compile(r"<footer>(?:(?!</footer>).)*?newsletter.*?</footer>\s*", re.DOTALL | re.IGNORECASE)
_LOADED_BY = {"script": "src", "img": "src", "source": "src", "iframe": "src", "embed": "src", "link": "href"}


def site_config(base_directory: str = "uncommitted/data_docs/local_site/") -> dict:
    """The local site as GX builds it by default, but for a validation table that shows each severity."""
    return {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": True,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": base_directory},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "site_section_builders": {
            # GX's default filter files a run whose name contains "profiling" (here: a file's name) as a profile
            "validations": {"run_name_filter": {"matches_regex": "."}, "renderer": {
                "class_name": "ValidationResultsPageRenderer",
                "column_section_renderer": {
                    "class_name": "ValidationResultsColumnSectionRenderer",
                    "table_renderer": {"module_name": "expectations.renderers", "class_name": "SeverityTableRenderer"},
                },
            }},
            "profiling": "None",
        },
    }


def run_name(batch_id: str | None, source: str | None) -> str | None:
    """`<batch id>: <file name>`, what a validation is listed and titled by (None: GX's `__none__`)."""
    return ": ".join(part for part in (batch_id, Path(source).name if source else None) if part) or None


def data_asset_name(kind: str, source: str | None) -> str:
    return f"{kind}: {source}" if source else kind


class _AssetCollector(HTMLParser):
    """Every URL a page makes the browser load: scripts, stylesheets, icons, images, CSS url() and @import."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        loaded = _LOADED_BY.get(tag)
        if loaded and values.get(loaded) and not (tag == "link" and "canonical" in (values.get("rel") or "")):
            self.urls.append(values[loaded])
        if values.get("style"):
            self._css(values["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self._css(data)

    def _css(self, text: str) -> None:
        self.urls += [m.group(3) for m in _CSS_URL.finditer(text)] + _CSS_IMPORT.findall(text)


def loaded_urls(html: str) -> list[str]:
    collector = _AssetCollector()
    collector.feed(html)
    return [u for u in collector.urls if not u.startswith(("data:", "#", "about:", "javascript:"))]


def remote_assets(html: str) -> list[str]:
    """The http(s) URLs a page loads (links a reader may follow are not loads, and do not count)."""
    return [u for u in loaded_urls(html) if u.lower().startswith(("http://", "https://", "//"))]


@dataclass
class _Site:
    root: Path
    urls: dict[str, str]  # CDN URL → path under the site's root, for assets copied in

    def local(self, url: str, page: Path) -> str | None:
        """The page-relative reference to use instead of `url` (None: keep it)."""
        if url in self.urls:
            target = self.root / self.urls[url]
        elif url.startswith(GX_WEB_ASSETS):
            image = GX_IMAGES.get(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
            target = self.root / "static" / "images" / image if image else None
        elif not urllib.parse.urlsplit(url).scheme and "static/" in url and not (page.parent / url).exists():
            # GX's favicon link on validation pages climbs one folder too few
            target = self.root / "static" / url.split("static/", 1)[1]
        else:
            return None
        if target is None or not target.is_file():
            return None
        return urllib.parse.quote(Path(os.path.relpath(target, page.parent)).as_posix(), safe="/@")

    def rewrite(self, page: Path) -> bool:
        html = page.read_text(encoding="utf-8")

        def tag(match: re.Match) -> str:
            text = match.group(0)
            attr = _ATTR.search(text)
            local = self.local(attr.group(3), page) if attr else None
            if local is None:
                return text
            text = text[:attr.start(3)] + local + text[attr.end(3):]
            # the copy is byte-identical to the CDN's, but a file:// page cannot make the CORS request SRI needs
            return _SRI.sub("", text)

        def css_url(match: re.Match) -> str:
            local = self.local(match.group(3), page)
            return match.group(0) if local is None else f"{match.group(1)}{match.group(2)}{local}{match.group(2)}{match.group(4)}"

        new = _CSS_URL.sub(css_url, _TAG.sub(tag, html))
        if new != html:
            page.write_text(new, encoding="utf-8")
        return new != html


def _copy_assets(site_root: Path, vendor_dir: Path, manifest: dict) -> list[str]:
    """Copy each fetched package into the site (once per pin); return the packages not available."""
    unavailable = problems(vendor_dir, manifest, check_hashes=False)
    for spec in manifest["packages"]:
        source, target = vendor_dir / spec, site_root / SITE_VENDOR / spec
        if spec in unavailable:
            continue
        if (target / STAMP).is_file() and (target / STAMP).read_text() == (source / STAMP).read_text():
            continue
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
    return sorted(unavailable)


def make_offline(site_root: Path, vendor_dir: Path | None = VENDOR_DIR, manifest_path: Path = MANIFEST) -> str | None:
    """Point every page of the site at local copies of its assets; None when no page loads anything remote,
    else a note saying what is still remote and how to fix it."""
    site_root = Path(site_root)
    manifest = load_manifest(manifest_path)
    unavailable = _copy_assets(site_root, Path(vendor_dir), manifest) if vendor_dir else list(manifest["packages"])
    site = _Site(site_root, {url: (SITE_VENDOR / path).as_posix() for url, path in manifest["urls"].items()})
    remote: set[str] = set()
    for page in site_root.rglob("*.html"):
        site.rewrite(page)
        remote.update(remote_assets(page.read_text(encoding="utf-8")))
    if not remote:
        return None
    if unavailable:
        return (f"Data Docs still load {len(remote)} files from CDNs, so they will not render offline: the pinned "
                f"assets are not fetched ({', '.join(unavailable)}). Run `make venv` or `{FETCH_COMMAND}`; "
                f"the next Data Docs build rewrites every page.")
    return (f"Data Docs load files that {manifest_path.name} does not pin ({', '.join(sorted(remote))}): "
            f"add them to {manifest_path} so the docs render offline.")


# --- building the site (GX imported by the callers, which already hold a context) ---

def configure_site(context: object) -> None:
    """Give the context the site configuration above (saved with the context's other variables)."""
    context.variables.data_docs_sites = {SITE_NAME: site_config()}


def site_index(context: object) -> Path | None:
    urls = context.get_docs_sites_urls(site_name=SITE_NAME, only_if_exists=False)
    url = urls[0]["site_url"] if urls else None
    return Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path)) if url else None


def strip_newsletter(page: Path) -> bool:
    """Take GX's newsletter footer out of a built page; True if it was there."""
    html = page.read_text(encoding="utf-8")
    stripped = _NEWSLETTER.sub("", html)
    if stripped != html:
        page.write_text(stripped, encoding="utf-8")
    return stripped != html


def build_site(context: object, resource_identifiers: list, vendor_dir: Path | None = VENDOR_DIR
               ) -> tuple[Path | None, str | None]:
    """Build the pages of these resources and the index, take GX's newsletter footer out of them, then make the
    site offline-ready: (index, note)."""
    context.build_data_docs(site_names=[SITE_NAME], resource_identifiers=resource_identifiers)
    index = site_index(context)
    if index is None:
        return None, "Data Docs: the context has no local site"
    for page in index.parent.rglob("*.html"):
        strip_newsletter(page)
    try:
        return index, make_offline(index.parent, vendor_dir)
    except OSError as exc:  # the pages are built; only their local assets are missing
        return index, f"Data Docs could not copy their assets into {index.parent} ({exc}): they need a network"


def _refile(context: object, key: object, name: str | None, batch_id: str | None,
            data_asset: str | None = None) -> object:
    """Store a validation result again under this run name and batch id (GX's own batch id, `<datasource>-<asset>`,
    is the same for every file of a kind), optionally saying which file it checked; return its new key."""
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import ValidationResultIdentifier

    store = context.validation_results_store
    result = store.get(key)
    run_id = RunIdentifier(run_name=name, run_time=key.run_id.run_time)
    new = ValidationResultIdentifier(key.expectation_suite_identifier, run_id, batch_id or key.batch_identifier)
    result.meta["run_id"] = run_id
    if data_asset:  # GX leaves a dataframe's asset unnamed on the page
        result.meta["batch_spec"] = dict(result.meta.get("batch_spec") or {}) | {"data_asset_name": data_asset}
    store.set(new, result)
    if new != key:
        store.remove_key(key)  # the next index build drops its page
    return new


def publish_validation(context: object, key: object, data_asset: str, batch_id: str | None = None,
                       vendor_dir: Path | None = VENDOR_DIR) -> tuple[object, Path | None, str | None]:
    """File a checkpoint's result under the batch and file it checked, then build its page: (key, index, note)."""
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    new = _refile(context, key, key.run_id.run_name, batch_id, data_asset)
    suite = ExpectationSuiteIdentifier(name=key.expectation_suite_identifier.name)
    index, note = build_site(context, [new, suite], vendor_dir)
    _prune(context, key, index)
    return new, index, note


def rename_validation(project_root: Path, key: tuple[str, ...], batch_id: str, source: str | None,
                      vendor_dir: Path | None = VENDOR_DIR) -> tuple[tuple[str, ...], str | None]:
    """Re-file a stored validation under another batch id and rebuild the site: (its new key, note).

    A batch's warehouse id exists only once the batch is stored, after its validation ran under a stand-in."""
    import great_expectations as gx
    from great_expectations.data_context.types.resource_identifiers import ValidationResultIdentifier

    old = ValidationResultIdentifier.from_tuple(key)
    if old.batch_identifier == batch_id:
        return key, None
    context = gx.get_context(mode="file", project_root_dir=str(project_root))
    new = _refile(context, old, run_name(batch_id, source), batch_id)
    index, note = build_site(context, [new], vendor_dir)
    _prune(context, old, index)
    return new.to_tuple(), note


def _prune(context: object, old_key: object, index: Path | None) -> None:
    """Remove the folders a re-filed result leaves empty, in the results store and in the site."""
    *suite, run, run_time, _ = old_key.to_tuple()
    bases = [Path(context.root_directory) / "uncommitted" / "validations"] + ([index.parent / "validations"] if index else [])
    for folder in (base.joinpath(*suite, run, run_time) for base in bases):
        for empty in (folder, folder.parent):
            try:
                empty.rmdir()
            except OSError:  # not empty (another run of the same name), or already gone
                break
