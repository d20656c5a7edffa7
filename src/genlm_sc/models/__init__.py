"""Everything saved with a model: tokenizers, the default architecture, the fine-tuned heads
and their adapters, the chunking that cuts long sequences into the model's context, and the
sequence-to-function backbones (Enformer, Borzoi) fused with a language-model embedding.

Importing this module registers :class:`~genlm_sc.models.tokenization.KmerTokenizerFast` with
``transformers.AutoTokenizer``, so saved k-mer tokenizers load back with
``AutoTokenizer.from_pretrained``; :func:`load_tokenizer` also covers model folders whose
model type makes ``AutoTokenizer`` ignore the saved tokenizer class.
"""

from .adapters import adapt_encoder, add_lora, merge_adapters, prune_layers
from .backbones import SequenceBackbone, build_backbone, save_backbone
from .chunking import Chunker, context_length
from .conv_lm import GenlmConvConfig, GenlmConvForMaskedLM, GenlmConvModel
from .encoder import SequenceEncoder, load_encoder
from .fusion import FusionRegressor
from .heads import HaplotypeRegressor, PooledSequenceModel, SequenceClassifier, StandardisedHead
from .masking import DnaMaskingCollator
from .multitask import AuxiliaryTarget, MultiTaskMaskedLM
from .record import pretraining_record
from .token_spans import mask_span, token_base_spans
from .tokenization import (
    KmerTokenizerFast,
    build_tokenizer,
    load_tokenizer,
    tokenizer_info,
)

__all__ = [
    "AuxiliaryTarget",
    "Chunker",
    "DnaMaskingCollator",
    "FusionRegressor",
    "GenlmConvConfig",
    "GenlmConvForMaskedLM",
    "GenlmConvModel",
    "HaplotypeRegressor",
    "KmerTokenizerFast",
    "MultiTaskMaskedLM",
    "PooledSequenceModel",
    "SequenceBackbone",
    "SequenceClassifier",
    "SequenceEncoder",
    "StandardisedHead",
    "adapt_encoder",
    "add_lora",
    "build_backbone",
    "build_tokenizer",
    "context_length",
    "load_encoder",
    "load_tokenizer",
    "mask_span",
    "merge_adapters",
    "pretraining_record",
    "prune_layers",
    "save_backbone",
    "token_base_spans",
    "tokenizer_info",
]
