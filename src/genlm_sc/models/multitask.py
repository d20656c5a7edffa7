"""Multi-task pretraining (LOGO): a masked LM with auxiliary heads on its token states.

LOGO (Yang et al., 2022) pretrains a masked DNA language model together with supervised
heads for genomic annotations. :class:`MultiTaskMaskedLM` wraps any masked LM: one forward
pass on the masked input gives the masked-LM loss and, from the encoder's last token
states, the loss of every :class:`AuxiliaryTarget`:

per-sequence target
    Token states averaged over the sequence (padding excluded), then a linear layer;
    cross-entropy with the sequence's class.
per-base target
    A linear layer on each token's state; a token is scored on the class of the base at
    its centre (a k-mer's middle base; a single-base token's own base), special and
    padding tokens not at all.

The total loss is the masked-LM loss plus each target's weight times its loss, so a
multi-task run costs what a masked-LM run of the same steps costs, plus the heads.

Saved next to the masked LM, which stays a plain Hugging Face checkpoint (loading it with
``AutoModelForMaskedLM`` or :func:`genlm_sc.tl.embed` ignores the heads): the heads'
weights in ``genlm_auxiliary_heads.safetensors`` and their settings in
``genlm_auxiliary.json``. :meth:`MultiTaskMaskedLM.from_pretrained` reads all three back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .losses import token_loss

__all__ = ["AUXILIARY_FILE", "AuxiliaryTarget", "MultiTaskMaskedLM", "token_classes"]

#: Settings of the auxiliary heads (JSON) and their weights (safetensors).
AUXILIARY_FILE = "genlm_auxiliary.json"
HEADS_FILE = "genlm_auxiliary_heads.safetensors"
#: Batch keys of the auxiliary labels: ``aux_<name>``.
PREFIX = "aux_"


@dataclass(frozen=True)
class AuxiliaryTarget:
    """One auxiliary pretraining target.

    Parameters
    ----------
    name
        The label's name in the corpus (:attr:`genlm_sc.pp.PretrainingCorpus.labels`).
    level
        ``"sequence"`` (one class per sequence) or ``"base"`` (one class per base).
    n_classes
        Number of classes (labels are 0 … ``n_classes - 1``).
    weight
        Weight of its loss next to the masked-LM loss.
    """

    name: str
    level: Literal["sequence", "base"]
    n_classes: int
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.name == "mlm":
            raise ValueError("target 'mlm': the name is taken by the masked-LM loss")
        if self.level not in ("sequence", "base"):
            raise ValueError(f"target {self.name!r}: level must be 'sequence' or 'base'")
        if self.n_classes < 2:
            raise ValueError(f"target {self.name!r}: needs at least 2 classes")
        if not self.weight >= 0:
            raise ValueError(f"target {self.name!r}: the loss weight must be >= 0")


def token_classes(
    examples: Sequence[Mapping[str, Any]],
    offsets: np.ndarray,
    special: np.ndarray,
    targets: Sequence[AuxiliaryTarget],
) -> dict[str, torch.Tensor]:
    """The batch's auxiliary labels, ``-100`` where not scored.

    Parameters
    ----------
    examples
        The batch's examples, each with ``labels`` (name → class or per-base classes).
    offsets, special
        The tokenizer's ``(batch, tokens, 2)`` base offsets and special-token mask.
    targets
        The targets to label.

    Returns
    -------
    ``aux_<name>``: ``(batch,)`` for a per-sequence target, ``(batch, tokens)`` for a
    per-base one (the class of the base at each token's centre).
    """
    out = {}
    centre = (offsets[..., 0] + np.maximum(offsets[..., 1] - 1, offsets[..., 0])) // 2
    for target in targets:
        if target.level == "sequence":
            values = np.full(len(examples), -100, dtype=np.int64)
            for row, example in enumerate(examples):
                value = example.get("labels", {}).get(target.name)
                if value is not None:
                    values[row] = int(value)
        else:
            values = np.full(special.shape, -100, dtype=np.int64)
            for row, example in enumerate(examples):
                classes = example.get("labels", {}).get(target.name)
                if classes is None or not len(classes):
                    continue
                scored = ~special[row] & (offsets[row, :, 1] > offsets[row, :, 0])
                at = np.minimum(centre[row], len(classes) - 1)
                values[row, scored] = np.asarray(classes)[at[scored]]
        if (values >= target.n_classes).any():
            raise ValueError(
                f"target {target.name!r} has a class >= its n_classes {target.n_classes}"
            )
        out[PREFIX + target.name] = torch.from_numpy(values)
    return out


class MultiTaskMaskedLM(nn.Module):
    """A masked LM with auxiliary heads; ``forward`` returns the summed loss.

    Parameters
    ----------
    mlm
        A Hugging Face masked LM (returns ``loss``, ``logits`` and ``hidden_states``).
    targets
        The auxiliary targets; each gets a linear head on the last token states.
    """

    #: The Trainer passes ``num_items_in_batch`` to ``forward`` (see there).
    accepts_loss_kwargs = True

    def __init__(self, mlm: nn.Module, targets: Sequence[AuxiliaryTarget]):
        super().__init__()
        if not targets:
            raise ValueError("MultiTaskMaskedLM needs at least one auxiliary target")
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            raise ValueError(f"auxiliary target names repeat: {names}")
        self.mlm = mlm
        self.targets = list(targets)
        width = int(mlm.config.hidden_size)
        self.heads = nn.ModuleDict({t.name: nn.Linear(width, t.n_classes) for t in targets})

    @property
    def config(self):
        """The masked LM's configuration."""
        return self.mlm.config

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        num_items_in_batch: Mapping[str, Any] | torch.Tensor | int | None = None,
        **aux_labels: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Losses and logits.

        Parameters
        ----------
        input_ids, attention_mask
            The masked input.
        labels
            Masked-LM labels (``-100`` where not scored).
        num_items_in_batch
            Scored positions of the global batch (every process, every gradient-accumulation
            step): a number for the masked-LM labels, or a mapping from each label key
            (``labels``, ``aux_<name>``) to its count. Each loss is then its sum over this
            batch divided by that count, so that the processes' losses add up to the means
            over the global batch. ``None``: means over this batch.
        **aux_labels
            ``aux_<name>`` labels of the targets.

        Returns
        -------
        ``loss`` (masked LM plus weighted auxiliary losses, when labels are given),
        ``logits`` (the masked LM's), ``<name>_logits`` for each target, and with labels
        ``mlm_loss`` and ``<name>_loss``, this batch's means (each repeated once per
        example, so that an evaluation's mean over examples is the mean loss).
        """
        counts = num_items_in_batch
        if counts is not None and not isinstance(counts, Mapping):
            counts = {"labels": counts}
        counts = counts or {}
        out = self.mlm(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
        )  # fmt: skip
        states = out.hidden_states[-1]
        if attention_mask is None:
            attention_mask = torch.ones(input_ids.shape, device=input_ids.device)
        keep = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * keep).sum(1) / keep.sum(1).clamp(min=1)
        n = input_ids.shape[0]
        result: dict[str, torch.Tensor] = {"logits": out.logits}
        total = None
        if labels is not None:
            total = token_loss(out.logits, labels, counts.get("labels"))
            result["mlm_loss"] = token_loss(out.logits.detach(), labels).expand(n)
        for target in self.targets:
            features = pooled if target.level == "sequence" else states
            logits = self.heads[target.name](features)
            result[f"{target.name}_logits"] = logits
            given = aux_labels.get(PREFIX + target.name)
            if given is None:
                continue
            # an unscored batch still keeps the head in the graph (a zero loss)
            loss = token_loss(logits, given, counts.get(PREFIX + target.name))
            result[f"{target.name}_loss"] = token_loss(logits.detach(), given).expand(n)
            total = loss * target.weight if total is None else total + loss * target.weight
        if total is not None:
            result["loss"] = total
        return result

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """The masked LM in Hugging Face layout, plus the heads and their settings."""
        from safetensors.torch import save_file

        path = Path(path)
        self.mlm.save_pretrained(os.fspath(path))
        state = {k: v.detach().cpu().contiguous() for k, v in self.heads.state_dict().items()}
        save_file(state, os.fspath(path / HEADS_FILE))
        settings = {"targets": [asdict(t) for t in self.targets],
                    "hidden_size": int(self.mlm.config.hidden_size)}  # fmt: skip
        (path / AUXILIARY_FILE).write_text(json.dumps(settings, indent=2))
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, device: str = "cpu") -> MultiTaskMaskedLM:
        """Read back what :meth:`save_pretrained` wrote; refuses missing or partial heads."""
        from safetensors.torch import load_file
        from transformers import AutoModelForMaskedLM

        from .._quiet import quiet_transformers
        from .loading import CheckpointError, from_local

        path = Path(path)
        if not (path / AUXILIARY_FILE).is_file() or not (path / HEADS_FILE).is_file():
            raise CheckpointError(
                f"{path} holds no auxiliary heads ({AUXILIARY_FILE} and {HEADS_FILE}); it was "
                "not pretrained with auxiliary targets"
            )
        settings = json.loads((path / AUXILIARY_FILE).read_text())
        targets = [AuxiliaryTarget(**t) for t in settings["targets"]]
        with quiet_transformers(errors_only=True):  # a half-loaded model is refused by from_local
            model = cls(from_local(AutoModelForMaskedLM, path, strict=True), targets)
        state = load_file(os.fspath(path / HEADS_FILE))
        expected = model.heads.state_dict()
        wrong = sorted(
            k for k in expected.keys() | state.keys()
            if k not in state or k not in expected or state[k].shape != expected[k].shape
        )  # fmt: skip
        if wrong:
            raise CheckpointError(f"{path / HEADS_FILE}: missing or mismatched weights {wrong}")
        model.heads.load_state_dict(state)
        return model.eval().to(device)

    @torch.inference_mode()
    def predict(
        self, sequences: Sequence[str], tokenizer: Any, *, batch_size: int = 32
    ) -> dict[str, list[np.ndarray]]:
        """Class probabilities of every target for unmasked sequences.

        Returns
        -------
        Target name → one array per sequence: ``(n_classes,)`` for a per-sequence target,
        ``(n_tokens, n_classes)`` over the sequence's tokens (special tokens left out) for
        a per-base one.
        """
        device = next(self.parameters()).device
        out: dict[str, list[np.ndarray]] = {t.name: [] for t in self.targets}
        for start in range(0, len(sequences), batch_size):
            batch = list(sequences[start : start + batch_size])
            encoded = tokenizer(batch, padding=True, return_special_tokens_mask=True,
                                return_tensors="pt")  # fmt: skip
            result = self(input_ids=encoded["input_ids"].to(device),
                          attention_mask=encoded["attention_mask"].to(device))  # fmt: skip
            keep = encoded["attention_mask"].bool() & ~encoded["special_tokens_mask"].bool()
            for target in self.targets:
                probs = result[f"{target.name}_logits"].float().softmax(-1).cpu().numpy()
                for row in range(len(batch)):
                    out[target.name].append(
                        probs[row] if target.level == "sequence" else probs[row][keep[row].numpy()]
                    )
        return out
