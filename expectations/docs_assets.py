"""The browser assets Data Docs need, fetched from pinned npm packages so that the docs render with no network.

GX's page templates load Bootstrap, jQuery, bootstrap-table, Font Awesome and Vega from CDNs; on an air-gapped
network the index's list stays empty and the status icons are missing. docs_assets.json pins each file to an npm
package version and its registry integrity (sha512). `python -m expectations.docs_assets` (run by `make venv`)
downloads each tarball once, checks it against that integrity and unpacks only the listed files into
expectations/vendor/ (git-ignored). It does nothing when they are already there and verified. expectations/data_docs.py
copies them into each Data Docs site.

Standard library only: it runs while the virtual environment is being built.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

MANIFEST = Path(__file__).with_name("docs_assets.json")
VENDOR_DIR = Path(__file__).with_name("vendor")
NPM_REGISTRY = "https://registry.npmjs.org/"
STAMP = ".integrity.json"  # per package: the tarball's integrity and each unpacked file's sha256
FETCH_COMMAND = ".venv/bin/python -m expectations.docs_assets"


def load_manifest(path: Path = MANIFEST) -> dict:
    return json.loads(Path(path).read_text())


def _wanted(member: str, files: list[str]) -> bool:
    return any(member == f or (f.endswith("/") and member.startswith(f)) for f in files)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def problems(vendor_dir: Path = VENDOR_DIR, manifest: dict | None = None, check_hashes: bool = True) -> dict[str, str]:
    """Each package that is not unpacked and intact, with why (empty: every asset is in place)."""
    manifest = manifest or load_manifest()
    found = {}
    for spec, package in manifest["packages"].items():
        stamp_path = Path(vendor_dir) / spec / STAMP
        if not stamp_path.is_file():
            found[spec] = "not fetched"
            continue
        stamp = json.loads(stamp_path.read_text())
        if stamp.get("integrity") != package["integrity"]:
            found[spec] = "fetched for another pin"
            continue
        bad = [name for name, digest in stamp["files"].items()
               if not (stamp_path.parent / name).is_file()
               or (check_hashes and _sha256(stamp_path.parent / name) != digest)]
        if bad or not all(any(_wanted(name, [f]) for name in stamp["files"]) for f in package["files"]):
            found[spec] = f"files missing or changed: {', '.join(bad) or 'a listed file'}"
    return found


def _download(url: str, attempts: int = 3) -> bytes:
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 - an https registry URL
                return response.read()
        except (urllib.error.URLError, TimeoutError):
            if attempt == attempts:
                raise
            time.sleep(2 * attempt)
    raise AssertionError("unreachable")


def _check_integrity(data: bytes, integrity: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise ValueError(f"integrity mismatch: the registry sent {algorithm}-{actual}, the manifest pins {integrity}")


def _unpack(data: bytes, files: list[str], target: Path) -> dict[str, str]:
    """Write the listed files (paths inside the package; a trailing / takes a folder) under target."""
    written = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            # npm tarballs hold one top folder (usually package/); paths are taken below it
            inner = member.name.partition("/")[2]
            if not member.isfile() or not _wanted(inner, files):
                continue
            if inner.startswith("/") or ".." in Path(inner).parts:
                raise ValueError(f"unsafe path in tarball: {member.name}")
            path = target / inner
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tar.extractfile(member).read())
            written[inner] = _sha256(path)
    missing = [f for f in files if not any(_wanted(name, [f]) for name in written)]
    if missing:
        raise ValueError(f"not in the tarball: {', '.join(missing)}")
    return written


def fetch(vendor_dir: Path = VENDOR_DIR, manifest: dict | None = None, registry: str | None = None,
          report: Callable[[str], None] = print) -> list[str]:
    """Fetch and unpack every package that is not already in place; return those fetched."""
    manifest = manifest or load_manifest()
    # npm's own setting for a mirror, which npm reads in either case
    registry = registry or next((v for k, v in os.environ.items() if k.lower() == "npm_config_registry"), NPM_REGISTRY)
    vendor_dir = Path(vendor_dir)
    fetched = []
    for spec in problems(vendor_dir, manifest):
        package = manifest["packages"][spec]
        url = registry.rstrip("/") + "/" + package["tarball"].removeprefix(NPM_REGISTRY)
        data = _download(url)
        _check_integrity(data, package["integrity"])
        final = vendor_dir / spec
        partial = final.with_name(final.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        written = _unpack(data, package["files"], partial)
        (partial / STAMP).write_text(json.dumps({"integrity": package["integrity"], "files": written}, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        fetched.append(spec)
        report(f"docs assets: {spec} ({len(data) / 1e6:.1f} MB, {len(written)} files, integrity checked)")
    return fetched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch the pinned Data Docs assets (idempotent).")
    parser.add_argument("--check", action="store_true", help="only say what is missing (exit 1 if anything is)")
    parser.add_argument("--vendor-dir", type=Path, default=VENDOR_DIR)
    args = parser.parse_args(argv)
    if args.check:
        found = problems(args.vendor_dir)
        for spec, why in found.items():
            print(f"{spec}: {why}")
        return 1 if found else 0
    try:
        fetched = fetch(args.vendor_dir)
    except (OSError, ValueError, tarfile.TarError) as exc:
        print(f"docs assets: could not fetch ({exc}); Data Docs will still build, but need a network to render",
              file=sys.stderr)
        return 1
    if not fetched:
        print(f"docs assets: all {len(load_manifest()['packages'])} packages in place under {args.vendor_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
