"""Base SentencePiece tokenizers, obtained offline and verified, and a Llama-2-style trainer.

* ``build_llama2_tokenizer(dest)`` rebuilds Meta's exact Llama 2 ``tokenizer.model`` from the vocabulary file
  ``ggml-vocab-llama-spm.gguf`` that ships inside the ``llama-cpp-python==0.3.36`` *sdist* (downloaded, never
  installed): pieces, scores and types come from the GGUF, the trainer/normalizer spec is Meta's published one.
  The result must have md5 ``eeec4125e9c7560836b4873b6f8e3025`` (Meta's ``tokenizer_checklist.chk``); anything
  else is an error and nothing is left on disk. The vocabulary is Meta's: build it, never commit it.
* ``mistral_v1_model(dest)`` copies Mistral-7B v0.1's ``tokenizer.model`` out of the ``mistral-common`` wheel.
* ``train_sentencepiece(texts, vocab_size, out_prefix)`` trains a SentencePiece BPE with Llama 2's trainer settings.

Every output is written atomically (temporary file in the destination directory, then ``os.replace``).

    python -m swallowlib.tokenizer.base runs/llama2/tokenizer.model      # rebuild + verify Llama 2's model
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from swallowlib.provenance import write_bytes_atomic

log = logging.getLogger(__name__)

#: md5 of Meta's Llama 2 ``tokenizer.model`` (``tokenizer_checklist.chk``; 499,723 bytes).
LLAMA2_MD5 = "eeec4125e9c7560836b4873b6f8e3025"
LLAMA2_SDIST = ("llama-cpp-python", "0.3.36")
LLAMA2_GGUF_MEMBER = "vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf"
MISTRAL_WHEEL = ("mistral-common", "1.13.1")
MISTRAL_V1_MEMBER = "mistral_common/data/tokenizer.model.v1"

_NORMAL = sp_pb2.ModelProto.SentencePiece.NORMAL


class TokenizerBuildError(RuntimeError):
    """A base tokenizer could not be obtained, verified or trained; the message is one line naming the cause."""


# --------------------------------------------------------------------------------------------------------------
# Writing


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# --------------------------------------------------------------------------------------------------------------
# Llama 2 from the GGUF vocabulary


def read_gguf_vocab(gguf_path: Path) -> tuple[list[str], list[float], list[int]]:
    """Pieces, scores and token types of a GGUF file (its types use SentencePiece's enum: 1 = NORMAL, ...)."""
    import gguf  # imported lazily: only this path needs it

    try:
        reader = gguf.GGUFReader(str(gguf_path))
        fields = reader.fields
        pieces = list(fields["tokenizer.ggml.tokens"].contents())
        scores = [float(s) for s in fields["tokenizer.ggml.scores"].contents()]
        types = [int(t) for t in fields["tokenizer.ggml.token_type"].contents()]
    except (KeyError, ValueError, OSError) as e:
        raise TokenizerBuildError(f"{gguf_path}: not a GGUF tokenizer vocabulary ({type(e).__name__}: {e})") from e
    if not (len(pieces) == len(scores) == len(types)) or not pieces:
        raise TokenizerBuildError(
            f"{gguf_path}: inconsistent vocabulary ({len(pieces)} tokens, {len(scores)} scores, {len(types)} types)"
        )
    return pieces, scores, types


def _set_llama2_specs(proto: sp_pb2.ModelProto, vocab_size: int) -> None:
    """Meta's published trainer/normalizer spec of Llama 2's tokenizer.model.

    Which fields are *present* matters for byte identity (proto2 presence): exactly these are set, in Meta's file.
    """
    ts = proto.trainer_spec
    ts.input.append("/large_experiments/theorem/datasets/MERGED/all.test1.merged")
    ts.model_prefix = "spm_model_32k_200M_charcov099995_allowWSO__v2"
    ts.model_type = sp_pb2.TrainerSpec.BPE
    ts.vocab_size = vocab_size
    ts.self_test_sample_size = 0
    ts.input_format = "text"
    ts.character_coverage = 0.99995
    ts.input_sentence_size = 200000000
    ts.seed_sentencepiece_size = 1000000
    ts.shrinking_factor = 0.75
    ts.num_threads = 80
    ts.num_sub_iterations = 2
    ts.max_sentence_length = 4192
    ts.shuffle_input_sentence = True
    ts.max_sentencepiece_length = 16
    ts.split_by_unicode_script = True
    ts.split_by_whitespace = True
    ts.split_by_number = True
    ts.treat_whitespace_as_suffix = False
    ts.split_digits = True
    ts.allow_whitespace_only_pieces = True
    ts.vocabulary_output_piece_score = True
    ts.hard_vocab_limit = True
    ts.use_all_vocab = False
    ts.byte_fallback = True
    ts.required_chars = ""
    ts.unk_id, ts.bos_id, ts.eos_id, ts.pad_id = 0, 1, 2, -1
    ts.unk_surface = " \u2047 "
    ts.unk_piece, ts.bos_piece, ts.eos_piece, ts.pad_piece = "<unk>", "<s>", "</s>", "<pad>"
    ts.train_extremely_large_corpus = False
    ts.enable_differential_privacy = False
    ts.differential_privacy_noise_level = 0.0
    ts.differential_privacy_clipping_threshold = 0
    ns = proto.normalizer_spec
    ns.name = "identity"
    ns.precompiled_charsmap = b""
    ns.add_dummy_prefix = True
    ns.remove_extra_whitespaces = False
    ns.normalization_rule_tsv = ""


def llama2_model_proto(gguf_path: Path) -> sp_pb2.ModelProto:
    """A SentencePiece ``ModelProto`` from a GGUF vocabulary plus Llama 2's trainer/normalizer spec."""
    pieces, scores, types = read_gguf_vocab(gguf_path)
    proto = sp_pb2.ModelProto()
    for piece, score, typ in zip(pieces, scores, types, strict=True):
        p = proto.pieces.add()
        p.piece = piece
        p.score = score
        if typ != _NORMAL:  # Meta's file leaves NORMAL implicit (the proto default)
            p.type = typ
    _set_llama2_specs(proto, len(pieces))
    return proto


def _gguf_from_sdist(tar_path: Path, dest: Path) -> Path:
    """Copy the one GGUF member out of the sdist tarball (without unpacking the other 76 MB)."""
    with tarfile.open(tar_path) as tar:
        member = next((m for m in tar if m.isfile() and m.name.endswith("/" + LLAMA2_GGUF_MEMBER)), None)
        if member is None:
            raise TokenizerBuildError(f"{tar_path}: has no {LLAMA2_GGUF_MEMBER}")
        dest.write_bytes(tar.extractfile(member).read())
    return dest


def build_llama2_tokenizer(dest: Path, *, gguf_path: Path | None = None, expected_md5: str = LLAMA2_MD5) -> Path:
    """Rebuild Llama 2's ``tokenizer.model`` at ``dest`` (a file path) and verify its md5.

    ``gguf_path`` defaults to the GGUF inside the fetched ``llama-cpp-python`` sdist. An existing ``dest`` with the
    right md5 is reused. A mismatch raises :class:`TokenizerBuildError` and writes nothing.
    """
    dest = Path(dest)
    if dest.is_file() and md5_bytes(dest.read_bytes()) == expected_md5:
        return dest
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if gguf_path is None:
            from swallowlib.corpus.fetch import fetch
            from swallowlib.corpus.sources import Archive

            fetched = fetch(Archive("pypi", LLAMA2_SDIST[0], LLAMA2_SDIST[1], sdist=True))
            gguf_path = _gguf_from_sdist(fetched.path, Path(tmp) / "vocab.gguf")
        data = llama2_model_proto(gguf_path).SerializeToString()
    got = md5_bytes(data)
    if got != expected_md5:
        raise TokenizerBuildError(
            f"{dest}: rebuilt tokenizer.model from {gguf_path.name} has md5 {got}, expected {expected_md5}"
        )
    write_bytes_atomic(dest, data)
    log.info("Llama 2 tokenizer.model rebuilt (%d bytes, md5 ok) in %.1fs", len(data), time.perf_counter() - t0)
    return dest


# --------------------------------------------------------------------------------------------------------------
# Mistral v1


def mistral_v1_model(dest: Path) -> Path:
    """Mistral-7B v0.1's ``tokenizer.model`` (Apache-2.0), copied from the ``mistral-common`` wheel to ``dest``."""
    from swallowlib.corpus.fetch import fetch
    from swallowlib.corpus.sources import Archive

    dest = Path(dest)
    fetched = fetch(Archive("pypi", *MISTRAL_WHEEL))
    try:
        with zipfile.ZipFile(fetched.path) as zf:
            data = zf.read(MISTRAL_V1_MEMBER)
    except (KeyError, zipfile.BadZipFile) as e:
        raise TokenizerBuildError(f"{fetched.path}: cannot read {MISTRAL_V1_MEMBER} ({e})") from e
    try:  # a truncated or foreign file must fail here, not at first use
        spm.SentencePieceProcessor(model_proto=data)
    except RuntimeError as e:
        raise TokenizerBuildError(f"{fetched.path}: {MISTRAL_V1_MEMBER} is not a SentencePiece model") from e
    return write_bytes_atomic(dest, data)


# --------------------------------------------------------------------------------------------------------------
# Training


def llama2_trainer_options(character_coverage: float = 0.99995) -> dict:
    """Llama 2's trainer settings (as stored in its released tokenizer model), as ``SentencePieceTrainer.train``
    keyword arguments."""
    return dict(
        byte_fallback=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        split_by_unicode_script=True,
        split_by_whitespace=True,
        split_by_number=True,
        max_sentencepiece_length=16,
        max_sentence_length=4192,
        character_coverage=character_coverage,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        vocabulary_output_piece_score=True,
        hard_vocab_limit=True,
    )


def _lines(texts: Iterable[str]) -> Iterator[str]:
    # SentencePiece's own file reader treats one line as one sentence; documents are split the same way so a
    # newline never becomes part of a piece.
    for text in texts:
        if not isinstance(text, str):
            continue
        for line in text.split("\n"):
            if line.strip():
                yield line


def train_sentencepiece(
    texts: Iterable[str],
    vocab_size: int,
    out_prefix: Path,
    *,
    model_type: str = "bpe",
    normalization: str = "identity",
    llama_like: bool = True,
    seed: int = 0,
    character_coverage: float = 0.99995,
    input_sentence_size: int = 0,
    num_threads: int = 1,
    **extra,
) -> Path:
    """Train a SentencePiece model on ``texts`` and write ``<out_prefix>.model`` atomically; return its path.

    ``normalization`` is ``"identity"`` (Llama 2) or ``"nfkc"``. ``llama_like`` applies Llama 2's trainer settings
    (byte fallback, digit splitting, whitespace-only pieces, ...). Training is deterministic for a given ``seed``:
    SentencePiece's random generator is seeded, and ``num_threads=1`` (the default) avoids thread-order effects.
    ``input_sentence_size`` > 0 samples that many lines (shuffled with the seed). ``extra`` goes to the trainer.
    """
    if not isinstance(vocab_size, int) or vocab_size <= 0:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    if normalization not in ("identity", "nfkc"):
        raise ValueError(f"normalization must be 'identity' or 'nfkc', got {normalization!r}")
    out = Path(f"{out_prefix}.model")
    opts: dict = (
        llama2_trainer_options(character_coverage) if llama_like else {"character_coverage": character_coverage}
    )
    opts.update(
        model_type=model_type,
        vocab_size=vocab_size,
        normalization_rule_name=normalization,
        num_threads=num_threads,
        input_sentence_size=input_sentence_size,
        shuffle_input_sentence=input_sentence_size > 0,
        minloglevel=2,
    )
    opts.update(extra)
    spm.set_random_generator_seed(seed)
    buf = io.BytesIO()
    t0 = time.perf_counter()
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=_lines(texts), model_writer=buf, **opts)
    except RuntimeError as e:
        msg = " ".join(str(e).split())
        if m := re.search(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)", msg):
            raise TokenizerBuildError(
                f"{out}: corpus too small for vocab_size={vocab_size} (this corpus allows at most {m[1]})"
            ) from e
        if m := re.search(r"Vocabulary size is smaller than required_chars\. \d+ vs (\d+)", msg):
            raise TokenizerBuildError(
                f"{out}: vocab_size={vocab_size} is below the {m[1]} characters and meta pieces this corpus needs"
                " (raise vocab_size or lower character_coverage)"
            ) from e
        if "sentences_.empty()" in msg:
            raise TokenizerBuildError(f"{out}: no training sentences (empty corpus)") from e
        raise TokenizerBuildError(f"{out}: SentencePiece training failed ({msg})") from e
    data = buf.getvalue()
    if not data:
        raise TokenizerBuildError(f"{out}: SentencePiece produced no model (empty corpus?)")
    write_bytes_atomic(out, data)
    log.info("trained %s (%d pieces, %s) in %.1fs", out, vocab_size, normalization, time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    dest = Path(argv[0]) if argv else Path("tokenizer.model")
    try:
        path = build_llama2_tokenizer(dest)
    except TokenizerBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
