"""Stage 03: the base model, vocabulary resize and initialisation of the new rows (``notebooks/03_embedding_init``).

``methods`` (resize + the four init methods), ``focus`` (FOCUS-style weights), ``evaluate`` (bits per character).
"""
