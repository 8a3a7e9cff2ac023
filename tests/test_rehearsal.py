"""The rehearsal profile's stand-ins (swallowlib/rehearsal.py) are what they claim: a GQA Llama whose vocabulary
matches its tokenizer, Hub-layout datasets that `datasets` streams by config name with the hostile records in them,
and byte-identical files when built twice. Hermetic: synthetic text and a synthetic 32,000-piece tokenizer; the
real sources and Llama 2's tokenizer are only used by the ``network`` test."""

import collections
import random
from pathlib import Path

import pytest
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from swallowlib import rehearsal
from swallowlib.config import load_config
from swallowlib.tokenizer import base

JA = [
    "今日は朝から雨が降っていたので、私は家で本を読むことにした。",
    "このパッケージをインストールすると、設定ファイルが自動的に作られます。",
    "彼女はその話を聞いて、しばらく何も言わずに窓の外を見ていた。",
    "新しい版では、古い形式のデータも読み込めるようになりました。",
    "駅までの道はまだ暗く、冷たい風が吹いていた。",
    "問題が起きたときは、まずログを確認してから報告してください。",
    "私たちは山の上で昼ご飯を食べ、それから湖のほうへ下りていった。",
    "この関数は、与えられた文字列を小さな単位に分けて返します。",
]
EN = [
    "The package installs a small daemon that watches the configuration directory.",
    "She walked along the river until the lights of the town were far behind her.",
    "When the build fails, read the log from the first error, not the last one.",
    "Each chapter ends with a short list of exercises and a summary of the main ideas.",
    "The old bridge was closed for repairs during the whole of that summer.",
    "Options given on the command line override the values in the file.",
]
SIZES = rehearsal.Sizes(fineweb_docs=8, fineweb_test_docs=2, wikipedia_docs=3, refinedweb_docs=5)
DATASETS = {  # directory -> (config, text column, columns the Hub repository has)
    "fineweb-2": ("jpn_Jpan", "text", {"text", "id", "dump", "url", "date", "language", "language_score"}),
    "wikipedia": ("20231101.ja", "text", {"id", "url", "title", "text"}),
    "falcon-refinedweb": (None, "content", {"content", "url", "timestamp", "dump", "segment", "image_urls"}),
}


def _texts(seed: int = 0) -> dict[str, list[str]]:
    rng = random.Random(seed)

    def docs(sentences: list[str], sep: str) -> list[str]:
        return ["\n\n".join(sep.join(rng.sample(sentences, rng.randint(3, 5))) for _ in range(rng.randint(2, 4)))
                for _ in range(30)]  # fmt: skip

    return {"ja": docs(JA, ""), "en": docs(EN, " ")}


def _tokenizer_32k(dest: Path) -> Path:
    """A Llama-2-like SentencePiece (BPE, byte fallback) padded with made-up pieces to Llama 2's 32,000."""
    small = base.train_sentencepiece([t for ts in _texts().values() for t in ts], 600, dest / "small", seed=0)
    proto = sp_pb2.ModelProto()
    proto.ParseFromString(small.read_bytes())
    low = min(p.score for p in proto.pieces)
    for i in range(32_000 - len(proto.pieces)):
        p = proto.pieces.add()
        p.piece, p.score = f"▁w{i:05d}", low - 1 - i
    proto.trainer_spec.vocab_size = len(proto.pieces)
    out = dest / "llama2-like.model"
    out.write_bytes(proto.SerializeToString())
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("rehearsal")
    tok = _tokenizer_32k(tmp)
    a = rehearsal.build(tmp / "a", texts=_texts(), tokenizer_model=tok, sizes=SIZES)
    b = rehearsal.build(tmp / "b", texts=_texts(), tokenizer_model=tok, sizes=SIZES)
    return a, b


def test_model_is_a_gqa_llama_matching_its_tokenizer(built):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = built[0] / "model"
    model = AutoModelForCausalLM.from_pretrained(d, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
    c = model.config
    assert c.model_type == "llama" and c.num_key_value_heads < c.num_attention_heads
    assert c.vocab_size == len(tok) == 32_000 == model.get_input_embeddings().weight.shape[0]
    assert not c.tie_word_embeddings and c.max_position_embeddings == 2048
    ids = tok("The package installs a daemon. 設定ファイルを読み込む。", return_tensors="pt")["input_ids"]
    assert ids[0, 0] == tok.bos_token_id == c.bos_token_id
    with torch.no_grad():
        assert model(ids).logits.shape == (1, ids.shape[1], 32_000)


@pytest.mark.parametrize("name", DATASETS)
def test_datasets_stream_like_the_hub_with_hostile_records(built, name):
    import datasets

    config, field, columns = DATASETS[name]
    rows = list(datasets.load_dataset(str(built[0] / name), config, split="train", streaming=True))
    assert columns <= set(rows[0]) and ("id" in rows[0]) == (name != "falcon-refinedweb")
    texts = [r[field] for r in rows]
    strings = [t for t in texts if isinstance(t, str)]
    assert None in texts and "" in texts and any(t and not t.strip() for t in strings)
    assert any("👨‍👩‍👧" in t for t in strings) and any("\x00" in t for t in strings)
    assert any(len(t.encode()) >= 1 << 20 and "\n" not in t for t in strings)
    assert max(collections.Counter(t for t in strings if t.strip()).values()) >= 2  # an exact duplicate
    near = [(a, b) for a in strings for b in strings if a != b and len(a) == len(b) > 100
            and sum(x != y for x, y in zip(a, b, strict=True)) <= 3]  # fmt: skip
    assert near and any(b.startswith(a + "\n\n") and len(b) - len(a) < 60 for a in strings for b in strings if a)


def test_every_hostile_kind_is_built():
    pool = [p for t in _texts()["ja"] for p in t.split("\n\n")]
    kinds = [k for k, _ in rehearsal.hostile(pool, "ja", random.Random(0), 1000)]
    assert set(kinds) == set(rehearsal.HOSTILE) and kinds.count("exact-dup") == 2


def test_read_hub_streams_a_local_directory(built):
    from swallowlib.corpus import extract

    stats = extract.ExtractStats()
    docs = list(extract.read_hub(str(built[0] / "falcon-refinedweb"), None, "train", "content", "en", "rw",
                                 stats=stats))  # fmt: skip
    assert docs and all(d.lang == "en" and d.id.startswith("rw/en/") for d in docs)
    assert stats.as_dict()  # the null record is counted, not fatal
    capped = list(extract.read_hub(str(built[0] / "fineweb-2"), "jpn_Jpan", "train", "text", "ja", "fw", max_docs=5))
    assert len(capped) == 5 and all(d.id.startswith("fw/ja/<urn:uuid:") for d in capped)


def test_build_is_deterministic(built):
    a, b = built
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / "manifest.json").is_file() and not (a.parent / "a.tmp").exists()


def test_profile_names_the_standins_where_tinyllama_names_the_hub():
    r, t = load_config("rehearsal"), load_config("tinyllama-1.1b")
    root = Path(__file__).resolve().parent.parent
    assert r.train.model.pretrained == str(root / "data/rehearsal/model") == r.train.runs["cpt-nve"].init
    assert [Path(h.dataset).name for h in r.corpus.hub] == ["fineweb-2", "wikipedia", "falcon-refinedweb"]
    assert [(h.name, h.config, h.text_field) for h in r.corpus.hub] == [(h.name, h.config, h.text_field)
                                                                          for h in t.corpus.hub]  # fmt: skip
    assert set(r.train.runs) == set(t.train.runs) and r.tokenizer.base == t.tokenizer.base == "llama2"
    assert r.offline is t.offline is False and r.train.fsdp and r.train.processes == 2


@pytest.mark.network
def test_real_standins(tmp_path):
    """The real build: Llama 2's tokenizer (the llama-cpp-python sdist) and the Debian manuals."""
    out = rehearsal.build(tmp_path / "r", sizes=SIZES)
    assert (out / "model" / "tokenizer.model").stat().st_size == 499_723
