"""Texts and tiny-tokenizer helpers shared by several test modules (test modules never import each other).

``JA_SENTENCES`` / ``EN_SENTENCES``: manual-page style sentences that the corpus, tokenizer, training and evaluation
tests assemble into documents. ``EN`` / ``JA`` / ``JA_HELDOUT``: the training and held-out lines of the tiny
SentencePiece models of the vocabulary-expansion tests; ``BATTERY``: texts without any Japanese-script character, on
which an expanded vocabulary must tokenise exactly like its base. :func:`train_spm` trains a Llama-style BPE model
in memory; :func:`spm_processor` opens one.

Not a test module: pytest collects nothing here.
"""

from __future__ import annotations

import io
from pathlib import Path

import sentencepiece as spm

JA_SENTENCES = [
    "この章では、設定ファイルの書き方について順番に説明します。",
    "まず、ホームディレクトリに新しいフォルダーを作成してください。",
    "次に、エディターでファイルを開いて内容を確認しましょう。",
    "保存したあとは、端末からコマンドを実行して結果を見てみます。",
    "うまく動かないときは、ログに出力されたメッセージを読んでください。",
    "多くの場合、原因は小さな書き間違いであることがわかります。",
    "権限が足りない場合には、管理者に相談するのがよいでしょう。",
    "古い設定は念のためにバックアップとして残しておきます。",
    "このような手順を何度か繰り返すと、作業にも慣れてきます。",
    "詳しい説明は、付録にまとめた資料を参照してください。",
    "ネットワークの設定は、環境によって少しずつ異なります。",
    "同じ作業を自動化したいときは、簡単なスクリプトを書きます。",
    "文字コードの違いによって、表示が乱れることもあります。",
    "そのため、ファイルは必ず同じ形式で保存するようにしてください。",
    "最後に、変更した内容を仲間と共有して確認してもらいます。",
    "わからない言葉があれば、用語集で意味を調べてみましょう。",
    "画面の表示が変わらないときは、一度ログアウトしてください。",
    "新しい機能を試す前に、現在の状態を記録しておくと安心です。",
    "この方法は、小さなサーバーでも大きなサーバーでも使えます。",
    "ここまでの内容を理解できたら、次の章に進んでください。",
    "もし途中で失敗しても、最初からやり直せば問題ありません。",
    "設定を変えたあとは、サービスを再起動する必要があります。",
    "利用者の数が増えると、必要なメモリーの量も増えていきます。",
    "それぞれの項目について、短い例を使って説明していきます。",
]
EN_SENTENCES = [
    "This chapter explains how the configuration file is organised.",
    "First, create a new directory in your home folder.",
    "Then open the file in an editor and look at its contents.",
    "After saving, run the command from a terminal and check the result.",
    "When something goes wrong, read the messages written to the log.",
    "In many cases the cause turns out to be a small typing mistake.",
    "If you lack the permissions, ask the administrator for help.",
    "Keep the old settings as a backup, just in case.",
    "After repeating these steps a few times the work becomes familiar.",
    "The appendix collects further material on every topic covered here.",
    "Network settings differ slightly from one environment to another.",
    "To automate the same task, write a short script.",
    "Different character encodings can garble what the screen shows.",
    "Always save files in the same format for that reason.",
    "Finally, share your changes with a colleague and ask for a review.",
    "Look up unfamiliar words in the glossary at the end of the book.",
]
EN = [
    "The quick brown fox jumps over the lazy dog.",
    "Use the --force option to overwrite the existing configuration file.",
    "This program is free software; you can redistribute it and/or modify it.",
    "The kernel allocates memory for the new process and returns its identifier.",
    "If the file does not exist, the command creates it with mode 0644.",
    "Linux is a family of open source operating systems based on the kernel.",
    "Install the package with apt-get install python3-numpy and restart the server.",
    "The function returns zero on success and a negative error code on failure.",
    "Set the environment variable HOME before running the installation script.",
    "Each thread has its own stack, but all threads share the same address space.",
    "Print the version number and exit; see the manual page for more details.",
    "The network interface is configured by the DHCP client at boot time.",
]
JA = [
    "吾輩は猫である。名前はまだ無い。",
    "このプログラムはフリーソフトウェアです。再配布や変更ができます。",
    "ファイルが存在しない場合、コマンドは新しいファイルを作成します。",
    "カーネルは新しいプロセスのためにメモリを割り当て、その識別子を返します。",
    "設定ファイルを上書きするには --force オプションを使います。",
    "関数は成功すると 0 を返し、失敗するとエラーコードを返します。",
    "インストールする前に環境変数 HOME を設定してください。",
    "各スレッドは自分のスタックを持ちますが、アドレス空間は共有します。",
    "ネットワークインターフェースは起動時に DHCP クライアントによって設定されます。",
    "詳しくはマニュアルページを参照してください。Linux のカーネルについて説明します。",
    "日本語の文章を正しく処理するために、文字コードは UTF-8 を使用します。",
    "東京都の天気は晴れです。明日は雨が降るでしょう。",
]
JA_HELDOUT = [
    "新しいファイルを作成するには、このコマンドを使ってください。",
    "プロセスが終了すると、カーネルはメモリを解放します。",
    "設定を変更した後は、サーバーを再起動してください。",
]
# Llama 2's SentencePiece trainer options (BPE, byte fallback, split digits).
LLAMA = dict(
    model_type="bpe", byte_fallback=True, split_digits=True, allow_whitespace_only_pieces=True,
    add_dummy_prefix=True, remove_extra_whitespaces=False, max_sentencepiece_length=16,
    character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, hard_vocab_limit=False,
    minloglevel=2, num_threads=1,
)

# Texts without any Japanese-script character: the invariance claim covers all of them.
BATTERY = EN + [
    "def merge(a, b):\n    return {**a, **b}  # dict union",
    "for (int i = 0; i < n; ++i) { sum += x[i]; }",
    "3.14159 2718281828 1,000,000 0x7fff -42 1e-9",
    "tabs\tand\t\ttabs and    four spaces     and trailing   ",
    "   leading spaces and\nnewlines\n\n\nand\r\ncarriage returns",
    "emoji 😀🎉👍🏽 and flags 🇯🇵 and ZWJ 👨‍👩‍👧",
    "café naïve résumé Ærøskøbing — “quotes” ‘single’ → arrows ≤ ≥ × ÷",
    "Привет мир, Γειά σου κόσμε, مرحبا",
    "control \x01\x02\x1b[31m chars \x7f",
    "",
    " ",
    "\n",
    "▁ literal markers ▁▁",
    "<s> </s> <unk> <0x41> <unused_0>",
]


def train_spm(sents: list[str], vocab: int, **kw) -> bytes:
    """A SentencePiece model trained on ``sents`` with Llama 2's trainer options (``kw`` overrides them)."""
    bio = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sents), model_writer=bio, vocab_size=vocab,
                                   **{**LLAMA, **kw})
    return bio.getvalue()


def spm_processor(model: bytes | str | Path) -> spm.SentencePieceProcessor:
    """A processor for a serialized model or a ``.model`` file."""
    if isinstance(model, bytes):
        return spm.SentencePieceProcessor(model_proto=model)
    return spm.SentencePieceProcessor(model_file=str(model))
