"""Which bases each token covers, and how many tokens a masked-LM collator masks together."""

from __future__ import annotations

from typing import Any

import numpy as np

from .tokenization import _as_text, tokenizer_info

__all__ = ["mask_span", "token_base_spans"]


def token_base_spans(tokenizer: Any, sequence: str | bytes | np.ndarray) -> np.ndarray:
    """Bases covered by each token of a sequence.

    Parameters
    ----------
    tokenizer
        A tokenizer: a fast one (its offsets), or one whose tokens spell the sequence.
    sequence
        The sequence: ``str``, ``bytes`` or a ``uint8`` array of ASCII codes.

    Returns
    -------
    numpy.ndarray
        ``int64`` array of shape ``(n_tokens, 2)``: for every non-special token, in order,
        the 0-based half-open ``[start, end)`` of the bases it covers. Overlapping k-mers
        give overlapping spans. No truncation is applied.

    Examples
    --------
    >>> from genlm_sc.models import build_tokenizer, token_base_spans
    >>> token_base_spans(build_tokenizer("kmer", k=3), "ACGTA").tolist()
    [[0, 3], [1, 4], [2, 5]]
    """
    text = _as_text(sequence)
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                            return_special_tokens_mask=True, verbose=False)  # fmt: skip
        spans = np.asarray(encoded["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        keep = np.asarray(encoded["special_tokens_mask"], dtype=bool).reshape(-1)
        return spans[~keep]
    return _spans_from_token_text(tokenizer, text)


def _spans_from_token_text(tokenizer: Any, text: str) -> np.ndarray:
    """Spans of a tokenizer without offsets (a Python tokenizer such as Nucleotide
    Transformer's ``EsmTokenizer``) from the lengths of its tokens' text, which must spell
    the sequence (case aside) one token after another."""
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    if "".join(tokens).upper() != text.upper():
        raise ValueError(
            f"{type(tokenizer).__name__} gives no offsets and its tokens do not spell the "
            "sequence back; which bases a token covers is unknown"
        )
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    ends = np.cumsum(lengths)
    return np.stack([ends - lengths, ends], axis=1).reshape(-1, 2)


def mask_span(tokenizer: Any) -> int:
    """How many consecutive tokens a masked-LM collator must mask together.

    With overlapping k-mers one base appears in ``k`` neighbouring tokens, so a masked base
    could be read off the unmasked neighbours unless ``k`` consecutive tokens are masked.

    Parameters
    ----------
    tokenizer
        Any tokenizer (kind as given by :func:`tokenizer_info`).

    Returns
    -------
    int
        ``k`` for ``"kmer"`` tokenizers, 1 otherwise.
    """
    info = tokenizer_info(tokenizer)
    return int(info["k"]) if info["kind"] == "kmer" else 1
