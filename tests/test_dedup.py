"""Tests for swallowlib.corpus.dedup: character shingling, signature equivalence with datatrove, and the four
datatrove MinHash stages end to end on a local executor."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest
from datatrove.pipeline.dedup.minhash import MinhashDedupSignature

from swallowlib.config import DedupConfig, ExecutorConfig
from swallowlib.corpus.dedup import CharMinhashDedupSignature, CharTokenizer, minhash_config, run_dedup

KANA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん"
KANJI = "日本語文書試験機械学習言語模型計算処理情報技術開発環境設定"


def make_doc(seed: int, n: int = 1200) -> str:
    """Random Japanese-looking text: distinct seeds share almost no character 5-grams."""
    rng = random.Random(seed)
    chars = KANA + KANJI
    words = ["".join(rng.choice(chars) for _ in range(rng.randint(1, 4))) for _ in range(n // 3)]
    text = "".join(w + ("。\n" if rng.random() < 0.08 else "") for w in words)
    return text[:n]


def edit(text: str, k: int, seed: int) -> str:
    """``k`` single-character substitutions."""
    rng = random.Random(seed)
    t = list(text)
    for i in rng.sample(range(len(t)), k):
        t[i] = "ゑ" if t[i] != "ゑ" else "ゐ"
    return "".join(t)


def write_shard(path: Path, docs: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for i, t in docs:
            fh.write(json.dumps({"id": i, "text": t, "metadata": {"group": i}}, ensure_ascii=False) + "\n")


def read_ids(folder: Path) -> list[str]:
    return sorted(json.loads(line)["id"] for f in folder.glob("*.jsonl.gz") for line in gzip.open(f))


def sig_step(tmp_path: Path) -> CharMinhashDedupSignature:
    return CharMinhashDedupSignature(str(tmp_path / "sigs"), minhash_config(DedupConfig()))


def test_char_tokenizer() -> None:
    assert CharTokenizer().word_tokenize("ab c\n日本") == ["a", "b", "c", "日", "本"]


def test_character_shingles(tmp_path: Path) -> None:
    s = sig_step(tmp_path)
    assert s.get_shingles("abcdefg").shape == (3, 1)  # abcde, bcdef, cdefg
    # whitespace, case and line wrapping do not change the shingles; digits are normalised to 0
    assert np.array_equal(s.get_shingles("abcdefg"), s.get_shingles("AB cd\nefg"))
    assert np.array_equal(s.get_shingles("版1234です"), s.get_shingles("版9876です"))
    assert not np.array_equal(s.get_shingles("がぎぐげご"), s.get_shingles("かきくけこ"))  # dakuten kept
    assert s.get_shingles("abcd").size == 0
    assert s.get_shingles("abcabcabc").shape[0] == 3  # repeated shingles counted once


@pytest.mark.parametrize("n", [1, 3, 300, 1000])
def test_signature_equals_datatrove(tmp_path: Path, n: int) -> None:
    s = sig_step(tmp_path)
    rng = np.random.default_rng(n)
    shingles = rng.integers(0, 2**64 - 1, size=(n, 1), dtype=np.uint64)
    ours = s.get_signature(shingles)
    theirs = MinhashDedupSignature.get_signature(s, shingles)
    assert ours == theirs
    assert len(ours) == 40 and all(len(b) == 20 for b in ours)


def test_run_dedup_removes_near_duplicates(tmp_path: Path) -> None:
    a, b, c, d = (make_doc(i) for i in range(4))
    half = make_doc(10)
    write_shard(
        tmp_path / "in" / "00000.jsonl.gz",
        [("a", a), ("b", b), ("a-near", edit(a, 6, 1)), ("c", c), ("tiny", "短い")],
    )
    write_shard(
        tmp_path / "in" / "00001.jsonl.gz",
        [("b-copy", b), ("d", d), ("c-near", edit(c, 3, 2)), ("d-half", d[:600] + half[600:])],
    )
    ex = ExecutorConfig(workers=1, tasks=2)
    res = run_dedup(tmp_path / "in", tmp_path / "out", tmp_path / "work", DedupConfig(), ex, tmp_path / "removed")
    kept = read_ids(tmp_path / "out")
    removed = read_ids(tmp_path / "removed")
    assert res["docs_in"] == 9 and res["docs_removed"] == 3 and res["docs_out"] == 6
    assert sorted(kept + removed) == sorted(["a", "b", "a-near", "c", "tiny", "b-copy", "d", "c-near", "d-half"])
    # one document of each near-duplicate cluster survives; distinct documents (and a half-rewritten one) stay
    for cluster in ({"a", "a-near"}, {"b", "b-copy"}, {"c", "c-near"}):
        assert len(cluster & set(kept)) == 1
    assert {"d", "d-half", "tiny"} <= set(kept)
    texts = {i: t for i, t in [("a", a), ("b", b), ("c", c), ("a-near", edit(a, 6, 1)), ("c-near", edit(c, 3, 2))]}
    texts["b-copy"] = b
    assert res["chars_removed"] == sum(len(texts[i]) for i in removed)
    assert res["chars_in"] == res["chars_out"] + res["chars_removed"]
    assert len(res["examples"]) == 3 and all(len(e["text"]) <= 300 for e in res["examples"])
    # deterministic: a second run into fresh folders keeps the same documents
    again = run_dedup(tmp_path / "in", tmp_path / "out2", tmp_path / "work2", DedupConfig(), ex, None)
    assert read_ids(tmp_path / "out2") == kept and again["docs_removed"] == 3
    # resumable: a rerun over the same folders finds every task complete, runs nothing and reports the same
    rerun = run_dedup(tmp_path / "in", tmp_path / "out", tmp_path / "work", DedupConfig(), ex, tmp_path / "removed")
    assert rerun == res


def test_run_dedup_disabled_copies_through(tmp_path: Path) -> None:
    write_shard(tmp_path / "in" / "00000.jsonl.gz", [("a", make_doc(1)), ("a2", make_doc(1))])
    (tmp_path / "in" / "00000.jsonl.gz").open("ab").write(gzip.compress(b"{broken\n"))
    res = run_dedup(
        tmp_path / "in", tmp_path / "out", tmp_path / "w", DedupConfig(enabled=False), ExecutorConfig(workers=1), None
    )
    assert read_ids(tmp_path / "out") == ["a", "a2"]
    assert res["docs_removed"] == 0 and res["docs_out"] == 2 and res["corrupt_lines"] == 1
