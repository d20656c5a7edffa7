"""Hugging Face fast tokenizers for DNA: single bases, k-mers and BPE.

Four kinds, all sharing the same special tokens and conventions:

``"char"``
    One token per base.
``"kmer"``
    Overlapping k-mers, stride 1 (DNABERT): a sequence of length ``L`` gives ``L - k + 1``
    tokens, token ``i`` covering bases ``[i, i + k)``. A k-mer with any non-ACGT base is
    ``[UNK]``. The vocabulary is exactly the ``4**k`` k-mers plus the 5 special tokens.
``"nt_kmer"``
    Non-overlapping k-mers read left to right (Nucleotide Transformer), with single-base
    tokens wherever a full ACGT k-mer does not fit (at the end, around ``N``).
``"bpe"``
    Byte-pair encoding learnt from a corpus of sequences (DNABERT-2).

Every tokenizer has ``[PAD]``, ``[UNK]``, ``[CLS]``, ``[SEP]``, ``[MASK]`` as ids 0 to 4, then
its vocabulary; adds ``[CLS] … [SEP]`` around a sequence (``add_special_tokens=False`` gives
the sequence tokens alone); reads input case-insensitively, every character other than
A, C, G, T counting as ``N``; and pads on the right. The kind and ``k`` are stored in the
tokenizer's init kwargs (``genlm_kind``, ``genlm_k``), so they survive ``save_pretrained``
and :func:`tokenizer_info` can read them back.

Overlapping k-mers cannot be written as a ``tokenizer.json`` alone, so ``"kmer"`` tokenizers
are :class:`KmerTokenizerFast`, which cuts the sequence into k-mers in Python before the Rust
backend. Importing this module registers that class with ``transformers.AutoTokenizer``, so
``AutoTokenizer.from_pretrained`` on a saved k-mer tokenizer returns it again.
"""

from __future__ import annotations

import itertools
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import BpeTrainer
from transformers import AutoTokenizer, BatchEncoding, PreTrainedTokenizerFast
from transformers.models.auto import tokenization_auto

from .._dna import BASES

__all__ = [
    "KINDS",
    "SPECIAL_TOKENS",
    "KmerTokenizerFast",
    "build_tokenizer",
    "load_tokenizer",
    "tokenizer_info",
]

#: Special tokens, in id order 0 to 4.
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: The tokenizer kinds :func:`build_tokenizer` makes.
KINDS: tuple[str, ...] = ("char", "kmer", "nt_kmer", "bpe")
#: Corpus sequences are cut into pieces of at most this many bases to train BPE.
BPE_PIECE_LENGTH = 1_000
#: Largest k accepted for the k-mer kinds (the vocabulary grows as ``4**k``).
MAX_K = 10

_KIND_KEY = "genlm_kind"
_K_KEY = "genlm_k"
_NOT_BASE = re.compile(r"[^ACGTacgt]")
_TO_UPPER = str.maketrans("acgt", "ACGT")
_DNA_TOKEN = re.compile(r"[ACGTN]+")
#: Share of the non-special vocabulary that must be DNA strings to guess a DNA kind.
_DNA_SHARE = 0.9


# --------------------------------------------------------------------------- sequences


def _as_text(sequence: str | bytes | np.ndarray) -> str:
    """A sequence as ``str``: ``str`` as is, ``bytes`` or ``uint8`` ASCII codes decoded."""
    if isinstance(sequence, str):
        return sequence
    if isinstance(sequence, bytes | bytearray):
        return sequence.decode("ascii")
    array = np.asarray(sequence)
    if array.dtype != np.uint8 or array.ndim != 1:
        raise TypeError(
            f"a sequence must be str, bytes or a 1-D uint8 array of ASCII codes, "
            f"not {type(sequence).__name__} of dtype {array.dtype}"
        )
    return array.tobytes().decode("ascii")


def _normalize(text: str) -> str:
    """Upper-case A/C/G/T, every other character ``N`` (length and offsets unchanged)."""
    return _NOT_BASE.sub("N", text).translate(_TO_UPPER)


def _kmers(text: str, k: int) -> list[str]:
    """The overlapping k-mers of normalised ``text`` (a k-mer holding ``N``: ``[UNK]``)."""
    text = _normalize(text)
    kmers = [text[i : i + k] for i in range(len(text) - k + 1)]
    return [SPECIAL_TOKENS[1] if "N" in kmer else kmer for kmer in kmers]


def _all_kmers(k: int) -> list[str]:
    """All ``4**k`` ACGT k-mers in lexicographic order."""
    return ["".join(letters) for letters in itertools.product(BASES, repeat=k)]


# --------------------------------------------------------------------------- backends


def _normalizer(*, keep_whitespace: bool = False) -> normalizers.Normalizer:
    """Rust normaliser equivalent to :func:`_normalize` (whitespace optionally kept)."""
    other = r"[^ACGT\s]" if keep_whitespace else r"[^ACGT]"
    steps = [normalizers.Replace(base.lower(), base) for base in BASES]
    return normalizers.Sequence([*steps, normalizers.Replace(Regex(other), "N")])


def _post_processor() -> processors.TemplateProcessing:
    """``[CLS] A [SEP]`` for one sequence, ``[CLS] A [SEP] B [SEP]`` for a pair."""
    cls, sep = SPECIAL_TOKENS[2], SPECIAL_TOKENS[3]
    return processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, 2), (sep, 3)],
    )


def _finish(backend: Tokenizer, *, normalizer: normalizers.Normalizer) -> Tokenizer:
    """Attach the normaliser, post-processor and special tokens shared by every kind."""
    backend.normalizer = normalizer
    backend.post_processor = _post_processor()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return backend


def _word_level(tokens: list[str]) -> Tokenizer:
    """A WordLevel backend over the special tokens followed by ``tokens``."""
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *tokens])}
    return Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS[1]))


def _char_backend() -> Tokenizer:
    backend = _word_level([*BASES, "N"])
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return _finish(backend, normalizer=_normalizer())


def _kmer_backend(k: int, kmers: list[str] | None = None) -> Tokenizer:
    # The Python side hands the backend one k-mer per word. On its own (loaded without
    # genlm_sc) the backend reads whitespace-separated k-mers, as DNABERT did. ``kmers``:
    # the k-mers in the order of a published vocabulary (default: ACGT order).
    backend = _word_level(kmers or _all_kmers(k))
    # No unknown token in the backend (Python maps N k-mers to [UNK]): plain transformers fails
    backend.model = models.WordLevel(backend.get_vocab(), unk_token=None)
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return _finish(backend, normalizer=_normalizer(keep_whitespace=True))


def _nt_kmer_backend(k: int) -> Tokenizer:
    backend = _word_level([*_all_kmers(k), *BASES, "N"])
    pattern = Regex(f"[ACGT]{{{k}}}|.")
    backend.pre_tokenizer = pre_tokenizers.Split(pattern, behavior="isolated")
    backend.decoder = decoders.Fuse()
    return _finish(backend, normalizer=_normalizer())


def _corpus_pieces(corpus: Iterable[Any], piece_length: int) -> Iterator[str]:
    """Normalised corpus sequences cut into pieces of at most ``piece_length`` bases."""
    for sequence in corpus:
        text = _normalize(_as_text(sequence))
        for start in range(0, len(text), piece_length):
            yield text[start : start + piece_length]


def _bpe_backend(corpus: Iterable[Any], vocab_size: int) -> Tokenizer:
    backend = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS[1]))
    backend.normalizer = _normalizer()
    backend.decoder = decoders.Fuse()
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=[*BASES, "N"],
        limit_alphabet=len(BASES) + 1,
        show_progress=False,
    )
    backend.train_from_iterator(_corpus_pieces(corpus, BPE_PIECE_LENGTH), trainer=trainer)
    return _finish(backend, normalizer=backend.normalizer)


# --------------------------------------------------------------------------- k-mer class


class KmerTokenizerFast(PreTrainedTokenizerFast):
    """Fast tokenizer for overlapping k-mers (stride 1), as DNABERT.

    Text is normalised and cut into its ``L - k + 1`` k-mers in Python, then encoded by the
    Rust backend as pre-split words, so every normal call option works (batches, padding,
    truncation, tensors, special-token and attention masks). ``offset_mapping`` is given in
    bases of the original sequence: token ``i`` covers ``[i, i + k)``; ``word_ids()`` is the
    first base of each k-mer. Other character-level helpers of the returned encoding
    (``token_to_chars``, ``char_to_token``) refer to positions inside one k-mer and should
    not be used. Sequences shorter than ``k`` give no k-mer tokens.

    ``decode`` rebuilds the sequence from the k-mers; bases seen only through ``[UNK]``
    k-mers come back as ``N``.

    Build one with :func:`build_tokenizer` (``kind="kmer"``) rather than directly.
    """

    @property
    def kmer_size(self) -> int:
        """``k``, the length of a token in bases."""
        return int(self.init_kwargs[_K_KEY])

    def _to_words(self, text: Any) -> Any:
        """A sequence as its list of k-mers, a batch as a list of such lists."""
        if text is None:
            return None
        if isinstance(text, str):
            return _kmers(text, self.kmer_size)
        if isinstance(text, list | tuple):
            if not text:
                raise ValueError("cannot tokenize an empty batch")
            return [_kmers(item, self.kmer_size) for item in text]
        raise TypeError(f"expected a sequence string or a list of them, not {type(text).__name__}")

    def _encode_plus(self, text: Any, text_pair: Any = None, **kwargs: Any) -> BatchEncoding:
        if not kwargs.pop("is_split_into_words", False):
            text, text_pair = self._to_words(text), self._to_words(text_pair)
        return_tensors = kwargs.pop("return_tensors", None)
        batched = bool(text) and isinstance(text[0], list | tuple)
        single = not batched and not kwargs.get("return_overflowing_tokens", False)
        encoded = super()._encode_plus(
            text, text_pair=text_pair, is_split_into_words=True, return_tensors=None, **kwargs
        )
        if kwargs.get("return_offsets_mapping", False):
            rows = [self._base_offsets(encoding) for encoding in encoded.encodings]
            encoded["offset_mapping"] = rows[0] if single else rows
        if return_tensors is None:
            return encoded
        data = {key: [value] for key, value in encoded.items()} if single else dict(encoded)
        return BatchEncoding(data, encoded.encodings, tensor_type=return_tensors)

    def _base_offsets(self, encoding: Any) -> list[tuple[int, int]]:
        """``(i, i + k)`` for the k-mer starting at base ``i``; ``(0, 0)`` for special tokens."""
        k = self.kmer_size
        return [(0, 0) if word is None else (word, word + k) for word in encoding.word_ids]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Join tokens: runs of k-mers become the sequence they overlap into."""
        specials = set(self.all_special_tokens) - {self.unk_token}
        pieces: list[str] = []
        run: list[str] = []
        for token in tokens:
            if token in specials:
                pieces.extend([self._assemble(run), token])
                run = []
            else:
                run.append(token)
        pieces.append(self._assemble(run))
        return "".join(pieces)

    def _assemble(self, kmers: list[str]) -> str:
        """The sequence spelled by consecutive overlapping k-mers (``N`` where unknown)."""
        if not kmers:
            return ""
        k, unknown = self.kmer_size, self.unk_token
        bases = ["N"] * (len(kmers) + k - 1)
        for i, kmer in enumerate(kmers):
            if kmer != unknown and len(kmer) == k:
                bases[i : i + k] = kmer
        return "".join(bases)

    def _decode(
        self,
        token_ids: int | list[int],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> str:
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        skip = set(self.all_special_ids) - {self.unk_token_id} if skip_special_tokens else set()
        tokens = [self._tokenizer.id_to_token(int(i)) for i in token_ids if int(i) not in skip]
        return self.convert_tokens_to_string(tokens)


def _register_kmer_class() -> None:
    """Let ``AutoTokenizer`` resolve the saved ``tokenizer_class`` to :class:`KmerTokenizerFast`.

    ``save_pretrained`` writes ``"KmerTokenizer"`` (it drops the ``Fast`` suffix) and
    ``AutoTokenizer`` looks names up in these two tables before its own mapping.
    ``AutoTokenizer.register`` would also tie the class to a model configuration, which a
    tokenizer on its own does not have.
    """
    tokenization_auto.REGISTERED_TOKENIZER_CLASSES[KmerTokenizerFast.__name__] = KmerTokenizerFast
    tokenization_auto.REGISTERED_FAST_ALIASES["KmerTokenizer"] = KmerTokenizerFast


_register_kmer_class()


# --------------------------------------------------------------------------- public API


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return int(k)


def build_tokenizer(
    kind: str,
    *,
    k: int = 6,
    corpus: Iterable[str | bytes | np.ndarray] | None = None,
    vocab_size: int = 4096,
    model_max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """Build a DNA tokenizer.

    Parameters
    ----------
    kind
        ``"char"`` (one token per base), ``"kmer"`` (overlapping k-mers, DNABERT),
        ``"nt_kmer"`` (non-overlapping k-mers with single-base fallback, Nucleotide
        Transformer) or ``"bpe"`` (byte-pair encoding trained on ``corpus``, DNABERT-2).
    k
        k-mer length for ``"kmer"`` and ``"nt_kmer"`` (1 to :data:`MAX_K`); ignored otherwise.
    corpus
        Training sequences for ``"bpe"`` (required there, ignored otherwise): strings,
        bytes or ``uint8`` ASCII arrays. Long sequences are cut into pieces of
        :data:`BPE_PIECE_LENGTH` bases. Training is deterministic given the corpus.
    vocab_size
        Largest ``"bpe"`` vocabulary, special tokens and the 5 single bases included; the
        vocabulary is smaller when the corpus has fewer pairs seen at least twice.
    model_max_length
        Longest input in tokens, special tokens included.

    Returns
    -------
    PreTrainedTokenizerFast
        A :class:`KmerTokenizerFast` for ``"kmer"``, a plain fast tokenizer otherwise. Save
        with ``save_pretrained``; reload with ``transformers.AutoTokenizer.from_pretrained``
        (after importing :mod:`genlm_sc.models` for ``"kmer"``).

    Examples
    --------
    >>> from genlm_sc.models import build_tokenizer
    >>> tok = build_tokenizer("nt_kmer", k=6)
    >>> tok.tokenize("ACGTACGTACN")
    ['ACGTAC', 'G', 'T', 'A', 'C', 'N']
    >>> build_tokenizer("kmer", k=3).tokenize("ACGTA")
    ['ACG', 'CGT', 'GTA']
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if int(model_max_length) < 1:
        raise ValueError(f"model_max_length must be positive, got {model_max_length!r}")
    stored_k: int | None = 1
    if kind == "char":
        backend = _char_backend()
    elif kind in ("kmer", "nt_kmer"):
        stored_k = _check_k(k)
        backend = _kmer_backend(stored_k) if kind == "kmer" else _nt_kmer_backend(stored_k)
    else:
        if corpus is None:
            raise ValueError('kind="bpe" needs a corpus of sequences to train on')
        if int(vocab_size) < len(SPECIAL_TOKENS) + len(BASES) + 1:
            raise ValueError(f"vocab_size must be at least 10, got {vocab_size!r}")
        backend = _bpe_backend(corpus, int(vocab_size))
        stored_k = None
    cls = KmerTokenizerFast if kind == "kmer" else PreTrainedTokenizerFast
    return cls(
        tokenizer_object=backend,
        pad_token=SPECIAL_TOKENS[0],
        unk_token=SPECIAL_TOKENS[1],
        cls_token=SPECIAL_TOKENS[2],
        sep_token=SPECIAL_TOKENS[3],
        mask_token=SPECIAL_TOKENS[4],
        model_max_length=int(model_max_length),
        padding_side="right",
        truncation_side="right",
        **{_KIND_KEY: kind, _K_KEY: stored_k},
    )


def load_tokenizer(path: str | os.PathLike, **kwargs: Any) -> PreTrainedTokenizerFast:
    """Load a saved tokenizer, as a :class:`KmerTokenizerFast` when it is a k-mer one.

    ``AutoTokenizer.from_pretrained`` finds :class:`KmerTokenizerFast` for a folder holding
    only the tokenizer, or a model whose type has its own tokenizer class (``bert``), but for
    model types mapped to the generic fast tokenizer (``modernbert`` and others) transformers
    ignores the saved ``tokenizer_class`` and returns the generic class, which cannot cut
    overlapping k-mers. This function loads through ``AutoTokenizer`` and reloads such a
    tokenizer as :class:`KmerTokenizerFast`.

    Parameters
    ----------
    path
        Folder written by ``save_pretrained`` (tokenizer alone or with a model). Nothing is
        downloaded: anything else is a :class:`~genlm_sc.models.loading.CheckpointError`.
    **kwargs
        Passed to ``from_pretrained`` (always offline; ``trust_remote_code`` is ``False``
        unless given).

    Returns
    -------
    PreTrainedTokenizerFast
        The tokenizer; any third-party tokenizer comes back as ``AutoTokenizer`` gives it.
    """
    from .loading import from_local

    tokenizer = from_local(AutoTokenizer, path, what="tokenizer", **kwargs)
    if tokenizer.init_kwargs.get(_KIND_KEY) == "kmer" and not isinstance(
        tokenizer, KmerTokenizerFast
    ):
        tokenizer = from_local(KmerTokenizerFast, path, what="tokenizer", **kwargs)
    return _dnabert_kmers(tokenizer) or tokenizer


def _dnabert_kmers(tokenizer: Any) -> KmerTokenizerFast | None:
    """DNABERT's published tokenizer (a BERT ``vocab.txt`` of the five special tokens and
    every k-mer), which reads text already cut into k-mers, as a :class:`KmerTokenizerFast`
    that cuts them itself, with the same token ids; ``None`` for any other tokenizer."""
    if isinstance(tokenizer, KmerTokenizerFast) or "Bert" not in type(tokenizer).__name__:
        return None
    by_id = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    tokens = [token for token, _ in by_id]
    if tokens[: len(SPECIAL_TOKENS)] != list(SPECIAL_TOKENS) or len(tokens) < 9:
        return None
    kmers, k = tokens[len(SPECIAL_TOKENS) :], len(tokens[len(SPECIAL_TOKENS)])
    dense = [i for _, i in by_id] == list(range(len(tokens)))
    if not dense or len(kmers) != 4**k or set(kmers) != set(_all_kmers(k)):
        return None
    return KmerTokenizerFast(
        tokenizer_object=_kmer_backend(k, kmers),
        pad_token=SPECIAL_TOKENS[0], unk_token=SPECIAL_TOKENS[1], cls_token=SPECIAL_TOKENS[2],
        sep_token=SPECIAL_TOKENS[3], mask_token=SPECIAL_TOKENS[4],
        model_max_length=tokenizer.model_max_length, padding_side="right",
        truncation_side="right", **{_KIND_KEY: "kmer", _K_KEY: k},
    )  # fmt: skip


def _guess_info(tokenizer: Any) -> dict[str, Any]:
    """Guess kind and k from the vocabulary of a tokenizer built elsewhere."""
    specials = set(tokenizer.all_special_tokens)
    tokens = [token.upper() for token in tokenizer.get_vocab() if token not in specials]
    dna = [token for token in tokens if _DNA_TOKEN.fullmatch(token)]
    if not tokens or len(dna) < _DNA_SHARE * len(tokens):
        return {"kind": "unknown", "k": None}
    lengths = {len(token) for token in dna}
    longest = max(lengths)
    full_kmers = sum(len(t) == longest and "N" not in t for t in dna) == 4**longest
    if lengths == {1}:
        return {"kind": "char", "k": 1}
    if lengths == {longest} and full_kmers:
        return {"kind": "kmer", "k": longest}
    if lengths == {1, longest} and full_kmers:
        return {"kind": "nt_kmer", "k": longest}
    return {"kind": "bpe", "k": None}


def tokenizer_info(tokenizer: Any) -> dict[str, Any]:
    """What kind of DNA tokenizer this is.

    Parameters
    ----------
    tokenizer
        A tokenizer from :func:`build_tokenizer` (also after save and reload), or any
        Hugging Face tokenizer.

    Returns
    -------
    dict
        ``kind``: ``"char"``, ``"kmer"``, ``"nt_kmer"``, ``"bpe"`` or ``"unknown"``;
        ``k``: the k-mer length (1 for ``"char"``, ``None`` for ``"bpe"``/``"unknown"``);
        ``guessed``: ``False`` when read from genlm_sc metadata, ``True`` when guessed.

    Notes
    -----
    The guess for other tokenizers looks only at the vocabulary without special tokens.
    Unless at least 90 % of it is strings of A/C/G/T/N it is ``"unknown"``. Otherwise:
    only single letters is ``"char"``; exactly all ``4**k`` k-mers of one length is
    ``"kmer"`` (DNABERT, overlapping); all ``4**k`` k-mers plus single letters is
    ``"nt_kmer"``; anything else is ``"bpe"``.
    """
    kind = tokenizer.init_kwargs.get(_KIND_KEY) if hasattr(tokenizer, "init_kwargs") else None
    if kind is None:
        return {**_guess_info(tokenizer), "guessed": True}
    if kind == "kmer" and not isinstance(tokenizer, KmerTokenizerFast):
        warnings.warn(
            f"this k-mer tokenizer was loaded as {type(tokenizer).__name__}, which does not cut "
            "overlapping k-mers; load it with genlm_sc.models.load_tokenizer",
            stacklevel=2,
        )
    k = tokenizer.init_kwargs.get(_K_KEY)
    return {"kind": kind, "k": None if k is None else int(k), "guessed": False}
