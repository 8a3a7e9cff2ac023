"""Known-answer tests for swallowlib.tokenizer.metrics (tiny SentencePiece / tokenizers models built here).

Run: .venv/bin/pytest tests/test_tokenizer_metrics.py -q
"""

from __future__ import annotations

import io
import math

import pytest

spm = pytest.importorskip("sentencepiece")

from swallowlib.tokenizer import metrics as M  # noqa: E402

# 3 control + 256 byte pieces + 41 learned: every kana/kanji of the training text is a piece, 猫 and 無 are not.
TRAIN = ["the cat sat on the mat.", "ねこがねこをみた。", "吾輩は犬である。名前はまだない。"] * 20
NEKO = "吾輩は猫である。名前はまだ無い。"


def _train(sentences: list[str], vocab_size: int) -> bytes:
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=buf, model_type="bpe", vocab_size=vocab_size,
        byte_fallback=True, character_coverage=1.0, split_digits=True, add_dummy_prefix=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity", allow_whitespace_only_pieces=True,
        minloglevel=2,
    )
    return buf.getvalue()


@pytest.fixture(scope="module")
def enc() -> M.PieceEncoder:
    return M.spm_encoder(_train(TRAIN, 300), name="tiny")


@pytest.fixture(scope="module")
def enc_small() -> M.PieceEncoder:
    # Fewer merges: a second tokenizer to compare against the baseline.
    return M.spm_encoder(_train(TRAIN, 292), name="small")


def test_pieces_exact(enc):
    assert enc(["the cat"]) == [["▁the", "▁c", "at"]]
    m = M.efficiency(["the cat"], enc, lang="en")
    # chars = len(input), the dummy prefix merged into ▁the is not a character
    assert (m["chars"], m["bytes"], m["tokens"], m["words"], m["byte_tokens"]) == (7, 7, 3, 2, 0)
    assert m["chars_per_token"] == pytest.approx(7 / 3)
    assert m["tokens_per_word"] == pytest.approx(1.5)
    assert m["byte_share"] == 0.0


def test_byte_fallback_share(enc):
    # 猫 (U+732B, UTF-8 E7 8C AB) never occurs in TRAIN: 3 byte pieces; the dummy prefix is a token of its own.
    assert enc(["ねこ猫"]) == [["▁", "ねこ", "<0xE7>", "<0x8C>", "<0xAB>"]]
    m = M.efficiency(["ねこ猫"], enc, lang="ja")
    assert (m["chars"], m["bytes"], m["tokens"], m["byte_tokens"]) == (3, 9, 5, 3)
    assert m["byte_share"] == pytest.approx(3 / 5)
    assert m["bytes_per_token"] == pytest.approx(9 / 5)
    assert M.is_byte_piece("<0xE7>") and not M.is_byte_piece("<0xE7") and not M.is_byte_piece("▁")


def test_fertility_mecab(enc):
    assert M.count_words([NEKO], "ja") == 11  # 吾輩/は/猫/で/ある/。/名前/は/まだ/無い/。
    m = M.efficiency([NEKO], enc, lang="ja")
    # ▁吾 輩 は [猫: 3 bytes] で あ る 。 名 前 は ま だ [無: 3 bytes] い 。
    assert (m["tokens"], m["byte_tokens"], m["words"], m["chars"], m["bytes"]) == (20, 6, 11, 16, 48)
    assert m["tokens_per_word"] == pytest.approx(20 / 11)
    assert m["chars_per_token"] == pytest.approx(0.8)
    assert m["byte_share"] == pytest.approx(0.3)


def test_word_counts_whitespace():
    assert M.count_words(["the cat  sat\n", "\t", ""], "en") == 3
    # unidic emits U+3000 as a token; it is whitespace, not a word
    assert M.count_words(["猫\u3000犬", "\n\n", ""], "ja") == 2
    with pytest.raises(ValueError, match="lang"):
        M.count_words(["x"], "fr")


def test_counts_add_up_over_texts(enc):
    texts = ["the cat", "ねこ猫", NEKO, " the\n", "cat\tmat  "]
    whole = M.efficiency(texts, enc, lang="ja")
    parts = [M.efficiency([t], enc, lang="ja") for t in texts]
    for k in ("chars", "bytes", "tokens", "byte_tokens", "words"):
        assert whole[k] == sum(p[k] for p in parts), k
    assert whole["chars"] == sum(map(len, texts))


def test_bad_input(enc):
    with pytest.raises(ValueError, match="empty"):
        M.efficiency([], enc, lang="ja")
    with pytest.raises(ValueError, match="no tokens"):
        M.efficiency(["", ""], enc, lang="ja")
    with pytest.raises(ValueError, match="lang"):
        M.efficiency(["x"], enc, lang="xx")
    with pytest.raises(TypeError):
        M.efficiency("the cat", enc, lang="en")
    with pytest.raises(FileNotFoundError):
        M.spm_encoder("/nonexistent/tokenizer.model")


def test_table_ratios(enc, enc_small):
    texts = {"ja": [NEKO, "ねこがねこをみた。"], "en": ["the cat sat on the mat.", "the mat"]}
    lang = {"ja": "ja", "en": "en"}
    df = M.efficiency_table(texts, {"tiny": enc, "small": enc_small, "tiny2": enc}, lang, baseline="tiny")
    assert len(df) == 6 and set(df["domain"]) == {"ja", "en"}
    base = df[df.tokenizer == "tiny"]
    for k in ("tokens", "chars_per_token", "bytes_per_token", "tokens_per_word"):
        assert (base[f"{k}_ratio"] == 1.0).all(), k
    assert (df[df.tokenizer == "tiny2"]["tokens_ratio"] == 1.0).all()
    # the baseline has byte pieces on ja (ratio 1.0) and none on en (ratio undefined)
    assert base.set_index("domain").loc["ja", "byte_share_ratio"] == 1.0
    assert math.isnan(base.set_index("domain").loc["en", "byte_share_ratio"])
    for dom in ("ja", "en"):
        b = M.efficiency(texts[dom], enc, lang=dom)
        s = M.efficiency(texts[dom], enc_small, lang=dom)
        row = df[(df.tokenizer == "small") & (df.domain == dom)].iloc[0]
        assert row["tokens"] == s["tokens"] and row["words"] == b["words"]
        assert row["tokens_ratio"] == pytest.approx(s["tokens"] / b["tokens"])
        assert row["chars_per_token_ratio"] == pytest.approx(b["tokens"] / s["tokens"])
    assert (df[df.tokenizer == "small"]["tokens_ratio"] > 1.0).all()  # fewer merges, more tokens
    with pytest.raises(ValueError, match="baseline"):
        M.efficiency_table(texts, {"tiny": enc}, lang, baseline="llama2")


def test_piece_spans(enc):
    spans = M.piece_spans("ねこ猫", enc)
    assert spans == [
        ("", "▁", False), ("ねこ", "ねこ", False),
        ("", "<0xE7>", True), ("", "<0x8C>", True), ("猫", "<0xAB>", True),
    ]
    for text in ["the cat", NEKO, " the\n", "cat\tmat  ", "\n\nねこ"]:
        assert "".join(s for s, _, _ in M.piece_spans(text, enc)) == text, repr(text)


def test_inspect_html(enc, enc_small):
    page = M.inspect_html("ねこ猫 <b>", {"tiny": enc, "small": enc_small})
    assert "<b>tiny</b>" in page and "<b>small</b>" in page
    assert '">&lt;<sub>3C</sub>' in page and page.count("<b>") == 2  # the input is escaped, never raw HTML
    for e in (enc, enc_small):
        pieces = e(["ねこ猫 <b>"])[0]
        nbyte = sum(map(M.is_byte_piece, pieces))
        assert f"{len(pieces)} tokens, {nbyte} byte-fallback" in page
    assert page.count("dashed") >= 6 and "<sub>E7</sub>" in page
    assert page.count('title="&lt;0xE7&gt;"') == 2  # one byte span per tokenizer
    assert '<span title="▁" style="background:#dbeafe;padding:1px 2px;margin:0 1px;border-radius:3px;' \
        'white-space:pre-wrap">\u2423</span>' in page  # the dummy-prefix token is shown, as ␣


def _hf_bytefallback():
    """A hand-built Llama-style tokenizers BPE (byte fallback, ▁ normaliser) with a known vocabulary."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, normalizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"<0x{b:02X}>": 3 + b for b in range(256)})
    for p in ["▁", "a", "b", "▁a", "ab", "▁ab"]:
        vocab[p] = len(vocab)
    merges = [("▁", "a"), ("a", "b"), ("▁a", "b")]
    tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    return tok


def test_hf_encoder_byte_fallback():
    enc = M.hf_encoder(_hf_bytefallback(), name="hf")
    assert enc(["ab 猫"]) == [["▁ab", "▁", "<0xE7>", "<0x8C>", "<0xAB>"]]
    m = M.efficiency(["ab 猫"], enc, lang="en")
    assert (m["tokens"], m["byte_tokens"], m["chars"], m["words"]) == (5, 3, 4, 2)
    assert "".join(s for s, _, _ in M.piece_spans("ab 猫", enc)) == "ab 猫"


def test_hf_encoder_bytelevel(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TRAIN, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(tmp_path / "bl")
    enc = M.hf_encoder(tmp_path / "bl")
    assert enc.info["kind"] == "hf-bytelevel"
    text = "the cat 猫\n"
    spans = M.piece_spans(text, enc)
    assert "".join(s for s, _, _ in spans) == text
    assert not any(b for _, _, b in spans)
    assert M.efficiency([text], enc, lang="en")["byte_share"] == 0.0
