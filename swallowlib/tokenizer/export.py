"""Export a SentencePiece BPE model as a Hugging Face tokenizer directory that equals SentencePiece exactly.

transformers 5 rebuilds Llama tokenizers its own way (a Metaspace pre-tokenizer that skips the dummy prefix when
the text starts with whitespace; merges in vocabulary order when only ``tokenizer.model`` is present) and then
differs from SentencePiece. So ``tokenizer.json`` is built here explicitly with ``tokenizers``:

* model: BPE over every piece, byte fallback, merges ranked by the merged piece's score (what SentencePiece's BPE
  encoder does: it always applies the highest-scoring available merge);
* normalizer: the model's precompiled charsmap (NFKC models), SentencePiece's extra-whitespace removal if the
  model asks for it, ``Prepend("▁")`` if ``add_dummy_prefix``, then ``Replace(" ", "▁")``;
* decoder: ``▁`` -> space, byte fallback, fuse, strip the dummy-prefix space;
* post-processor: ``<s> $A`` (BOS, as Llama does).

``tokenizer_config.json`` names the generic ``PreTrainedTokenizerFast`` so ``AutoTokenizer`` loads this file as is, with
``split_special_tokens`` so that a literal ``<s>`` in the text is text, as in SentencePiece.

    python -m swallowlib.tokenizer.export MODEL.model OUT_DIR [TEXT_FILE]   # export, then check on TEXT_FILE lines
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as sp_pb2
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from swallowlib.provenance import publish_dir

log = logging.getLogger(__name__)

_SP = sp_pb2.ModelProto.SentencePiece
SPACE = "\u2581"  # "▁", SentencePiece's whitespace symbol
_CROSSES_SPACE = re.compile(f"[^{SPACE}]{SPACE}")


class ExportError(RuntimeError):
    """The model cannot be exported faithfully; the message is one line."""


def _load_proto(model_file: Path) -> sp_pb2.ModelProto:
    proto = sp_pb2.ModelProto()
    try:
        proto.ParseFromString(Path(model_file).read_bytes())
    except OSError as e:
        raise ExportError(f"{model_file}: cannot read ({e.strerror})") from e
    except Exception as e:  # protobuf's DecodeError
        raise ExportError(f"{model_file}: not a SentencePiece model ({e})") from e
    if not proto.pieces:
        raise ExportError(f"{model_file}: not a SentencePiece model (no pieces)")
    return proto


def _merges(proto: sp_pb2.ModelProto, vocab: dict[str, int]) -> list[tuple[str, str]]:
    """Every (left, right) split of a NORMAL piece whose halves are both pieces, best merged score first.

    Hand-written rather than ``tokenizers``' SentencePieceExtractor because that one ranks by vocabulary order
    unless given scores, and it sits in a private module of transformers that changes between versions.
    """
    found = []
    for idx, p in enumerate(proto.pieces):
        if p.type != _SP.NORMAL or len(p.piece) < 2:
            continue
        for i in range(1, len(p.piece)):
            left, right = p.piece[:i], p.piece[i:]
            if left in vocab and right in vocab:
                found.append((-p.score, idx, vocab[left], vocab[right], left, right))
    found.sort()
    return [(f[4], f[5]) for f in found]


def build_hf_tokenizer(model_file: Path) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` equivalent to the SentencePiece BPE model in ``model_file``."""
    proto = _load_proto(model_file)
    ts, ns = proto.trainer_spec, proto.normalizer_spec
    if ts.model_type != sp_pb2.TrainerSpec.BPE:
        raise ExportError(f"{model_file}: only BPE models can be exported (model_type={ts.model_type})")
    if not ns.escape_whitespaces and ns.HasField("escape_whitespaces"):
        raise ExportError(f"{model_file}: escape_whitespaces=false is not supported")
    if ts.treat_whitespace_as_suffix:
        raise ExportError(f"{model_file}: treat_whitespace_as_suffix is not supported")
    vocab = {}
    for i, p in enumerate(proto.pieces):
        vocab.setdefault(p.piece, i)  # SentencePiece keeps the first id of a duplicated piece too
    unk = proto.pieces[ts.unk_id].piece
    tok = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=_merges(proto, vocab),
            unk_token=unk,
            fuse_unk=True,
            byte_fallback=ts.byte_fallback,
        )
    )
    steps: list = []
    if ns.precompiled_charsmap:
        steps.append(normalizers.Precompiled(ns.precompiled_charsmap))
    if ns.remove_extra_whitespaces:
        # SentencePiece drops leading and collapses repeated ASCII spaces of its input (after the charsmap), but
        # trims trailing "▁" after escaping, so a literal trailing "▁" (and a lone dummy prefix) goes too.
        steps += [normalizers.Replace(Regex(r"\A +"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    if ns.add_dummy_prefix:
        steps.append(normalizers.Prepend(SPACE))
    steps.append(normalizers.Replace(" ", SPACE))
    if ns.remove_extra_whitespaces:
        steps.append(normalizers.Replace(Regex(f"{SPACE}+\\z"), ""))
    tok.normalizer = normalizers.Sequence(steps)
    if not any(_CROSSES_SPACE.search(p.piece) for p in proto.pieces):
        # No piece has a non-space character followed by "▁", so no merge can span the start of a "▁"-run that
        # follows other text: cutting there cannot change the result, and it lets tokenizers cache words and
        # parallelise (one long document is otherwise one BPE "word").
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(f"{SPACE}*[^{SPACE}]+|{SPACE}+"), "isolated")
    dec = [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if ns.add_dummy_prefix:
        # SentencePiece drops the dummy-prefix space; with remove_extra_whitespaces it drops every leading space.
        dec.append(decoders.Strip(" ", 1 << 30 if ns.remove_extra_whitespaces else 1, 0))
    tok.decoder = decoders.Sequence(dec)
    specials = [p.piece for p in proto.pieces if p.type in (_SP.CONTROL, _SP.UNKNOWN)]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    user = [p.piece for p in proto.pieces if p.type == _SP.USER_DEFINED]
    if user:  # SentencePiece matches user-defined pieces before BPE, as added tokens do
        tok.add_tokens([AddedToken(s, special=False, normalized=True) for s in user])
    if ts.bos_id >= 0:
        bos = proto.pieces[ts.bos_id].piece
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, ts.bos_id)]
        )
    return tok


def _special(proto: sp_pb2.ModelProto, idx: int) -> str | None:
    return proto.pieces[idx].piece if 0 <= idx < len(proto.pieces) else None


def export_hf(model_file: Path, out_dir: Path, *, model_max_length: int | None = None) -> Path:
    """Write ``tokenizer.model``, ``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``.

    The directory appears complete or not at all: files are written to a temporary sibling directory that then
    replaces ``out_dir``.
    """
    model_file, out_dir = Path(model_file), Path(out_dir)
    proto = _load_proto(model_file)
    tok = build_hf_tokenizer(model_file)
    ts = proto.trainer_spec
    names = {
        k: v
        for k, v in (
            ("bos_token", _special(proto, ts.bos_id)),
            ("eos_token", _special(proto, ts.eos_id)),
            ("unk_token", _special(proto, ts.unk_id)),
            ("pad_token", _special(proto, ts.pad_id)),
        )
        if v is not None
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **names,
        # The post-processor adds BOS; decoding must not "clean up" spaces, or it would differ from SentencePiece.
        "clean_up_tokenization_spaces": False,
        # SentencePiece reads a literal "<s>" or "</s>" in the input as text; so must we (also a safety property:
        # text from a document cannot inject an end-of-sequence). transformers applies this to the Rust backend.
        "split_special_tokens": True,
        "model_max_length": model_max_length or int(1e30),
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        shutil.copyfile(model_file, tmp / "tokenizer.model")
        tok.save(str(tmp / "tokenizer.json"))
        (tmp / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        (tmp / "special_tokens_map.json").write_text(json.dumps(names, indent=2, ensure_ascii=False) + "\n")
        publish_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s -> %s (%d pieces)", model_file, out_dir, len(proto.pieces))
    return out_dir


def load_hf(hf_dir: Path):
    """``AutoTokenizer.from_pretrained(hf_dir)`` offline (never remote code)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(hf_dir), local_files_only=True, trust_remote_code=False)


def check_equivalence(model_file: Path, hf_dir: Path, texts: Iterable[str], *, max_examples: int = 5) -> dict:
    """Compare SentencePiece and the exported HF tokenizer on ``texts``: ids with BOS, and decode.

    Returns ``{"texts", "id_mismatches", "decode_mismatches", "examples"}``; examples hold the first mismatches.
    """
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    hf = load_hf(hf_dir)
    texts = [t for t in texts if isinstance(t, str)]
    sp_ids = sp.encode(texts, add_bos=sp.bos_id() >= 0) if texts else []
    hf_ids = hf(texts)["input_ids"] if texts else []
    id_bad = dec_bad = 0
    examples = []
    for text, a, b in zip(texts, sp_ids, hf_ids, strict=True):
        da, db = sp.decode(a), hf.decode(a, skip_special_tokens=True)
        bad_ids, bad_dec = a != b, da != db
        id_bad += bad_ids
        dec_bad += bad_dec
        if (bad_ids or bad_dec) and len(examples) < max_examples:
            examples.append(
                {"text": text[:200], "spm": a[:40], "hf": b[:40], "spm_decode": da[:200], "hf_decode": db[:200]}
            )
    return {"texts": len(texts), "id_mismatches": id_bad, "decode_mismatches": dec_bad, "examples": examples}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    out = export_hf(Path(argv[0]), Path(argv[1]))
    if len(argv) > 2:
        lines = Path(argv[2]).read_text(encoding="utf-8", errors="replace").splitlines()
        res = check_equivalence(Path(argv[0]), out, lines)
        print(json.dumps(res, ensure_ascii=False, indent=1))
        return 1 if res["id_mismatches"] or res["decode_mismatches"] else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
