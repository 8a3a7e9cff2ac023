"""Agreement of the ``swallow-v1`` rules with Swallow's released ``quality.py``, document by document; and, for
contrast, of the ``technical`` rule set at the same (the paper's) thresholds.

The released file is not part of this repository (github.com/swallow-llm/swallow-corpus, MIT); pass its path. It is
loaded with importlib and needs only the standard library. Standalone: not run by ``make bench``.

    git clone https://github.com/swallow-llm/swallow-corpus /tmp/swallow-corpus
    python benchmarks/bench_rule_agreement.py --reference /tmp/swallow-corpus/quality.py              # tiny's documents
    python benchmarks/bench_rule_agreement.py --reference … --profile smoke --max-docs 300 --json out.json

**Documents** (Japanese, as the filters receive them):

1. ``profile``: the profile's Japanese documents before any filter, i.e. stage 01's ingest output, made once under
   ``runs/bench/corpus-ingest-<profile>/`` as ``benchmarks/bench_corpus.py`` does (``--docs DIR`` reads the
   ``*.jsonl.gz`` shards of another directory instead);
2. ``prose``: the held-out prose the tokenizer stage measures on (``coverage.out_of_domain_japanese``: literature, a
   tutorial, an essay), whole and cut into windows of 4 to 64 lines;
3. ``perturbed``: seeded variants of documents of 1 and 2, each aimed at one statistic or one edge of the
   definitions: repeated lines or sentences, blank lines, ``\\r\\n`` line ends, terminator runs, ellipses, katakana,
   half-width katakana, NFKC, characters outside the BMP, whitespace padding, truncation near 400 characters, and
   degenerate texts (empty, a few characters, only terminators or line breaks).

**Measured.** For each document: the released ``main`` statistics and ``apply_v1`` decision vs this project's
decision under ``QualityFilters()`` (swallow-v1) and under ``QualityFilters(rule_set="technical")``, the NG-word
rule off on both sides (the released NG step needs a dictionary that is not distributed). *Per rule*, the
released condition is evaluated by the released ``apply_v1`` itself on statistics where only that rule's own values
are the document's (every other statistic set to a passing value), so the threshold and the comparison direction
are the released ones; ours is the rule's own ``drops``. A document the released code raises on is counted apart
(its decision is undefined there); ours is shown for it. *Statistics*: how many swallow-v1 values differ from the
released ones at all (exact float comparison).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import random
import shutil
import sys
import time
import unicodedata
from collections import Counter
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from swallowlib import paths  # noqa: E402
from swallowlib.config import QualityFilters, load_config  # noqa: E402
from swallowlib.corpus import filters, pipeline, swallow_rules  # noqa: E402

HALF_WIDTH = str.maketrans("アイウエオカキクケコ", "ｱｲｳｴｵｶｷｸｹｺ")
BENCHMARKS: list = []  # standalone: needs the released file (--reference), so `make bench` does not run it

#: our rule name -> the released statistics that rule reads
SWALLOW_V1_KEYS = {
    "min_chars": ["num_letters"],
    "dup_line_frac": ["duplicate_paragraph_fraction"],
    "dup_sentence_frac": ["duplicate_sentence_fraction"],
    "dup_line_char_frac": ["duplicate_paragraph_fraction_in_character"],
    "dup_sentence_char_frac": ["duplicate_sentence_fraction_in_character"],
    **{f"top_{n}gram_char_frac": [f"top_{n}gram_character_fraction"] for n in (2, 3, 4)},
    **{f"dup_{n}gram_char_frac": [f"duplicate_{n}gram_character_fraction"] for n in range(5, 11)},
    "hiragana_frac": ["hiragana_fraction"],
    "katakana_frac": ["katakana_fraction"],
    "japanese_frac": ["japanese_fraction"],
    "min_japanese_chars": ["num_japanese_letters"],
    "avg_sentence_len": ["avg_sentence_length"],
    "max_sentence_len": ["max_sentence_length"],
    "ellipsis_frac": ["ellipsis_fraction"],
}
#: released statistics at values no released rule drops
PASSING = {
    "num_letters": 10_000, "num_japanese_letters": 10_000, "hiragana_fraction": 0.5, "katakana_fraction": 0.0,
    "japanese_fraction": 1.0, "avg_sentence_length": 40.0, "max_sentence_length": 40, "ellipsis_fraction": 0.0,
    "duplicate_paragraph_fraction": 0.0, "duplicate_sentence_fraction": 0.0,
    "duplicate_paragraph_fraction_in_character": 0.0, "duplicate_sentence_fraction_in_character": 0.0,
    **{f"top_{n}gram_character_fraction": 0.0 for n in (2, 3, 4)},
    **{f"duplicate_{n}gram_character_fraction": 0.0 for n in range(5, 11)},
}  # fmt: skip
#: technical rule -> the released rule of the same kind (its definitions differ; that is the point of the contrast)
TECHNICAL_COUNTERPART = {
    "min_chars": "min_chars", "dup_line_frac": "dup_line_frac", "dup_line_char_frac": "dup_line_char_frac",
    "dup_sentence_char_frac": "dup_sentence_char_frac", "hiragana_frac": "hiragana_frac",
    "katakana_frac": "katakana_frac", "japanese_frac": "japanese_frac", "avg_sentence_len": "avg_sentence_len",
    "max_sentence_len": "max_sentence_len", "ellipsis_frac": "ellipsis_frac",
    **{f"top_{n}gram_char_frac": f"top_{n}gram_char_frac" for n in (2, 3, 4)},
    **{f"dup_{n}gram_char_frac": f"dup_{n}gram_char_frac" for n in range(5, 11)},
}  # fmt: skip


def load_reference(path: Path):
    spec = importlib.util.spec_from_file_location("swallow_corpus_quality", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------------------------------------------
# Documents


def profile_docs(profile: str, docs_dir: Path | None) -> list[str]:
    """The profile's raw Japanese documents (stage 01's ingest output), made once like benchmarks/bench_corpus.py."""
    if docs_dir is None:
        cfg = load_config(profile)
        work = paths.RUNS / "bench" / f"corpus-ingest-{profile}"
        # Shards made before a code change are reused: any raw Japanese text serves to compare two rule
        # implementations (bench_corpus.py, which times the ingest, remakes them).
        if not (work / "ingest" / "docs" / "ja").is_dir():
            shutil.rmtree(work, ignore_errors=True)
            pipeline.ingest(cfg, work)
            (work / "DONE").write_text(pipeline.corpus_fingerprint(cfg))
        docs_dir = work / "ingest" / "docs" / "ja"
    out = []
    for p in sorted(Path(docs_dir).rglob("*.jsonl.gz")):
        with gzip.open(p, "rb") as f:
            out.extend(orjson.loads(line)["text"] for line in f if line.strip())
    return out


def prose_docs() -> list[str]:
    """The tokenizer stage's out-of-domain texts, whole and in windows of lines."""
    from swallowlib.tokenizer.coverage import out_of_domain_japanese

    out = []
    for text in out_of_domain_japanese().values():
        out.append(text)
        lines = text.split("\n")
        for size in (4, 8, 16, 32, 64):
            for i in range(0, max(len(lines) - size, 0) + 1, max(size // 2, 1)):
                out.append("\n".join(lines[i : i + size]))
    return out


def perturbed_docs(seeds: list[str], rng: random.Random, per_kind: int) -> list[str]:
    """Variants of ``seeds`` aimed at the rules and the edges of the definitions (see the module docstring)."""

    def pick() -> str:
        return rng.choice(seeds)

    def lines_of(t: str) -> list[str]:
        return t.split("\n")

    def at_threshold(t: str) -> str:
        # 7 distinct lines + 3 repeats of the shortest: a duplicate-line fraction of exactly 3/10 = 0.3 (kept: > 0.30
        # drops), or 4 repeats (4/11 > 0.3, dropped)
        distinct = sorted(set(lines_of(t)), key=len, reverse=True)[:7]
        return "\n".join(distinct + [distinct[-1]] * rng.choice([3, 4])) if len(distinct) == 7 else t

    kinds = {
        "repeat-lines": lambda t: "\n".join(
            ls := lines_of(t)) + "\n" + "\n".join(rng.choices(ls, k=rng.randint(1, max(len(ls), 1)))),
        "blank-lines": lambda t: "\n".join(x + "\n" * rng.randint(0, 2) for x in lines_of(t)),
        "crlf": lambda t: t.replace("\n", "\r\n"),
        "repeat-sentences": lambda t: t + "".join(rng.choices(swallow_rules.sentences(t) or [t], k=rng.randint(1, 12))),
        "terminator-runs": lambda t: t.replace("。", rng.choice(["。。", "！？", "?!", "。\n。", "．"])),
        "ellipses": lambda t: t.replace("。", rng.choice(["…", "・", "…。", "… ", "・\u3000"]), rng.randint(1, 40)),
        "katakana": lambda t: t + "\n" + "コンピュータネットワークサーバー" * rng.randint(1, 60),
        "half-width": lambda t: unicodedata.normalize("NFKC", t).translate(HALF_WIDTH),
        "nfkc": lambda t: unicodedata.normalize("NFKC", t),
        "outside-bmp": lambda t: t.replace("の", "\U0002000b", rng.randint(1, 200)),
        "whitespace": lambda t: "\n".join(
            " " * rng.randint(0, 8) + x + "\u3000" * rng.randint(0, 3) for x in lines_of(t)),
        "truncate": lambda t: t[: rng.randint(380, 460)],
        "truncate-ja": lambda t: t[: rng.randint(400, 1200)],
        "long-sentence": lambda t: t.replace("。", "、", rng.randint(1, 30)),
        "ascii": lambda t: t + "\n" + "option --verbose prints more. " * rng.randint(1, 80),
        "dup-at-threshold": at_threshold,
    }  # fmt: skip
    out = []
    for _, make in sorted(kinds.items()):
        for _ in range(per_kind):
            out.append(make(pick()))
    # degenerate texts: where the released code raises, and just around its edges
    out += ["", "a", "ab", "abc", "abcd", "。", "。。。。", "\n" * 5, "\n" * 500, "。" * 500, "あ" * 399, "あ" * 400,
            "あいう。\n" * 100, "漢字" * 300, "カタカナ。" * 100, " " * 450]  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------------------------
# Comparison


def released_rule_fires(ref, q: dict, keys: list[str]) -> bool:
    """The released apply_v1 on statistics where only ``keys`` are the document's."""
    return not ref.apply_v1({**PASSING, **{k: q[k] for k in keys}})


def compare(ref, texts: dict[str, list[str]]) -> dict:
    v1 = QualityFilters(max_ng_word_char_frac=None)
    tech = QualityFilters(rule_set="technical", max_ng_word_char_frac=None)
    v1_rules = filters.quality_rules(v1, "ja")
    tech_rules = filters.quality_rules(tech, "ja")
    res: dict = {"groups": {}, "rules": {}, "errors": [], "stat_mismatches": Counter(), "disagreements": []}
    per_rule = {("swallow-v1", r.name): [0, 0] for r in v1_rules}
    per_rule |= {("technical", r.name): [0, 0] for r in tech_rules if r.name in TECHNICAL_COUNTERPART}
    t0 = time.perf_counter()
    for group, docs in texts.items():
        g = res["groups"][group] = {"docs": 0, "released_keeps": 0, "v1_agree": 0, "tech_agree": 0, "errors": 0,
                                    "v1_keeps": 0, "tech_keeps": 0}  # fmt: skip
        for text in docs:
            ours_v1 = filters.dropped_by(text, v1, "ja", v1_rules) is None
            try:
                q = ref.main({"text": text})
            except Exception as e:  # noqa: BLE001 - the released code raises on some degenerate texts
                g["errors"] += 1
                res["errors"].append({"group": group, "chars": len(text), "error": type(e).__name__, "ours": ours_v1})
                continue
            released = ref.apply_v1(q)
            ours_tech = filters.dropped_by(text, tech, "ja", tech_rules) is None
            g["docs"] += 1
            g["released_keeps"] += released
            g["v1_keeps"] += ours_v1
            g["tech_keeps"] += ours_tech
            g["v1_agree"] += ours_v1 == released
            g["tech_agree"] += ours_tech == released
            if ours_v1 != released and len(res["disagreements"]) < 5:
                res["disagreements"].append({"group": group, "released": released, "text": text[:200]})
            fires = {}
            for r in v1_rules:
                keys = SWALLOW_V1_KEYS[r.name]
                fires[r.name] = released_rule_fires(ref, q, keys)
                value = r.stat(text)
                stat = per_rule[("swallow-v1", r.name)]
                stat[0] += r.drops(value) == fires[r.name]
                stat[1] += 1
                if value != q[keys[0]]:
                    res["stat_mismatches"][r.name] += 1
            for r in tech_rules:
                if r.name in TECHNICAL_COUNTERPART:
                    stat = per_rule[("technical", r.name)]
                    stat[0] += r.drops(r.stat(text)) == fires[TECHNICAL_COUNTERPART[r.name]]
                    stat[1] += 1
    res["seconds"] = round(time.perf_counter() - t0, 1)
    res["rules"] = {f"{rs}:{name}": {"agree": a, "docs": n} for (rs, name), (a, n) in per_rule.items()}
    return res


def _pct(a: int, n: int) -> str:
    return f"{100 * a / n:6.2f} %" if n else "     -"


def print_report(res: dict) -> None:
    print("\nOverall keep/drop agreement with the released apply_v1 (NG-word step off on both sides)\n")
    print(f"{'documents':12s} {'docs':>6s} {'released keeps':>15s} {'swallow-v1 keeps':>17s} "
          f"{'swallow-v1 agrees':>18s} {'technical keeps':>16s} {'technical agrees':>17s} "
          f"{'released raised':>16s}")  # fmt: skip
    tot = Counter()
    for group, g in res["groups"].items():
        tot.update(g)
        print(f"{group:12s} {g['docs']:6d} {g['released_keeps']:15d} {g['v1_keeps']:17d} "
              f"{_pct(g['v1_agree'], g['docs']):>18s} {g['tech_keeps']:16d} {_pct(g['tech_agree'], g['docs']):>17s} "
              f"{g['errors']:16d}")  # fmt: skip
    print(f"{'all':12s} {tot['docs']:6d} {tot['released_keeps']:15d} {tot['v1_keeps']:17d} "
          f"{_pct(tot['v1_agree'], tot['docs']):>18s} {tot['tech_keeps']:16d} "
          f"{_pct(tot['tech_agree'], tot['docs']):>17s} {tot['errors']:16d}")  # fmt: skip
    print("\nPer rule: the rule fires on exactly the documents where the released condition fires\n")
    print(f"{'rule':24s} {'swallow-v1':>11s} {'technical':>11s}")
    names = dict.fromkeys(k.split(":", 1)[1] for k in res["rules"])
    for name in names:
        a = res["rules"].get(f"swallow-v1:{name}")
        b = res["rules"].get(f"technical:{name}")
        print(f"{name:24s} {_pct(a['agree'], a['docs']) if a else '-':>11s} "
              f"{_pct(b['agree'], b['docs']) if b else 'no rule':>11s}")  # fmt: skip
    mism = res["stat_mismatches"]
    print(f"\nswallow-v1 statistics differing from the released values (exact floats): "
          f"{sum(mism.values())}{' ' + json.dumps(dict(mism)) if mism else ''}")  # fmt: skip
    if res["errors"]:
        kinds = Counter((e["error"], e["ours"]) for e in res["errors"])
        print(
            "documents the released code raised on (not in the agreement above): "
            + ", ".join(f"{n} × {err} (swallow-v1 {'keeps' if ours else 'drops'})" for (err, ours), n in kinds.items())
        )
    for d in res["disagreements"]:
        print("DISAGREEMENT", json.dumps(d, ensure_ascii=False))
    print(f"\n({res['seconds']} s)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, required=True, help="path to swallow-corpus's quality.py")
    ap.add_argument("--profile", default="tiny", help="profile whose raw Japanese documents are read (default tiny)")
    ap.add_argument("--docs", type=Path, help="a directory of *.jsonl.gz documents instead of the profile's ingest")
    ap.add_argument("--max-docs", type=int, help="a seeded sample of at most this many profile documents")
    ap.add_argument("--per-kind", type=int, default=40, help="perturbed variants per kind (default 40)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    ref = load_reference(args.reference)
    rng = random.Random(args.seed)
    own = profile_docs(args.profile, args.docs)
    if args.max_docs is not None and len(own) > args.max_docs:
        own = rng.sample(own, args.max_docs)
    prose = prose_docs()
    # perturb mostly documents the rules keep, so the variants straddle the thresholds from the keep side too
    v1 = QualityFilters(max_ng_word_char_frac=None)
    rules = filters.quality_rules(v1, "ja")
    kept = [t for t in own + prose if filters.dropped_by(t, v1, "ja", rules) is None]
    seeds = kept + rng.sample(own + prose, min(len(kept) + 50, len(own) + len(prose)))
    texts = {"profile": own, "prose": prose, "perturbed": perturbed_docs(seeds, rng, args.per_kind)}
    print(f"reference {args.reference}; documents: " + ", ".join(f"{k} {len(v)}" for k, v in texts.items()))
    res = compare(ref, texts)
    print_report(res)
    if args.json:
        args.json.write_text(json.dumps(res, ensure_ascii=False, indent=1, default=dict))


if __name__ == "__main__":
    main()
