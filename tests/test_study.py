"""The extended study (`make study`): its runs differ from their parents in exactly one thing, a continuation reads
on where its parent stopped, and the vocabulary variants are prefixes of stage 02's expansion that keep every
character and rebuild the expansion itself at x1."""

import dataclasses

import pytest
import sentencepiece as spm

from swallowlib import matrix, study
from swallowlib.config import ConfigError, load_config
from swallowlib.tokenizer import base, merge

EN = [
    "The kernel allocates memory for the new process and returns its identifier.",
    "Install the package with apt-get and restart the server before the upgrade.",
    "Each thread has its own stack, but all threads share the same address space.",
    "Print the version number and exit; see the manual page for more details.",
] * 20
JA = [
    "このプログラムはフリーソフトウェアです。再配布や変更ができます。",
    "ファイルが存在しない場合、コマンドは新しいファイルを作成します。",
    "カーネルは新しいプロセスのためにメモリを割り当て、その識別子を返します。",
    "設定ファイルを上書きするにはオプションを使います。詳しくはマニュアルを参照してください。",
    "関数は成功すると値を返し、失敗するとエラーコードを返します。",
] * 20


@pytest.fixture(scope="module")
def expansion(tmp_path_factory):
    """A tiny base, a Japanese tokenizer, and the naive merge of the two (stage 02's recipe, no coverage)."""
    d = tmp_path_factory.mktemp("study-tok")
    b = base.train_sentencepiece(EN, 400, d / "base", seed=0)
    ja = base.train_sentencepiece(JA, 480, d / "ja", normalization="identity", seed=0)
    merge.merge_models(b, ja, d / "expanded.model", pad_to=8)
    return b, d / "expanded.model", d


def _added(base_model, model):
    n = spm.SentencePieceProcessor(model_file=str(base_model)).get_piece_size()
    return [p.piece for p in merge.load_proto(model).pieces[n:] if p.type == merge.NORMAL]


def test_the_whole_prefix_is_the_expansion_byte_for_byte(expansion):
    b, exp, d = expansion
    n_multi = study.multi_char_pieces(b, exp)
    assert n_multi > 10
    study.truncated(b, exp, n_multi, d / "all.model", pad_to=8)
    assert (d / "all.model").read_bytes() == exp.read_bytes()


def test_a_prefix_keeps_every_character_and_the_first_multi_character_pieces(expansion):
    b, exp, d = expansion
    added = _added(b, exp)
    chars = [p for p in added if len(p) == 1]
    multi = [p for p in added if len(p) > 1]
    info = study.truncated(b, exp, 5, d / "five.model", pad_to=8)
    kept = _added(b, d / "five.model")
    assert [p for p in kept if len(p) == 1] == chars  # every character, in its order
    assert [p for p in kept if len(p) > 1] == multi[:5]  # the first five pieces the merge added, nothing else
    assert info["multi_char_pieces"] == 5 and info["characters"] == len(chars)
    assert info["final_size"] % 8 == 0
    study.truncated(b, exp, 0, d / "chars.model", pad_to=8)
    assert _added(b, d / "chars.model") == chars  # cpt-nve+chars: the characters alone


def test_fewer_pieces_make_japanese_longer_and_leave_english_alone(expansion):
    b, exp, d = expansion
    study.truncated(b, exp, 0, d / "c.model", pad_to=8)
    n_multi = study.multi_char_pieces(b, exp)
    study.truncated(b, exp, n_multi // 2, d / "half.model", pad_to=8)
    sp = {k: spm.SentencePieceProcessor(model_file=str(m))
          for k, m in {"base": b, "chars": d / "c.model", "half": d / "half.model", "all": exp}.items()}  # fmt: skip
    ja = [len(x) for x in (sp[k].encode(JA[:5]) for k in ("chars", "half", "all"))]
    totals = [sum(map(len, sp[k].encode(JA[:5]))) for k in ("base", "chars", "half", "all")]
    assert totals == sorted(totals, reverse=True) and totals[0] > totals[-1], (ja, totals)
    for line in EN[:4]:
        assert len({tuple(s.encode(line)) for s in sp.values()}) == 1


def test_study_runs_differ_from_their_parent_in_one_thing():
    cfg = load_config("tiny")
    runs, parents = matrix.study_runs(cfg), cfg.train.runs
    assert set(runs) >= {"cpt-ve-s1", "cpt-nve-s1", "cpt-ve-para-s1", "scratch-ve-s1", "cpt-nve+chars",
                         "cpt-ve-v2", "cpt-ve-long", "cpt-nve-long", "scratch-ve-total"}  # fmt: skip

    def diff(a, b):
        return {f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)}

    assert diff(runs["cpt-ve-s1"], parents["cpt-ve"]) == {"seed"}
    assert diff(runs["cpt-nve+chars"], parents["cpt-nve"]) == {"init", "tokenizer"}
    assert runs["cpt-nve+chars"].tokenizer.endswith("study/tokenizers/chars")
    assert diff(runs["cpt-ve-v0.25"], parents["cpt-ve"]) == {"init", "tokenizer"}
    long = runs["cpt-ve-long"]
    assert diff(long, parents["cpt-ve"]) == {"init", "tokens", "skip_tokens"}
    assert long.init == "run:cpt-ve" and long.skip_tokens == 401_408  # cpt-ve's 196 steps x 2,048 tokens
    assert long.skip_tokens + long.tokens >= cfg.study.longer * parents["cpt-ve"].tokens
    total = runs["scratch-ve-total"]
    assert diff(total, parents["scratch-ve"]) == {"tokens"}
    assert total.tokens == parents["base"].tokens + parents["cpt-ve"].tokens
    assert matrix.continued_from("cpt-nve-long") == "cpt-nve" and matrix.continued_from("cpt-ve") is None


@pytest.mark.parametrize(
    "edit, key",
    [
        ("  seed_runs: [cpt-ve, cpt-vee]", "study.seed_runs[1]"),
        ("  vocab_sweep: [1.0]", "study.vocab_sweep[0]"),
        ("  longer: 0.5", "study.longer"),
    ],
)
def test_bad_study_settings_name_the_key(tmp_path, edit, key):
    text = (matrix.paths.config_path("tiny")).read_text(encoding="utf-8")
    name = edit.split(":")[0]
    lines = [edit if ln.startswith(name + ":") else ln for ln in text.splitlines()]
    p = tmp_path / "bad.yaml"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_config(p)
