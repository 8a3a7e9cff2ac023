"""Stage 01: the corpus. See ``swallowlib.corpus.pipeline`` for the entry point."""
