"""DNA language models: tokenizers, the default architecture, pretraining corpora.

Importing this module registers :class:`~genlm_sc.models.tokenization.KmerTokenizerFast` with
``transformers.AutoTokenizer``, so saved k-mer tokenizers load back with
``AutoTokenizer.from_pretrained``; :func:`load_tokenizer` also covers model folders whose
model type makes ``AutoTokenizer`` ignore the saved tokenizer class.
"""

from .conv_lm import GenlmConvConfig, GenlmConvForMaskedLM, GenlmConvModel
from .corpus import CropDataset, PretrainingCorpus, parse_region
from .encoder import SequenceEncoder, load_encoder
from .masking import DnaMaskingCollator
from .record import pretraining_record
from .tokenization import (
    KmerTokenizerFast,
    build_tokenizer,
    load_tokenizer,
    mask_span,
    token_base_spans,
    tokenizer_info,
)

__all__ = [
    "CropDataset",
    "DnaMaskingCollator",
    "GenlmConvConfig",
    "GenlmConvForMaskedLM",
    "GenlmConvModel",
    "KmerTokenizerFast",
    "PretrainingCorpus",
    "SequenceEncoder",
    "build_tokenizer",
    "load_encoder",
    "load_tokenizer",
    "mask_span",
    "parse_region",
    "pretraining_record",
    "token_base_spans",
    "tokenizer_info",
]
