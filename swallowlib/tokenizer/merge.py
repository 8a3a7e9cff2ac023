"""Swallow-style vocabulary expansion: append a Japanese SentencePiece model's new pieces to a base BPE model.

The merged model is the base ``ModelProto`` with, appended after the last base piece:

1. the extra (Japanese) model's NORMAL pieces that the base lacks, in the extra model's order, with scores
   ``min(base scores) - 1 - rank`` (strictly below every base piece, so a base merge always beats a new one, and
   the new pieces keep the extra model's merge order among themselves); the scores are forced strictly
   decreasing in float32, which matters for Llama 2, whose whitespace-run pieces score -1e9;
2. padding up to a multiple of ``pad_to``: CONTROL pieces named ``<unused_N>`` with score 0.0. SentencePiece keeps
   CONTROL pieces out of its merge table (``pieces_`` holds only NORMAL/USER_DEFINED/UNUSED), never matches them
   in text and never emits them from ``Encode``; UNUSED would be wrong because UNUSED pieces *do* take part in
   merges (and are resegmented afterwards), so they could change segmentations.

Every base piece keeps its index, string, score and type (the serialized entries are byte-identical); the
normalizer, trainer flags (byte fallback, digit splitting, dummy prefix, ...) stay the base's. Only
``trainer_spec.vocab_size`` is updated to the new size.

Which pieces may be appended (why English stays identical). SentencePiece BPE encoding starts from characters
and repeatedly merges the adjacent pair whose *concatenation* is a vocabulary piece with the highest score. A new
piece can therefore only influence the encoding of a text if it occurs as a substring of the normalized text (only
substrings are ever looked up). With ``japanese_only=True`` (default) every appended piece contains at least one
Japanese-script character (kana, CJK ideographs, CJK punctuation, full/half-width forms, see
:func:`is_japanese_char`), so any text without such characters - English, code, numbers, whitespace, emoji,
accented Latin - tokenizes to exactly the same ids before and after the merge. ``exclude_ascii`` alone (pieces made
only of ASCII and ``▁``) is the weaker rule a probe needed (appending all-ASCII pieces changed ~20% of English
lines); the ``japanese_only`` rule also keeps out e.g. ``→`` or ``é`` which would change English text that
contains them.

Reachability (:func:`unreachable_pieces`). A piece is produced only if the greedy merge loop, run on the piece's
own characters, ends in that single symbol: merges inside the span of a piece happen in the same relative order
whatever the context (the agenda orders by score, then position), and context can only steal boundary
characters. So "encode the piece alone, without dummy prefix, with an identity normalizer, and get back exactly
its own id" is the exact test. Unreachable pieces are reported with a reason: ``no_split`` (no split into two
buildable halves exists: the structural rule) or ``blocked`` (buildable, but higher-scored merges inside it always
win). They never enter the merge agenda, so dropping them (``drop_unreachable=True``) changes no tokenization
except the ids of later pieces.

Run::

    python -m swallowlib.tokenizer.merge BASE.model JA.model OUT.model [--drop-unreachable]
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import sentencepiece as spm
from google.protobuf.message import DecodeError
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from swallowlib.provenance import write_bytes_atomic

log = logging.getLogger(__name__)

_T = sp_pb2.ModelProto.SentencePiece
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = (
    _T.NORMAL, _T.UNKNOWN, _T.CONTROL, _T.USER_DEFINED, _T.UNUSED, _T.BYTE,
)
#: Piece types SentencePiece puts in its merge table (model_interface.cc, InitializePieces).
_MERGEABLE = (NORMAL, USER_DEFINED, UNUSED)
WS = "\u2581"  # SentencePiece's whitespace marker

# Unicode blocks counted as Japanese script. CJK ideographs are shared with Chinese; that is fine for the
# invariance argument, which only needs "text without these characters".
_JA_RANGES: tuple[tuple[int, int], ...] = (
    (0x3000, 0x303F),  # CJK symbols and punctuation (、。「」々〆, ideographic space)
    (0x3040, 0x309F),  # hiragana
    (0x30A0, 0x30FF),  # katakana (incl. ・ ー)
    (0x3190, 0x319F),  # kanbun
    (0x31F0, 0x31FF),  # katakana phonetic extensions
    (0x3200, 0x32FF),  # enclosed CJK letters
    (0x3300, 0x33FF),  # CJK compatibility (㍿)
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF00, 0xFFEF),  # half-width and full-width forms
    (0x1B000, 0x1B16F),  # kana supplement / extended-A
    (0x20000, 0x3134F),  # CJK extensions B-G, compatibility supplement
)


def is_japanese_char(ch: str) -> bool:
    """True when ``ch`` is in a Japanese-script Unicode block (kana, kanji, CJK punctuation, full-width forms)."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _JA_RANGES)


def is_ascii_piece(piece: str) -> bool:
    """True when ``piece`` is made only of ASCII characters and ``▁``."""
    return all(ord(c) < 128 or c == WS for c in piece)


@dataclass
class MergeReport:
    """What :func:`merge_models` did; ``skipped`` counts pieces of the extra model by reason."""

    base_size: int
    extra_size: int
    added: int
    skipped: dict[str, int]
    unreachable: list[str]
    unreachable_reasons: dict[str, int]
    padding: int
    final_size: int
    pad_to: int
    first_new_id: int
    min_base_score: float
    dropped_unreachable: bool
    out: str = ""
    added_pieces: list[str] = field(default_factory=list, repr=False)

    @property
    def multiple_ok(self) -> bool:
        """The final vocabulary size is a multiple of ``pad_to``."""
        return self.final_size % self.pad_to == 0

    def summary(self) -> dict:
        """JSON-friendly dict without the long piece lists (counts only)."""
        d = asdict(self)
        d.pop("added_pieces")
        d["unreachable"] = len(self.unreachable)
        d["multiple_ok"] = self.multiple_ok
        return d


def load_proto(model: Path | str | bytes) -> sp_pb2.ModelProto:
    """Parse a SentencePiece model from a path or serialized bytes; a clear ValueError when it is not one."""
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    proto = sp_pb2.ModelProto()
    try:
        proto.ParseFromString(data)
    except DecodeError as e:
        raise ValueError(f"not a SentencePiece model: {e}") from e
    if not proto.pieces:
        raise ValueError("not a SentencePiece model: no pieces")
    return proto


def _processor(proto: sp_pb2.ModelProto) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())


def _analysis_proto(proto: sp_pb2.ModelProto) -> sp_pb2.ModelProto:
    """A copy that encodes a string exactly as given: identity normalizer, no dummy prefix."""
    p = sp_pb2.ModelProto()
    p.CopyFrom(proto)
    ns = p.normalizer_spec
    ns.name = "identity"
    ns.precompiled_charsmap = b""
    ns.add_dummy_prefix = False
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    p.ClearField("denormalizer_spec")
    return p


def _structurally_buildable(proto: sp_pb2.ModelProto) -> set[str]:
    """Pieces that some chain of merges of two buildable halves (chars or mergeable pieces) can build.

    The necessary condition from the BPE definition; hand-written because no library exposes it.
    """
    mergeable = [p.piece for p in proto.pieces if p.type in _MERGEABLE and p.type != USER_DEFINED]
    buildable: set[str] = set()
    for piece in sorted(mergeable, key=len):
        if len(piece) == 1:
            buildable.add(piece)
            continue
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if (len(left) == 1 or left in buildable) and (len(right) == 1 or right in buildable):
                buildable.add(piece)
                break
    return buildable


def classify_reachability(model: Path | str | bytes | sp_pb2.ModelProto, candidates: Iterable[str]) -> dict[str, str]:
    """Unreachable candidates of ``model`` (a SentencePiece BPE model) mapped to a reason.

    Reasons: ``not_in_vocab``, ``not_mergeable`` (type is not NORMAL/USER_DEFINED/UNUSED), ``normalizer`` (the
    model's normalizer rewrites the piece, so it never occurs in normalized text), ``no_split`` (no chain of merges
    builds it) and ``blocked`` (buildable, but the greedy merge order never ends in it).
    """
    proto = model if isinstance(model, sp_pb2.ModelProto) else load_proto(model)
    candidates = list(candidates)
    index = {p.piece: i for i, p in enumerate(proto.pieces)}
    reasons: dict[str, str] = {}
    to_check: list[str] = []
    for c in candidates:
        i = index.get(c)
        if i is None:
            reasons[c] = "not_in_vocab"
        elif proto.pieces[i].type not in _MERGEABLE:
            reasons[c] = "not_mergeable"
        else:
            to_check.append(c)
    if proto.normalizer_spec.precompiled_charsmap:
        norm = sp_pb2.ModelProto()
        norm.CopyFrom(proto)
        norm.normalizer_spec.add_dummy_prefix = False
        norm.normalizer_spec.remove_extra_whitespaces = False
        sp_norm = _processor(norm)
        kept = []
        for c in to_check:
            if sp_norm.normalize(c.replace(WS, " ")) != c:
                reasons[c] = "normalizer"
            else:
                kept.append(c)
        to_check = kept
    sp = _processor(_analysis_proto(proto))
    encoded = sp.encode(to_check, out_type=int) if to_check else []
    buildable: set[str] | None = None
    for c, ids in zip(to_check, encoded, strict=True):
        if ids == [index[c]]:
            continue
        if buildable is None:
            buildable = _structurally_buildable(proto)
        reasons[c] = "blocked" if c in buildable else "no_split"
    return reasons


def unreachable_pieces(model: Path | str | bytes | sp_pb2.ModelProto, candidates: Iterable[str]) -> list[str]:
    """Candidates that SentencePiece BPE can never produce with ``model``, in candidate order."""
    candidates = list(candidates)
    reasons = classify_reachability(model, candidates)
    return [c for c in candidates if c in reasons]


def _new_scores(min_score: float, n: int) -> list[float]:
    """``min_score - 1 - rank``, forced strictly decreasing *as float32* (the proto's score type).

    Llama 2 scores its whitespace-run pieces -1e9, where float32 steps are 64 apart: the plain formula would tie
    new pieces with each other and with the base, so each score falls back to the next float32 below its
    predecessor when the formula does not give a strictly smaller one.
    """
    prev = np.float32(min_score)
    out: list[float] = []
    for rank in range(n):
        s = np.float32(min_score - 1.0 - rank)
        if not s < prev:
            s = np.nextafter(prev, np.float32(-np.inf), dtype=np.float32)
        out.append(float(s))
        prev = s
    return out


def merge_models(
    base_model: Path | str | bytes,
    extra_model: Path | str | bytes,
    out: Path | str,
    *,
    pad_to: int = 8,
    exclude_ascii: bool = True,
    japanese_only: bool = True,
    drop_unreachable: bool = False,
    pad_name: str = "<unused_{}>",
) -> MergeReport:
    """Append ``extra_model``'s new NORMAL pieces to ``base_model`` (a BPE model) and write ``out`` atomically.

    ``exclude_ascii`` skips pieces made only of ASCII and ``▁``; ``japanese_only`` skips pieces without any
    Japanese-script character (this is what guarantees identical ids on any text without such characters).
    ``drop_unreachable`` removes new pieces that BPE can never produce instead of only reporting them.
    Raises ValueError for bad input (non-BPE base, unreadable model, ``pad_to < 1``) before writing anything.
    """
    if pad_to < 1:
        raise ValueError(f"pad_to must be positive, got {pad_to}")
    base = load_proto(base_model)
    extra = load_proto(extra_model)
    if base.trainer_spec.model_type != sp_pb2.TrainerSpec.BPE:
        raise ValueError("base model is not a SentencePiece BPE model; the merge rules assume BPE")
    base_pieces = {p.piece for p in base.pieces}
    min_score = min(p.score for p in base.pieces)

    skipped = {"in_base": 0, "non_normal": 0, "ascii": 0, "no_japanese": 0, "unreachable": 0}
    new: list[str] = []
    seen: set[str] = set()
    for p in extra.pieces:
        if p.type != NORMAL:
            skipped["non_normal"] += 1
        elif p.piece in base_pieces or p.piece in seen:
            skipped["in_base"] += 1
        elif exclude_ascii and is_ascii_piece(p.piece):
            skipped["ascii"] += 1
        elif japanese_only and not any(is_japanese_char(c) for c in p.piece):
            skipped["no_japanese"] += 1
        else:
            new.append(p.piece)
            seen.add(p.piece)

    def build(pieces: list[str]) -> sp_pb2.ModelProto:
        merged = sp_pb2.ModelProto()
        merged.CopyFrom(base)
        for piece, score in zip(pieces, _new_scores(min_score, len(pieces)), strict=True):
            sp_new = merged.pieces.add()
            sp_new.piece = piece
            sp_new.score = score
            # type left at its default (NORMAL) so the entry serializes like the base's normal pieces
        return merged

    merged = build(new)
    reasons = classify_reachability(merged, new)
    unreachable = [c for c in new if c in reasons]
    if drop_unreachable and unreachable:
        skipped["unreachable"] = len(unreachable)
        new = [c for c in new if c not in reasons]
        merged = build(new)

    padding = (-len(merged.pieces)) % pad_to
    taken = {p.piece for p in merged.pieces}
    n = 0
    for _ in range(padding):
        while pad_name.format(n) in taken:
            n += 1
        pad = merged.pieces.add()
        pad.piece, pad.score, pad.type = pad_name.format(n), 0.0, CONTROL
        taken.add(pad.piece)
    merged.trainer_spec.vocab_size = len(merged.pieces)

    data = merged.SerializeToString()
    _processor(merged)  # refuse to write a model sentencepiece cannot load
    out = Path(out)
    write_bytes_atomic(out, data)

    counts: dict[str, int] = {}
    for c in unreachable:
        counts[reasons[c]] = counts.get(reasons[c], 0) + 1
    report = MergeReport(
        base_size=len(base.pieces), extra_size=len(extra.pieces), added=len(new), skipped=skipped,
        unreachable=unreachable, unreachable_reasons=counts, padding=padding, final_size=len(merged.pieces),
        pad_to=pad_to, first_new_id=len(base.pieces), min_base_score=min_score,
        dropped_unreachable=drop_unreachable, out=str(out), added_pieces=new,
    )
    log.info("merged %s", report.summary())
    return report


def main(argv: list[str] | None = None) -> None:
    """CLI: merge two models and print the report summary as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("extra", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--pad-to", type=int, default=8)
    ap.add_argument("--drop-unreachable", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    rep = merge_models(args.base, args.extra, args.out, pad_to=args.pad_to, drop_unreachable=args.drop_unreachable)
    print(json.dumps(rep.summary(), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
