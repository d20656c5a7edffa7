"""A dilated-convolution masked language model for DNA, as a Hugging Face model.

The default model of :func:`genlm_sc.tl.pretrain`. Stacked residual blocks of dilated 1-D
convolutions (the design of GPN, Benegas et al. 2023, and of ByteNet) see a few hundred
bases around every position; optional self-attention layers on top see the whole window.
Convolutions learn local sequence grammar from little data, so this model beats a
context-count baseline after minutes on a CPU, where a vanilla BERT with learned absolute
positions does not. It is a :class:`~transformers.PreTrainedModel` registered with the
``Auto*`` classes (``model_type="genlm_conv"``): ``save_pretrained`` /
``AutoModelForMaskedLM.from_pretrained`` work once :mod:`genlm_sc` is imported.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput

from .losses import token_loss

__all__ = ["GenlmConvConfig", "GenlmConvForMaskedLM", "GenlmConvModel"]


class GenlmConvConfig(PretrainedConfig):
    """Configuration of :class:`GenlmConvModel`.

    Parameters
    ----------
    vocab_size
        Number of tokens (the tokenizer's ``len(tokenizer)``).
    hidden_size
        Channels of every block.
    num_conv_layers
        Residual dilated-convolution blocks.
    kernel_size
        Width of each convolution (odd).
    dilation_cycle
        Dilations of successive blocks, repeated: the receptive field grows to
        ``sum(dilations) * (kernel_size - 1) + 1`` tokens.
    intermediate_size
        Width of the feed-forward layer of each block (default ``2 * hidden_size``).
    num_attention_layers
        Pre-norm transformer encoder layers after the convolutions (0: none). They need no
        position embeddings: the convolutions below already encode relative position.
    num_attention_heads
        Heads of those layers.
    dropout
        Dropout after every residual branch.
    """

    model_type = "genlm_conv"

    def __init__(
        self,
        vocab_size: int = 10,
        hidden_size: int = 256,
        num_conv_layers: int = 8,
        kernel_size: int = 9,
        dilation_cycle: Sequence[int] = (1, 2, 4, 8, 16, 32),
        intermediate_size: int | None = None,
        num_attention_layers: int = 0,
        num_attention_heads: int = 4,
        dropout: float = 0.0,
        layer_norm_eps: float = 1e-5,
        pad_token_id: int = 0,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_conv_layers = num_conv_layers
        self.kernel_size = kernel_size
        self.dilation_cycle = list(dilation_cycle)
        self.intermediate_size = intermediate_size or 2 * hidden_size
        self.num_attention_layers = num_attention_layers
        self.num_attention_heads = num_attention_heads
        self.dropout = dropout
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        super().__init__(pad_token_id=pad_token_id, **kwargs)

    @property
    def num_hidden_layers(self) -> int:
        """Blocks of any kind (convolution and attention)."""
        return self.num_conv_layers + self.num_attention_layers

    @property
    def receptive_field(self) -> int:
        """Tokens that influence one output position through the convolutions."""
        cycle = self.dilation_cycle
        dilations = [cycle[i % len(cycle)] for i in range(self.num_conv_layers)]
        return sum(dilations) * (self.kernel_size - 1) + 1


class _ConvBlock(nn.Module):
    """Dilated convolution and feed-forward layer, each a post-normalised residual branch."""

    def __init__(self, config: GenlmConvConfig, dilation: int):
        super().__init__()
        h = config.hidden_size
        padding = dilation * (config.kernel_size // 2)
        self.conv = nn.Conv1d(h, h, config.kernel_size, padding=padding, dilation=dilation)
        self.conv_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        width = config.intermediate_size
        self.ffn = nn.Sequential(nn.Linear(h, width), nn.GELU(), nn.Linear(width, h))
        self.ffn_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        source = hidden if keep is None else hidden * keep
        conv = self.conv(source.transpose(1, 2)).transpose(1, 2)
        hidden = hidden + self.dropout(self.conv_norm(F.gelu(conv)))
        return hidden + self.dropout(self.ffn_norm(self.ffn(hidden)))


class GenlmConvPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading shared by the genlm_conv models."""

    config_class = GenlmConvConfig
    base_model_prefix = "genlm"
    supports_gradient_checkpointing = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, std)
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()


class GenlmConvModel(GenlmConvPreTrainedModel):
    """The encoder: token embeddings → convolution blocks → optional attention layers."""

    def __init__(self, config: GenlmConvConfig):
        super().__init__(config)
        cycle = config.dilation_cycle
        self.embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.conv_layers = nn.ModuleList(
            _ConvBlock(config, cycle[i % len(cycle)]) for i in range(config.num_conv_layers)
        )
        self.attention_layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                config.hidden_size,
                config.num_attention_heads,
                config.intermediate_size,
                dropout=config.dropout,
                activation="gelu",
                layer_norm_eps=config.layer_norm_eps,
                batch_first=True,
                norm_first=True,
            )
            for _ in range(config.num_attention_layers)
        )
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding table."""
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        """Replace the token embedding table."""
        self.embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        """Encode tokens.

        Parameters
        ----------
        input_ids
            ``(batch, length)`` token ids.
        attention_mask
            ``(batch, length)``, 1 for real tokens and 0 for padding; padded positions are
            zeroed before every convolution so they never leak into real ones.
        inputs_embeds
            Embeddings instead of ids (used by gradient attribution).
        output_hidden_states
            Also return the embeddings and every block's output.
        """
        hidden = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        padded = attention_mask is not None and not bool(attention_mask.all())
        keep = attention_mask.unsqueeze(-1).to(hidden.dtype) if padded else None
        states = [hidden] if output_hidden_states else None
        for block in self.conv_layers:
            hidden = block(hidden, keep)
            if states is not None:
                states.append(hidden)
        padding = attention_mask == 0 if padded else None
        for layer in self.attention_layers:
            hidden = layer(hidden, src_key_padding_mask=padding)
            if states is not None:
                states.append(hidden)
        hidden = self.final_norm(hidden)
        if states is not None:
            states[-1] = hidden
        return BaseModelOutput(
            last_hidden_state=hidden, hidden_states=tuple(states) if states is not None else None
        )


class GenlmConvForMaskedLM(GenlmConvPreTrainedModel):
    """:class:`GenlmConvModel` with a token-prediction head."""

    def __init__(self, config: GenlmConvConfig):
        super().__init__(config)
        self.genlm = GenlmConvModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        """The output projection onto the vocabulary."""
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        """Replace the output projection onto the vocabulary."""
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MaskedLMOutput:
        """Token logits; with ``labels`` (``-100`` where not scored) also the cross-entropy:
        the mean over scored tokens, or the sum divided by ``num_items_in_batch`` when the
        Trainer passes it (scored tokens of the global batch, so that processes training
        together and gradient accumulation give the mean over every scored token)."""
        out = self.genlm(
            input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
        )
        logits = self.lm_head(out.last_hidden_state)
        loss = None
        if labels is not None:
            loss = token_loss(logits, labels, kwargs.get("num_items_in_batch"))
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


AutoConfig.register(GenlmConvConfig.model_type, GenlmConvConfig, exist_ok=True)
AutoModel.register(GenlmConvConfig, GenlmConvModel, exist_ok=True)
AutoModelForMaskedLM.register(GenlmConvConfig, GenlmConvForMaskedLM, exist_ok=True)
