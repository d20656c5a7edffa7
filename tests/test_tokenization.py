"""DNA tokenizers: vocabularies, offsets, normalisation, batching, save/reload, BPE training."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, BertConfig, ModernBertConfig, PreTrainedTokenizerFast

import genlm_sc as gl
from genlm_sc.models import (
    KmerTokenizerFast,
    build_tokenizer,
    load_tokenizer,
    mask_span,
    token_base_spans,
    tokenizer_info,
)
from genlm_sc.models.tokenization import SPECIAL_TOKENS

KINDS = ("char", "kmer", "nt_kmer", "bpe")
SEQUENCES = ["ACGTACGTTGCANNACGT", "acgtRYacgtac", "A", "", "TTTTGGGGCCCCAAAATGCA" * 3]


def _random_sequence(rng: np.random.Generator, length: int) -> str:
    return "".join(rng.choice(list("ACGT"), size=length))


@pytest.fixture(scope="module")
def corpus() -> list[np.ndarray]:
    """Two stretches of the example chr20 reference, as uint8 ASCII codes."""
    fasta = gl.io.FastaReference(gl.datasets.chr20_example().fasta)
    return [fasta.fetch("20", 1_000_000, 1_060_000), fasta.fetch("20", 1_500_000, 1_540_000)]


@pytest.fixture(scope="module")
def tokenizers(corpus) -> dict[str, PreTrainedTokenizerFast]:
    """One tokenizer of each kind (k=6 for the k-mer kinds, BPE with 512 tokens)."""
    return {
        "char": build_tokenizer("char"),
        "kmer": build_tokenizer("kmer", k=6),
        "nt_kmer": build_tokenizer("nt_kmer", k=6),
        "bpe": build_tokenizer("bpe", corpus=corpus, vocab_size=512),
    }


# --------------------------------------------------------------------------- shared conventions


@pytest.mark.parametrize("kind", KINDS)
def test_special_tokens_are_ids_0_to_4(tokenizers, kind):
    tok = tokenizers[kind]
    assert tok.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == [0, 1, 2, 3, 4]
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id) == (0, 1, 2)
    assert (tok.sep_token_id, tok.mask_token_id) == (3, 4)
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == list(SPECIAL_TOKENS)
    assert tok.padding_side == "right"
    assert sorted(tok.get_vocab().values()) == list(range(len(tok)))


@pytest.mark.parametrize("kind", KINDS)
def test_cls_sep_added_only_with_special_tokens(tokenizers, kind):
    tok = tokenizers[kind]
    with_special = tok("ACGTACGTAC")["input_ids"]
    without = tok("ACGTACGTAC", add_special_tokens=False)["input_ids"]
    assert with_special == [2, *without, 3]
    assert not set(without) & {0, 2, 3, 4}


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_reload_through_auto_tokenizer(tokenizers, kind, tmp_path):
    tok = tokenizers[kind]
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is type(tok)
    assert loaded.get_vocab() == tok.get_vocab()
    assert loaded.model_max_length == tok.model_max_length == 512
    assert tokenizer_info(loaded) == tokenizer_info(tok)
    for sequence in SEQUENCES:
        assert loaded(sequence)["input_ids"] == tok(sequence)["input_ids"]
        expected = tok(sequence, return_offsets_mapping=True)["offset_mapping"]
        assert loaded(sequence, return_offsets_mapping=True)["offset_mapping"] == expected
    batch = dict(padding=True, return_tensors="np")
    np.testing.assert_array_equal(
        loaded(SEQUENCES, **batch)["input_ids"], tok(SEQUENCES, **batch)["input_ids"]
    )


def test_kmer_class_is_registered_with_auto_tokenizer(tmp_path):
    build_tokenizer("kmer", k=3).save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded, KmerTokenizerFast)
    assert loaded.tokenize("ACGTA") == ["ACG", "CGT", "GTA"]


@pytest.mark.parametrize("config_class", [BertConfig, ModernBertConfig])
def test_load_tokenizer_next_to_a_model_config(tmp_path, config_class):
    tok = build_tokenizer("kmer", k=3)
    tok.save_pretrained(tmp_path)
    config_class(
        vocab_size=len(tok), pad_token_id=0, bos_token_id=2, eos_token_id=3
    ).save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, KmerTokenizerFast)
    assert loaded("ACGTA")["input_ids"] == tok("ACGTA")["input_ids"]


def test_tokenizer_info_warns_about_a_kmer_tokenizer_loaded_as_the_generic_class(tmp_path):
    build_tokenizer("kmer", k=3).save_pretrained(tmp_path)
    generic = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="load_tokenizer"):
        assert tokenizer_info(generic)["kind"] == "kmer"


# --------------------------------------------------------------------------- k-mers


@pytest.mark.parametrize("k", [3, 6])
def test_kmer_vocabulary_is_all_kmers_plus_specials(k):
    tok = build_tokenizer("kmer", k=k)
    assert len(tok) == tok.vocab_size == 4**k + 5
    kmers = {"".join(p) for p in itertools.product("ACGT", repeat=k)}
    assert set(tok.get_vocab()) == kmers | set(SPECIAL_TOKENS)


@pytest.mark.parametrize("k", [3, 6])
def test_kmer_tokens_overlap_with_stride_one(k):
    tok = build_tokenizer("kmer", k=k)
    rng = np.random.default_rng(k)
    sequence = _random_sequence(rng, 40)
    sequence = sequence[:17] + "N" + sequence[18:]
    encoded = tok(sequence, add_special_tokens=False, return_offsets_mapping=True)
    tokens = tok.convert_ids_to_tokens(encoded["input_ids"])
    assert len(tokens) == len(sequence) - k + 1
    assert encoded["offset_mapping"] == [(i, i + k) for i in range(len(tokens))]
    for token, (start, end) in zip(tokens, encoded["offset_mapping"], strict=True):
        window = sequence[start:end]
        assert token == ("[UNK]" if "N" in window else window)
    assert tokens.count("[UNK]") == k


def test_kmer_lowercase_and_other_letters():
    tok = build_tokenizer("kmer", k=3)
    assert tok.tokenize("acgtNacg") == ["ACG", "CGT", "[UNK]", "[UNK]", "[UNK]", "ACG"]
    assert tok("acgRYacgt")["input_ids"] == tok("ACGNNACGT")["input_ids"]
    assert tok("acgtacgt")["input_ids"] == tok("ACGTACGT")["input_ids"]


def test_kmer_sequences_shorter_than_k_give_no_kmers():
    tok = build_tokenizer("kmer", k=6)
    assert tok("ACGTA")["input_ids"] == [2, 3]
    assert tok("")["input_ids"] == [2, 3]
    assert token_base_spans(tok, "ACG").shape == (0, 2)


def test_kmer_decode_rebuilds_the_sequence():
    tok = build_tokenizer("kmer", k=4)
    sequence = "ACGTTGCANACGTAGGCT"
    ids = tok(sequence)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == sequence
    assert tok.decode(ids) == f"[CLS]{sequence}[SEP]"
    assert tok.batch_decode([ids, tok("GGGGA")["input_ids"]], skip_special_tokens=True) == [
        sequence,
        "GGGGA",
    ]
    # A base seen only through [UNK] k-mers cannot be recovered.
    assert tok.decode(tok("ACGTNA")["input_ids"], skip_special_tokens=True) == "ACGTNN"


def test_kmer_pairs_and_overflow_keep_base_offsets():
    tok = build_tokenizer("kmer", k=3)
    pair = tok("ACGTAC", "GGGTT", return_offsets_mapping=True)
    first = [(0, 0), (0, 3), (1, 4), (2, 5), (3, 6), (0, 0)]
    second = [(0, 3), (1, 4), (2, 5), (0, 0)]
    assert pair["offset_mapping"] == first + second
    assert pair.sequence_ids() == [None, 0, 0, 0, 0, None, 1, 1, 1, None]
    windows = tok(
        "ACGTACGTAC",
        truncation=True,
        max_length=5,
        stride=1,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    starts = [row[1][0] for row in windows["offset_mapping"]]
    assert starts == [0, 2, 4, 6]


def test_kmer_tokens_from_pre_split_words():
    tok = build_tokenizer("kmer", k=3)
    encoded = tok(["ACG", "CGT"], is_split_into_words=True, return_offsets_mapping=True)
    assert encoded["input_ids"] == tok("ACGT")["input_ids"]
    assert encoded["offset_mapping"] == [(0, 0), (0, 3), (1, 4), (0, 0)]


# --------------------------------------------------------------------------- other kinds


def test_nt_kmer_splits_left_to_right_with_single_base_fallback(tokenizers):
    tok = tokenizers["nt_kmer"]
    assert tok.tokenize("ACGTACGTACN") == ["ACGTAC", "G", "T", "A", "C", "N"]
    assert tok.tokenize("NACGTACGG") == ["N", "ACGTAC", "G", "G"]
    assert tok.tokenize("acgtacgtacgtacgtNa") == ["ACGTAC", "GTACGT", "A", "C", "G", "T", "N", "A"]
    assert len(tok) == 4**6 + 5 + 5


@pytest.mark.parametrize("kind", ["char", "nt_kmer", "bpe"])
def test_offsets_tile_the_sequence(tokenizers, kind):
    tok = tokenizers[kind]
    sequence = _random_sequence(np.random.default_rng(1), 300) + "NNACGT"
    encoded = tok(sequence, add_special_tokens=False, return_offsets_mapping=True)
    tokens = tok.convert_ids_to_tokens(encoded["input_ids"])
    spans = encoded["offset_mapping"]
    assert spans[0][0] == 0 and spans[-1][1] == len(sequence)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert [sequence[start:end] for start, end in spans] == tokens


def test_char_is_one_token_per_base(tokenizers):
    tok = tokenizers["char"]
    assert len(tok) == 10
    assert tok.tokenize("acgTNx") == ["A", "C", "G", "T", "N", "N"]


@pytest.mark.parametrize("kind", ["char", "nt_kmer", "bpe"])
def test_lowercase_and_other_letters_read_as_upper_and_n(tokenizers, kind):
    tok = tokenizers[kind]
    assert tok("acgtacgtacgtnn")["input_ids"] == tok("ACGTACGTACGTNN")["input_ids"]
    assert tok("ACGTRYKM-ACGT")["input_ids"] == tok("ACGTNNNNNACGT")["input_ids"]


@pytest.mark.parametrize("kind", ["char", "nt_kmer", "bpe"])
def test_decode_gives_back_the_sequence(tokenizers, kind, corpus):
    tok = tokenizers[kind]
    sequence = corpus[1][2_000:2_500].tobytes().decode()
    ids = tok(sequence)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == sequence
    assert tok.decode(ids) == f"[CLS]{sequence}[SEP]"


def test_bpe_has_requested_vocabulary_and_alphabet(corpus, tokenizers):
    tok = tokenizers["bpe"]
    assert len(tok) == 512
    vocab = tok.get_vocab()
    assert {"A", "C", "G", "T", "N"} <= set(vocab)
    assert all(set(token) <= set("ACGTN") for token in vocab if token not in SPECIAL_TOKENS)
    large = build_tokenizer("bpe", corpus=corpus[:1], vocab_size=4096)
    assert 512 < len(large) <= 4096


def test_bpe_training_is_deterministic_and_cuts_long_sequences(corpus, tokenizers):
    again = build_tokenizer("bpe", corpus=corpus, vocab_size=512)
    assert again.backend_tokenizer.to_str() == tokenizers["bpe"].backend_tokenizer.to_str()
    # Corpus pieces are at most 1,000 bp, so no token can be longer.
    longest = max(len(token) for token in again.get_vocab())
    assert longest <= 1_000


def test_bpe_needs_a_corpus():
    with pytest.raises(ValueError, match="corpus"):
        build_tokenizer("bpe")


def test_bpe_compresses_sequence(tokenizers, corpus):
    tok = tokenizers["bpe"]
    sequence = corpus[0][10_000:12_000].tobytes().decode()
    n_tokens = len(tok(sequence, add_special_tokens=False)["input_ids"])
    assert n_tokens < len(sequence) / 3


# --------------------------------------------------------------------------- batching


@pytest.mark.parametrize("kind", KINDS)
def test_batch_padding_and_truncation(tokenizers, kind):
    tok = tokenizers[kind]
    batch = ["ACGTAGGCTA" * 20, "ACGTACGTAC", "AC"]
    out = tok(
        batch,
        padding=True,
        truncation=True,
        max_length=8,
        return_tensors="pt",
        return_special_tokens_mask=True,
        return_offsets_mapping=True,
    )
    ids, attention = out["input_ids"], out["attention_mask"]
    assert ids.shape == attention.shape == out["special_tokens_mask"].shape == (3, 8)
    assert out["offset_mapping"].shape == (3, 8, 2)
    assert attention[0].tolist() == [1] * 8
    for row, mask in zip(ids.tolist(), attention.tolist(), strict=True):
        n = sum(mask)
        assert mask == [1] * n + [0] * (8 - n)
        assert row[0] == 2 and row[n - 1] == 3 and row[n:] == [0] * (8 - n)
    fixed = tok(batch, padding="max_length", truncation=True, max_length=12, return_tensors="np")
    assert fixed["input_ids"].shape == (3, 12)


@pytest.mark.parametrize("kind", KINDS)
def test_model_max_length_truncates(kind, corpus):
    tok = build_tokenizer(kind, k=3, corpus=corpus, vocab_size=64, model_max_length=16)
    assert tok.model_max_length == 16
    assert len(tok("ACGT" * 100, truncation=True)["input_ids"]) == 16


def test_single_sequence_tensors_have_a_batch_axis(tokenizers):
    for kind, tok in tokenizers.items():
        out = tok("ACGTACGTACGT", return_tensors="pt", return_offsets_mapping=True)
        n = len(tok("ACGTACGTACGT")["input_ids"])
        assert out["input_ids"].shape == (1, n), kind
        assert out["offset_mapping"].shape == (1, n, 2), kind


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize("kind", KINDS)
def test_token_base_spans_match_offsets(tokenizers, kind):
    tok = tokenizers[kind]
    sequence = np.frombuffer(b"ACGTACGTTAGCNNACGTACGATCGA", dtype=np.uint8)
    spans = token_base_spans(tok, sequence)
    assert spans.dtype == np.int64 and spans.ndim == 2 and spans.shape[1] == 2
    n_tokens = len(tok(sequence.tobytes().decode(), add_special_tokens=False)["input_ids"])
    assert spans.shape[0] == n_tokens
    if kind == "kmer":
        np.testing.assert_array_equal(spans[:, 1] - spans[:, 0], 6)
        np.testing.assert_array_equal(spans[:, 0], np.arange(len(sequence) - 5))
    else:
        np.testing.assert_array_equal(spans[1:, 0], spans[:-1, 1])
        assert spans[0, 0] == 0 and spans[-1, 1] == len(sequence)


def test_tokenizer_info_and_mask_span(tokenizers):
    expected = {"char": 1, "kmer": 6, "nt_kmer": 6, "bpe": None}
    for kind, tok in tokenizers.items():
        assert tokenizer_info(tok) == {"kind": kind, "k": expected[kind], "guessed": False}
    assert mask_span(tokenizers["kmer"]) == 6
    assert [mask_span(tokenizers[kind]) for kind in ("char", "nt_kmer", "bpe")] == [1, 1, 1]
    assert mask_span(build_tokenizer("kmer", k=3)) == 3


@pytest.mark.parametrize(
    ("kind", "guess"),
    [
        ("char", ("char", 1)),
        ("kmer", ("kmer", 4)),
        ("nt_kmer", ("nt_kmer", 4)),
        ("bpe", ("bpe", None)),
    ],
)
def test_tokenizer_info_guesses_without_metadata(kind, guess, corpus):
    built = build_tokenizer(kind, k=4, corpus=corpus, vocab_size=128)
    bare = PreTrainedTokenizerFast(
        tokenizer_object=built.backend_tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = tokenizer_info(bare)
    assert (info["kind"], info["k"], info["guessed"]) == (*guess, True)
    assert mask_span(bare) == (4 if kind == "kmer" else 1)


def test_tokenizer_info_unknown_for_a_text_tokenizer():
    words = ["the", "cat", "sat", "on", "a", "mat", "[UNK]"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    text = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    assert tokenizer_info(text) == {"kind": "unknown", "k": None, "guessed": True}
    assert mask_span(text) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "word"}, "kind"),
        ({"kind": "kmer", "k": 0}, "k must"),
        ({"kind": "nt_kmer", "k": 11}, "k must"),
        ({"kind": "bpe", "corpus": ["ACGT"], "vocab_size": 5}, "vocab_size"),
        ({"kind": "char", "model_max_length": 0}, "model_max_length"),
    ],
)
def test_bad_arguments(kwargs, match):
    kind = kwargs.pop("kind")
    with pytest.raises(ValueError, match=match):
        build_tokenizer(kind, **kwargs)


def test_our_kmer_tokenizer_fails_loudly_in_plain_transformers(tmp_path):
    """Without genlm_sc, transformers cannot cut k-mers: a raw sequence must be an error,
    never one [UNK]; k-mers separated by spaces read as DNABERT's did."""
    import subprocess
    import sys

    build_tokenizer("kmer", k=3).save_pretrained(tmp_path)
    code = f"""
import sys
from transformers import AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained({str(tmp_path)!r})
assert "genlm_sc" not in sys.modules
print(tokenizer.convert_ids_to_tokens(tokenizer("ACG CGT")["input_ids"]))
try:
    tokenizer("ACGTAC")
except Exception as error:
    print("refused:", error)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert "['[CLS]', 'ACG', 'CGT', '[SEP]']" in done.stdout, done.stderr
    assert "refused: WordLevel error: Missing [UNK] token" in done.stdout, done.stderr
