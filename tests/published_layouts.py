"""Tiny checkpoints written file for file as published DNA language models lay them out,
and each model's own embedding recipe.

Nothing here goes through genlm_sc: vocabularies are written by hand or trained with the
``tokenizers`` library, weights are saved as the models publish them (``pytorch_model.bin``),
so a test that loads them sees what a user's download holds.

- DNABERT k = 3–6 (``jerryji1993/DNABERT``, ``src/transformers/dnabert-config/bert-config-k``)
- Nucleotide Transformer v1 (``InstaDeepAI/nucleotide-transformer-*``, ESM, 6-mers)
- a BPE BERT (GROVER and DNABERT-2 tokenizers: a ``tokenizer.json`` with a BPE model read by
  ``PreTrainedTokenizerFast``) on a stock ``BertForMaskedLM``
- GPN (``songlab-cal/gpn``: its PyPI package's ``GPNForMaskedLM``, a lowercase character
  tokenizer of ``[PAD] [MASK] [UNK] a c g t``, no special tokens added)
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertTokenizerFast,
    EsmConfig,
    EsmForMaskedLM,
)

TINY = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 32}  # fmt: skip
BERT_SPECIALS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                 "cls_token": "[CLS]", "mask_token": "[MASK]"}  # fmt: skip


def _save_bin(model: torch.nn.Module, folder: Path) -> None:
    """Config plus weights as ``pytorch_model.bin`` (a pickled state dict), as published."""
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")


def dnabert_layout(folder: Path, k: int = 3, *, drop: int = 0) -> Path:
    """DNABERT's files: a WordPiece vocab.txt of [PAD] [UNK] [CLS] [SEP] [MASK] and every
    k-mer in ``itertools.product("ATCG", repeat=k)`` order, read by BERT's tokenizer (which
    expects the k-mers cut and separated by spaces). ``drop`` leaves out the last k-mers."""
    folder.mkdir(parents=True)
    kmers = ["".join(p) for p in itertools.product("ATCG", repeat=k)]
    kmers = kmers[: len(kmers) - drop]
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                                 *kmers]) + "\n")  # fmt: skip
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": False, "model_max_length": 512})
    )
    (folder / "special_tokens_map.json").write_text(json.dumps(BERT_SPECIALS))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(kmers) + 5, max_position_embeddings=512,
                        architectures=["BertForMaskedLM"], **TINY)  # fmt: skip
    _save_bin(BertForMaskedLM(config), folder)
    return folder


def nt_v1_layout(folder: Path) -> Path:
    """Nucleotide Transformer v1's files: an ESM masked LM (absolute positions), vocab.txt
    of <unk> <pad> <mask> <cls> <eos> <bos>, the 4,096 6-mers and A T C G N, read by
    ``EsmTokenizer``."""
    folder.mkdir(parents=True)
    kmers = ["".join(p) for p in itertools.product("ATCG", repeat=6)]
    vocab = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>", *kmers, "A", "T", "C", "G",
             "N"]  # fmt: skip
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "EsmTokenizer", "model_max_length": 1000})
    )
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
         "cls_token": "<cls>", "eos_token": "<eos>", "bos_token": "<bos>"}))  # fmt: skip
    torch.manual_seed(0)
    config = EsmConfig(vocab_size=len(vocab), max_position_embeddings=1002,
                       position_embedding_type="absolute", pad_token_id=1, mask_token_id=2,
                       token_dropout=False, emb_layer_norm_before=False,
                       architectures=["EsmForMaskedLM"], **TINY)  # fmt: skip
    _save_bin(EsmForMaskedLM(config), folder)
    return folder


def bpe_bert_layout(folder: Path, *, vocab_size: int = 60) -> Path:
    """A GROVER / DNABERT-2-style BPE tokenizer.json (trained with ``tokenizers``: BPE model,
    whitespace pre-tokenizer, ``[CLS] $A [SEP]`` template; special tokens [UNK] [CLS] [SEP]
    [PAD] [MASK] first) read by ``PreTrainedTokenizerFast``, on a stock BertForMaskedLM."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    folder.mkdir(parents=True)
    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    rng = np.random.default_rng(3)
    corpus = ["".join(rng.choice(list("ACGT"), 300)) for _ in range(40)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=list("ACGTN"), show_progress=False)  # fmt: skip
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 1), ("[SEP]", 2)],
    )  # fmt: skip
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 512,
         **BERT_SPECIALS}))  # fmt: skip
    (folder / "special_tokens_map.json").write_text(json.dumps(BERT_SPECIALS))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), max_position_embeddings=512,
                        pad_token_id=3, architectures=["BertForMaskedLM"], **TINY)  # fmt: skip
    _save_bin(BertForMaskedLM(config), folder)
    return folder


def gpn_layout(folder: Path) -> Path:
    """GPN's files: ``config.json`` of ``model_type`` ``GPN`` (the PyPI package ``gpn``
    registers it with transformers' auto classes), weights, and the character tokenizer its
    ``train_tokenizer_ss.py`` writes (BPE over ``a c g t`` with a lowercase normaliser)."""
    import gpn
    from gpn.model import GPNConfig, GPNForMaskedLM
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    gpn.register_auto_classes("gpn")
    folder.mkdir(parents=True)
    specials = ["[PAD]", "[MASK]", "[UNK]"]
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=7, special_tokens=specials,
                                  initial_alphabet=list("acgt"), show_progress=False)  # fmt: skip
    tokenizer.train_from_iterator(["acgt"], trainer=trainer)
    tokenizer.save(str(folder / "tokenizer.json"))
    specials = {"pad_token": "[PAD]", "mask_token": "[MASK]", "unk_token": "[UNK]"}
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast",
         "model_max_length": 1000000000000000019884624838656, **specials}))  # fmt: skip
    (folder / "special_tokens_map.json").write_text(json.dumps(specials))
    torch.manual_seed(0)
    config = GPNConfig(vocab_size=7, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                       architectures=["GPNForMaskedLM"])  # fmt: skip
    _save_bin(GPNForMaskedLM(config), folder)
    return folder


LAYOUTS = {"dnabert": dnabert_layout, "nucleotide_transformer": nt_v1_layout,
           "bpe_bert": bpe_bert_layout, "gpn": gpn_layout}  # fmt: skip


def own_recipe(folder: Path, sequence: str, *, k: int | None = None) -> np.ndarray:
    """The embedding a model's own documentation computes: its tokenizer as saved (for
    DNABERT, the sequence first written as space-separated overlapping k-mers), one forward
    pass of the base model, the mean of the last hidden states over non-special tokens."""
    if k is not None:
        tokenizer = BertTokenizerFast.from_pretrained(folder)
        text = " ".join(sequence[i : i + k] for i in range(len(sequence) - k + 1))
    else:
        tokenizer, text = AutoTokenizer.from_pretrained(folder), sequence
    encoded = tokenizer(text, return_tensors="pt", return_special_tokens_mask=True,
                        return_token_type_ids=False)  # fmt: skip
    keep = encoded.pop("special_tokens_mask")[0] == 0
    model = AutoModelForMaskedLM.from_pretrained(folder).eval()
    with torch.inference_mode():
        states = model.base_model(**encoded).last_hidden_state[0]
    return states[keep].mean(0).numpy()
