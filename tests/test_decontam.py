"""Tests for swallowlib.corpus.decontam: exact and near contamination of eval texts by training text."""

from __future__ import annotations

import random

import numpy as np
import pytest

from swallowlib.config import DecontamConfig
from swallowlib.corpus import decontam as D
from swallowlib.corpus.decontam import find_contamination, normalise

CFG = DecontamConfig()  # min_chars 20, Jaccard 0.7

LONG_SENT = "新しいプロセスを作成するときには、親プロセスのメモリ空間の写しが子プロセスに渡され、実行が続けられます。"
PARA = (
    "この章ではプロセスの扱いを説明する。"
    + LONG_SENT
    + "詳しくは関連する man ページを参照してほしい。\n次の行には別の説明が続く。"
)


def test_exact_containment_inside_a_longer_paragraph() -> None:
    assert find_contamination([LONG_SENT], [PARA], CFG) == ["exact"]
    # also when the eval text is longer and only one of its sentences (>= min_chars) is in training
    assert find_contamination(["まったく新しい前置きの文をここに書きます。" + LONG_SENT], [PARA], CFG) == ["exact"]


def test_one_character_edit_of_a_long_sentence_is_near() -> None:
    edited = LONG_SENT.replace("写し", "写真")
    assert edited != LONG_SENT
    # as its own training line, and as one sentence inside a longer paragraph
    assert find_contamination([edited], ["前の行\n" + LONG_SENT + "\n後の行"], CFG) == ["near"]
    assert find_contamination([edited], [PARA], CFG) == ["near"]


def test_unrelated_text_is_clean() -> None:
    evals = ["猫は日当たりのよい窓辺で一日中眠っていることが多い動物です。", "The cat sleeps by the window all day."]
    assert find_contamination(evals, [PARA, "A completely different English paragraph about dogs."], CFG) == [
        None,
        None,
    ]


def test_twenty_character_eval_text_inside_training_is_caught() -> None:
    ev = LONG_SENT[5:25]
    assert len(ev) == 20
    assert find_contamination([ev], [PARA], CFG) == ["exact"]


def test_short_eval_text_matches_only_whole_units() -> None:
    ev = LONG_SENT[5:24]  # 19 characters: below min_chars
    assert find_contamination([ev], [PARA], CFG) == [None]
    assert find_contamination([ev], ["見出し\n" + ev + "\n本文"], CFG) == ["exact"]  # a whole training line
    assert find_contamination(["はい"], ["はいはいはい"], CFG) == [None]


def test_normalisation_nfkc_and_whitespace() -> None:
    train = "Ｔｈｅ ｑｕｉｃｋ ｂｒｏｗｎ ｆｏｘ\n   jumps over the lazy dog, every single day."
    assert normalise(train) == "The quick brown fox jumps over the lazy dog, every single day."
    assert find_contamination(["quick brown fox jumps  over the lazy dog"], [train], CFG) == ["exact"]


def test_near_threshold() -> None:
    rng = random.Random(0)
    alphabet = "abcdefghijklmnopqrstuvwxyz "
    base = "".join(rng.choice(alphabet) for _ in range(400))
    other = "".join(rng.choice(alphabet) for _ in range(400))
    half = base[:200] + other[200:]  # Jaccard ≈ 1/3: not near
    few = base[:150] + "#" + base[151:300] + "#" + base[301:]  # two substitutions: Jaccard ≈ 0.95
    labels = find_contamination([half, few], [base], DecontamConfig(min_chars=1000))  # exact check out of the way
    assert labels == [None, "near"]
    assert find_contamination([few], [base], DecontamConfig(min_chars=1000, near_dup_jaccard=0.99)) == [None]


def test_bad_and_empty_inputs() -> None:
    gen = (t for t in [PARA, None, 42, ""])  # a generator, consumed once; non-strings skipped
    assert find_contamination([LONG_SENT, "", "   "], gen, CFG) == ["exact", None, None]
    assert find_contamination([], [PARA], CFG) == []
    assert find_contamination([LONG_SENT], [], CFG) == [None]


def test_oph_signatures() -> None:
    rng = np.random.default_rng(0)
    a = np.unique(rng.integers(0, 2**63, size=300, dtype=np.uint64))
    b = np.unique(np.concatenate([a[:270], rng.integers(0, 2**63, size=30, dtype=np.uint64)]))
    c = rng.integers(0, 2**63, size=300, dtype=np.uint64)
    hv = np.concatenate([a, a[::-1], b, c, a[:3]])
    owner = np.repeat(np.arange(5), [len(a), len(a), len(b), len(c), 3])
    sig = D._oph_signatures(hv, owner, 5)
    assert sig.shape == (5, D.BINS) and (sig != D._EMPTY).all()  # densified: no empty bins left
    assert (sig[0] == sig[1]).all()  # same set, any order
    true_j = len(np.intersect1d(a, b)) / len(np.union1d(a, b))
    assert abs((sig[0] == sig[2]).mean() - true_j) < 0.15  # bins agree with probability ≈ J
    assert (sig[0] == sig[3]).mean() < 0.1
    keys = D._band_keys(sig)
    assert keys.shape == (5, D.BINS // D.ROWS) and (keys[0] == keys[1]).all()


def test_many_eval_texts_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D, "CHUNK_CHARS", 20_000)  # force many exact and near batches
    monkeypatch.setattr(D, "NEAR_CHUNK_CHARS", 20_000)
    rng = random.Random(1)
    kana = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん"

    def sentence() -> str:
        return "".join(rng.choice(kana) for _ in range(rng.randint(30, 90))) + "。"

    train = ["\n".join(sentence() for _ in range(20)) for _ in range(300)]  # ~330k characters
    evals, expect = [], []
    for _ in range(60):
        t = rng.choice(train)
        i = rng.randrange(len(t) - 60)
        evals.append(t[i : i + rng.randint(20, 60)])
        expect.append("exact")
    for _ in range(60):
        s = max(rng.choice(train).split("\n"), key=len)  # >= 60 characters: one edit keeps Jaccard > 0.8
        j = rng.randrange(10, len(s) - 10)
        evals.append(s[:j] + "ゑ" + s[j + 1 :])
        expect.append("near")
    for _ in range(60):
        evals.append(sentence())
        expect.append(None)
    assert find_contamination(evals, iter(train), CFG) == expect
