"""Stage 02 end to end: train the tokenizers, merge the Japanese pieces into the base, export, measure.

    python -m swallowlib.tokenizer.stage --config configs/tiny.yaml      # skips when up to date

Outputs (``runs/<profile>/tokenizer/``, swapped in as a whole when the stage finishes):

- ``base/`` — the profile's base tokenizer (tiny: a SentencePiece with Llama 2's trainer settings, trained on the
  English training split plus ``tokenizer.base_ja_share`` of Japanese lines, as Llama 2 saw a little Japanese;
  llama2: Llama 2's exact ``tokenizer.model``), as an HF directory;
- ``ja.model`` — the Japanese SentencePiece (NFKC as configured) trained on the Japanese training split;
- ``expanded/`` — base + the Japanese pieces the base lacks (Swallow-style merge, padded), as an HF directory;
- ``expanded-continued.model`` — beyond the paper: the same number of new pieces learned by continued BPE on the base's
  own segmentation (reachable by construction; :mod:`swallowlib.tokenizer.continued`), when configured;
- ``analysis/`` — Llama 2, Llama 2 + a 16k Japanese tokenizer (the paper's setting), its continued-BPE counterpart of
  the same size, and Mistral v1, when configured;
- ``merge.json`` (what the merges added and skipped), ``invariants.json`` (English identical, round trips, HF = SPM),
  ``efficiency.csv`` (characters/token, bytes/token, tokens per MeCab word, byte-fallback share, ratios to the base,
  per tokenizer and held-out domain), ``efficiency_lines.csv`` (tokens per line of the Japanese domains, per tokenizer:
  the units behind the findings' intervals on token ratios), ``report.json`` (timings, process-tree peak memory),
  ``provenance.json``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import pandas as pd
import sentencepiece as spm

from swallowlib import paths
from swallowlib.config import Config, apply_environment, load_config, to_dict
from swallowlib.corpus import shards
from swallowlib.provenance import (
    recorded_fingerprint,
    stage_cli,
    write_json_atomic,
    write_text_atomic,
)
from swallowlib.stage import Stage
from swallowlib.tokenizer import base, continued, coverage, export, merge, metrics

log = logging.getLogger(__name__)


def tokenizer_dir(profile: str) -> Path:
    return paths.run_dir(profile) / "tokenizer"


def _stage(cfg: Config) -> Stage:
    # report.py only reads the outputs (for the notebook): changing it must not rebuild the tokenizers.
    code = [p for p in sorted(Path(__file__).parent.glob("*.py")) if p.name != "report.py"]
    code.append(Path(shards.__file__))  # which lines and documents are sampled decides the models and the tables
    upstream = recorded_fingerprint(paths.corpus_dir(cfg.profile))
    return Stage("tokenizer", cfg, tokenizer_dir(cfg.profile), {"tokenizer": to_dict(cfg.tokenizer),
                                                               "corpus": upstream}, code)


def is_up_to_date(cfg: Config) -> bool:
    return _stage(cfg).is_up_to_date()


def _split_lines(profile: str, dataset: str, split: str, n: int, seed: int) -> list[str]:
    """A seeded sample of at most ``n`` non-empty lines of a corpus split (SentencePiece trains on lines)."""
    return shards.sample_lines(paths.corpus_split_files(profile, dataset, split), n, seed)


def _split_docs(profile: str, dataset: str, split: str, n: int, seed: int, column: str = "text") -> list[str]:
    """A seeded sample of at most ``n`` documents (or one side of the pairs: ``column``) of a corpus split."""
    return shards.sample_texts(paths.corpus_split_files(profile, dataset, split), n, seed, column=column)


def _base_japanese_lines(ja_lines: list[str], n_en: int, share: float, seed: int) -> list[str]:
    """The Japanese lines the tiny base tokenizer trains on beside ``n_en`` English ones: ``share`` of all its lines.

    >>> len(_base_japanese_lines([f"行{i}" for i in range(100)], 990, 0.01, 0))
    10
    """
    n = min(len(ja_lines), round(n_en * share / (1 - share)))
    return random.Random(seed).sample(ja_lines, n) if n else []


def _japanese_pieces(model: Path) -> int:
    """Pieces of a SentencePiece model that hold a Japanese character (kana, kanji, Japanese punctuation)."""
    sp = spm.SentencePieceProcessor(model_file=str(model))
    return sum(any(merge.is_japanese_char(c) for c in sp.id_to_piece(i)) for i in range(sp.get_piece_size()))


def _expand(base_model: Path, ja_model: Path, out: Path, pad_to: int, with_coverage: bool) -> dict:
    """Swallow-style merge of ``ja_model`` into ``base_model`` (+ kana/jōyō coverage), padded; returns the record.

    Order (see coverage.py): merge without padding, append the coverage characters, then pad — a CONTROL padding
    piece must not sit below NORMAL pieces.
    """
    tmp = out.with_name(out.name + ".unpadded")
    info = merge.merge_models(base_model, ja_model, tmp, pad_to=1).summary()
    if with_coverage:
        info["coverage"] = coverage.add_coverage_pieces(tmp, coverage.coverage_characters(), tmp)
    padded = merge.merge_models(tmp, tmp, out, pad_to=pad_to)  # every piece is already there: pads only
    tmp.unlink()
    info.update(padding=padded.padding, final_size=padded.final_size, multiple_ok=padded.multiple_ok)
    info.pop("out", None)
    return info


def _continued(base_model: Path, lines: list[str], out: Path, like: dict, pad_to: int, with_coverage: bool) -> dict:
    """The continued-BPE counterpart of a naive expansion ``like`` (its record): the same number of added pieces."""
    n = like["added"] + like.get("coverage", {}).get("added", 0)
    forced = coverage.coverage_characters() if with_coverage else ()
    rep = continued.extend_model(base_model, lines, out, n, forced_chars=forced, pad_to=pad_to)
    return rep.summary()


def build_tokenizers(cfg: Config | str | Path, force: bool = False) -> Path:
    """Run stage 02 for a config (or profile name); return ``runs/<profile>/tokenizer``."""
    if not isinstance(cfg, Config):
        cfg = load_config(cfg)
    apply_environment(cfg)
    out = tokenizer_dir(cfg.profile)
    if not force and is_up_to_date(cfg):
        log.info("tokenizer: %s is up to date", out)
        return out
    st = _stage(cfg)
    with st.staging() as stage:
        _build(cfg, st, stage)
    return out


def _build(cfg: Config, st: Stage, stage: Path) -> None:
    """The stage's steps, writing everything into ``stage`` (swapped in by the caller when this returns)."""
    tc = cfg.tokenizer
    t0 = time.perf_counter()

    def tick(name: str, since: float) -> float:
        now = time.perf_counter()
        st.timings[name] = round(now - since, 2)
        log.info("tokenizer: %s done in %.1f s", name, now - since)
        return now

    t = t0
    ja_train_lines = _split_lines(cfg.profile, "ja", "train", tc.max_train_lines, tc.seed)
    ja_norm = "nfkc" if tc.ja_nfkc else "identity"
    an = stage / "analysis"
    # 1. base tokenizer
    if tc.base == "llama2":
        base_model = base.build_llama2_tokenizer(stage / "base.model")
    else:
        base_lines = _split_lines(cfg.profile, "en", "train", tc.max_train_lines, tc.seed)
        ja_lines_in_base = _base_japanese_lines(ja_train_lines, len(base_lines), tc.base_ja_share, tc.seed)
        base_model = base.train_sentencepiece(base_lines + ja_lines_in_base, tc.base_vocab, stage / "base",
                                              seed=tc.seed)
        st.report["base_japanese"] = {"lines": len(ja_lines_in_base), "of_lines": len(base_lines + ja_lines_in_base),
                                      "japanese_pieces": _japanese_pieces(base_model)}
    t = tick("base", t)
    # 2. Japanese tokenizer
    ja_model = base.train_sentencepiece(
        ja_train_lines, tc.ja_vocab, stage / "ja", normalization=ja_norm, seed=tc.seed
    )
    t = tick("ja", t)
    # 3. merge and export
    merge_info = {"expanded": _expand(base_model, ja_model, stage / "expanded.model", tc.pad_to, tc.coverage)}
    export.export_hf(base_model, stage / "base")
    export.export_hf(stage / "expanded.model", stage / "expanded")
    models = {"base": base_model, "expanded": stage / "expanded.model"}
    expansion_of = {"expanded": "base"}  # each expanded tokenizer -> the base it extends
    naive_of: dict[str, str] = {}  # each continued-BPE tokenizer -> the naive merge of the same size
    t = tick("merge+export", t)
    if tc.continued:
        merge_info["expanded-continued"] = _continued(
            base_model, ja_train_lines, stage / "expanded-continued.model", merge_info["expanded"], tc.pad_to,
            tc.coverage,
        )
        models["expanded-continued"] = stage / "expanded-continued.model"
        expansion_of["expanded-continued"], naive_of["expanded-continued"] = "base", "expanded"
        t = tick("continued", t)
    # 4. analysis tokenizers
    if tc.analysis_llama2:
        llama = base.build_llama2_tokenizer(an / "llama2.model")
        ja16 = base.train_sentencepiece(
            ja_train_lines,
            tc.analysis_ja_vocab,
            an / f"ja{tc.analysis_ja_vocab // 1000}k",
            normalization=ja_norm,
            seed=tc.seed,
        )
        name = f"llama2+ja{tc.analysis_ja_vocab // 1000}k"
        merge_info[name] = _expand(llama, ja16, an / f"{name}.model", tc.pad_to, tc.coverage)
        models["llama2"], models[name] = llama, an / f"{name}.model"
        expansion_of[name] = "llama2"
        if tc.continued:
            merge_info["llama2+continued"] = _continued(
                llama, ja_train_lines, an / "llama2+continued.model", merge_info[name], tc.pad_to, tc.coverage
            )
            models["llama2+continued"] = an / "llama2+continued.model"
            expansion_of["llama2+continued"], naive_of["llama2+continued"] = "llama2", name
        t = tick("analysis-llama2", t)
    if tc.analysis_mistral:
        models["mistral-v1"] = base.mistral_v1_model(an / "mistral-v1.model")
        t = tick("analysis-mistral", t)
    write_json_atomic(stage / "merge.json", merge_info)

    # 5. invariants on held-out text
    en_valid = _split_lines(cfg.profile, "en", "valid", 3000, tc.seed)
    ja_test_docs = _split_docs(cfg.profile, "ja", "test", tc.eval_max_docs, tc.seed)
    ja_lines = list(shards.iter_lines(ja_test_docs))
    inv = {}
    for merged, base_name in expansion_of.items():
        a = spm.SentencePieceProcessor(model_file=str(models[base_name]))
        b = spm.SentencePieceProcessor(model_file=str(models[merged]))
        same = sum(a.encode(x) == b.encode(x) for x in en_valid)
        round_trip = sum(b.decode(b.encode(x)) == x for x in ja_lines)
        inv[merged] = {
            "english_lines_identical": same,
            "english_lines": len(en_valid),
            "japanese_round_trips": round_trip,
            "japanese_lines": len(ja_lines),
        }
    for name in ("base", "expanded"):
        inv[f"hf={name}"] = export.check_equivalence(models[name], stage / name, en_valid[:500] + ja_lines[:500])
    write_json_atomic(stage / "invariants.json", inv)
    t = tick("invariants", t)

    # 6. efficiency per tokenizer and held-out domain
    domains = {
        "ja: held-out manuals (test split)": (ja_test_docs, "ja"),
        "en: held-out (test split)": (
            _split_docs(cfg.profile, "en", "test", tc.eval_max_docs, tc.seed),
            "en",
        ),
        "ja: parallel test pairs (ja side)": (
            _split_docs(cfg.profile, "parallel", "test", 2000, tc.seed, column="ja"),
            "ja",
        ),
    }
    encoders = {n: metrics.spm_encoder(m, name=n) for n, m in models.items()}
    if tc.out_of_domain:
        for name, text in coverage.out_of_domain_japanese().items():
            domains[f"ja: out of domain ({name})"] = ([ln for ln in text.split("\n\n") if ln.strip()], "ja")
    domains = {d: v for d, v in domains.items() if v[0]}  # e.g. no parallel test pairs in a local-only corpus
    table = metrics.efficiency_table(
        {d: texts for d, (texts, _) in domains.items()},
        encoders,
        {d: lang for d, (_, lang) in domains.items()},
        baseline="llama2" if "llama2" in encoders else "base",
    )
    write_text_atomic(stage / "efficiency.csv", table.to_csv(index=False))
    ja_domains = {d: texts for d, (texts, lang) in domains.items() if lang == "ja"}
    lines = metrics.line_token_counts(ja_domains, encoders)
    write_text_atomic(stage / "efficiency_lines.csv", lines.to_csv(index=False))
    t = tick("efficiency", t)
    # Model paths are recorded relative to the stage directory, so they stay valid after the swap.
    rel_models = {k: str(Path(v).relative_to(stage)) for k, v in models.items()}
    st.report.update({"models": rel_models, "expansion_of": expansion_of, "naive_of": naive_of})


def encoders(profile: str) -> dict[str, metrics.PieceEncoder]:
    """The stage's tokenizers as metric encoders, by name (for the notebook and the inspector)."""
    d = tokenizer_dir(profile)
    rep = json.loads((d / "report.json").read_text())
    return {n: metrics.spm_encoder(d / p, name=n) for n, p in rep["models"].items()}


def efficiency(profile: str) -> pd.DataFrame:
    return pd.read_csv(tokenizer_dir(profile) / "efficiency.csv")


def main(argv: list[str] | None = None) -> None:
    stage_cli(build_tokenizers, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
