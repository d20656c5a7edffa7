"""Sequence-to-function backbones, Enformer and Borzoi, from their maintained PyPI packages.

The architectures are those of ``enformer-pytorch`` (Enformer; Avsec et al. 2021) and
``borzoi-pytorch`` (Borzoi; Linder et al. 2025), built from a configuration with random
weights or from weights the user has on disk; nothing is downloaded. A backbone is
the package's trunk up to its last embedding, before the track heads:

``"enformer"``
    one-hot ``(N, L, 4)`` → stem, convolution tower, transformer blocks, final pointwise
    layer: ``(N, L / 2**num_downsamples, 2 * dim)`` (bins of 128 bp and 3,072 channels in
    the published model).
``"borzoi"``
    one-hot → convolution tower, transformer blocks at 128 bp, U-net upsampling, final
    joined convolutions: ``(N, L / 32, 1920)`` (bins of 32 bp).

The transformer tower can be cut to its first ``n_blocks`` blocks (depth pruning, as in
UKBioFormer). The packages pin ``transformers<5`` (``enformer-pytorch`` 0.8.12 requires
``transformers==4.56.2``, ``borzoi-pytorch`` 0.5.1 ``transformers<5``) but their modules
run under transformers 5: install them without their dependencies (:data:`INSTALL`).
Their own ``save_pretrained``/``from_pretrained`` are not used (Enformer's fail under
transformers 5: it shares its trunk's tensors under two names); :func:`load_weights` reads
the same files.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "BACKBONES",
    "INSTALL",
    "PINNED",
    "SequenceBackbone",
    "build_backbone",
    "load_state",
    "load_weights",
    "parameter_counts",
    "save_backbone",
]

#: The backbones: name → (module, distribution, the version this package is tested with).
PINNED: dict[str, tuple[str, str, str]] = {
    "enformer": ("enformer_pytorch", "enformer-pytorch", "0.8.12"),
    "borzoi": ("borzoi_pytorch", "borzoi-pytorch", "0.5.1"),
}
BACKBONES = tuple(PINNED)
#: How to install them: their other dependencies through the ``fusion`` extra, then the two
#: packages without their ``transformers<5`` pins.
INSTALL = 'pip install "genlm_sc[fusion]" && pip install --no-deps ' + " ".join(
    f"{dist}=={version}" for _, dist, version in PINNED.values()
)
#: Parameters of the published checkpoints that a backbone does not use (track heads).
_HEADS = {"enformer": ("_heads.",), "borzoi": ("human_head.", "mouse_head.")}
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def _package(name: str) -> Any:
    """The package module of backbone ``name`` (an ImportError saying how to install it)."""
    if name not in PINNED:
        raise ValueError(f"backbone must be one of {BACKBONES}, not {name!r}")
    module, dist, version = PINNED[name]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"the {name} backbone needs the {dist} package ({version}) and its dependencies; "
            f"they pin transformers<5, so install them without it: {INSTALL}"
        ) from err


def _config_class(name: str) -> Any:
    if name == "enformer":
        return _package(name).EnformerConfig
    _package(name)
    return importlib.import_module("borzoi_pytorch.config_borzoi").BorzoiConfig


class SequenceBackbone(nn.Module):
    """A package's model cut to its trunk: one-hot DNA in, per-bin embeddings out.

    Parameters
    ----------
    name
        ``"enformer"`` or ``"borzoi"``.
    model
        The package's model (``enformer_pytorch.Enformer``, ``borzoi_pytorch.Borzoi``),
        without its track heads.
    """

    def __init__(self, name: str, model: nn.Module):
        super().__init__()
        self.name = name
        if name == "enformer":  # its trunk holds the same modules again, under other names
            model._modules.pop("_trunk", None)
        self.model = model

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def bin_size(self) -> int:
        """Bases per output bin."""
        return 2 ** int(self.config.num_downsamples) if self.name == "enformer" else 32

    @property
    def stride(self) -> int:
        """Input lengths must be multiples of this (the deepest pooling)."""
        return self.bin_size if self.name == "enformer" else 128

    @property
    def channels(self) -> int:
        """Width of each bin's embedding."""
        if self.name == "enformer":
            return 2 * int(self.config.dim)
        return int(self.model.final_joined_convs[0].conv_layer.out_channels)

    @property
    def blocks(self) -> nn.Sequential:
        """The transformer blocks."""
        return self.model.transformer

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        """``(N, L, 4)`` one-hot (A, C, G, T; N rows all 0) → ``(N, L / bin_size, channels)``."""
        if self.name == "enformer":  # Enformer's trunk, its output crop left out
            model = self.model
            x = model.conv_tower(model.stem(onehot.transpose(1, 2)))
            return model.final_pointwise(model.transformer(x.transpose(1, 2)))
        self._fresh_positions(onehot)
        x = self.model.get_embs_after_crop(onehot.transpose(1, 2))
        return self.model.final_joined_convs(x).transpose(1, 2)

    def _fresh_positions(self, onehot: torch.Tensor) -> None:
        """Borzoi's attention caches its relative positions on first use, for that length
        and device; recompute them when either changes."""
        bins = onehot.shape[1] // 128
        for module in self.model.modules():
            positions = getattr(module, "positions", None)
            if positions is not None and (
                positions.shape[0] != 2 * bins - 1 or positions.device != onehot.device
            ):
                module.positions = None


def build_backbone(
    name: str,
    *,
    weights: str | os.PathLike | None,
    config: Mapping[str, Any] | None = None,
    n_blocks: int | None = None,
    random_state: int = 0,
) -> tuple[SequenceBackbone, dict[str, Any]]:
    """A backbone from local weights, or with random weights, its transformer pruned.

    Parameters
    ----------
    name
        ``"enformer"`` or ``"borzoi"``.
    weights
        A folder in the packages' ``save_pretrained`` layout (``config.json`` with their
        ``model_type`` and ``model.safetensors``, sharded safetensors or
        ``pytorch_model.bin``), a state-dict file (``.safetensors``, or ``.pt``/``.pth``/
        ``.bin`` read with ``weights_only=True``), or ``None`` for random weights. Every
        parameter the backbone uses must be in the weights with its shape; the track heads
        and the pruned blocks may be there and are ignored; anything else is refused (see
        :func:`load_weights`).
    config
        Settings of the package's configuration (``EnformerConfig``/``BorzoiConfig``:
        ``dim``, ``depth``, ``heads``, ...) over its defaults (the published
        architectures). Not allowed with a folder, whose ``config.json`` is used.
    n_blocks
        Transformer blocks kept (the first ones; ``None``: all).
    random_state
        Seed of the random initialisation (of every weight when ``weights`` is ``None``).

    Returns
    -------
    The backbone in evaluation mode and a record of where its weights came from.
    """
    package = _package(name)
    folder = weights is not None and Path(weights).is_dir()
    if folder:
        if config:
            raise ValueError(
                f"config= would change the architecture saved with the weights in {weights}; "
                "its config.json is used as it is"
            )
        settings = _folder_config(Path(weights), name)
    else:
        settings = dict(config or {})
    settings = _without_heads(name, settings)
    depth = int(settings.get("depth", _config_class(name)().depth))
    if n_blocks is not None and not 1 <= int(n_blocks) <= depth:
        raise ValueError(f"n_blocks={n_blocks}, but the {name} transformer has {depth} blocks")
    torch.manual_seed(random_state)
    model_class = package.Enformer if name == "enformer" else package.Borzoi
    model = model_class(_config_class(name)(**settings))
    backbone = SequenceBackbone(name, model)
    if n_blocks is not None:
        del backbone.blocks[int(n_blocks) :]  # the trunk holds the same Sequential
        model.config.depth = int(n_blocks)
    record = {"backbone": name, "weights": "random", "random_state": int(random_state),
              "depth": depth, "n_blocks": len(backbone.blocks)}  # fmt: skip
    if weights is not None:
        state = _read_state(Path(weights))
        load_weights(backbone, state, source=os.fspath(weights), depth=depth)
        record["weights"] = os.path.abspath(os.fspath(weights))
    return backbone.eval(), record


def _folder_config(folder: Path, name: str) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{folder} has no readable config.json for the {name} weights") from err
    found = settings.get("model_type")
    if found != name:
        raise ValueError(f"{path} is a {found!r} checkpoint (model_type), not {name!r}")
    for key in ("model_type", "transformers_version", "architectures", "torch_dtype", "dtype"):
        settings.pop(key, None)
    return settings


def _without_heads(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The configuration with no track heads and no output crop (bins are pooled here)."""
    if name == "enformer":
        return {**settings, "output_heads": {}, "target_length": -1}
    return {**settings, "enable_human_head": False, "enable_mouse_head": False,
            "return_center_bins_only": True, "bins_to_return": -1}  # fmt: skip


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a file or a ``save_pretrained`` folder (no code is unpickled)."""
    from safetensors.torch import load_file

    if path.is_dir():
        present = [f for f in _WEIGHT_FILES if (path / f).is_file()]
        if not present:
            raise FileNotFoundError(f"no weights in {path} (none of {', '.join(_WEIGHT_FILES)})")
        if present[0] == "model.safetensors.index.json":
            shards = json.loads((path / present[0]).read_text())["weight_map"].values()
            state = {}
            for shard in sorted(set(shards)):
                state.update(load_file(path / shard))
            return state
        path = path / present[0]
    if not path.is_file():
        raise FileNotFoundError(f"the backbone weights {path} do not exist")
    if path.suffix == ".safetensors":
        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path} is not a state dict (parameter name → tensor)")
    return dict(state)


def load_weights(
    backbone: SequenceBackbone,
    state: Mapping[str, torch.Tensor],
    *,
    source: str = "the weights",
    depth: int | None = None,
) -> None:
    """Load a state dict into a backbone, refusing any that would leave it half-initialised.

    Every parameter and buffer must be present with its shape (only batch normalisation's
    step counters may be absent). Allowed extras are the track heads and the blocks a
    pruned backbone dropped (up to ``depth``, the depth of the unpruned architecture); any
    other name is refused. Enformer's parameters may also come under the second names its
    trunk gives them (``_trunk.1.`` for ``stem.``, ...), as ``state_dict()`` lists them.
    """
    if backbone.name == "enformer":
        state = _public_names(state)
    kept = len(backbone.blocks)
    dropped = re.compile(r"^transformer\.(\d+)\.")
    heads = _HEADS[backbone.name]

    def allowed(key: str) -> bool:
        block = dropped.match(key)
        if block is not None:
            return depth is not None and kept <= int(block.group(1)) < depth
        return key.startswith(heads)

    what = (
        f"this {backbone.name} backbone ({kept} blocks, dim {backbone.config.dim}); give "
        "the weights of its architecture (config= or the folder's config.json), complete"
    )
    load_state(backbone.model, state, source=source, what=what, allowed=allowed)


#: The second names Enformer's trunk gives its modules.
_TRUNK_NAMES = {"_trunk.1.": "stem.", "_trunk.2.": "conv_tower.", "_trunk.4.": "transformer.",
                "_trunk.6.": "final_pointwise."}  # fmt: skip


def _public_names(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {k: v for k, v in state.items() if not k.startswith("_trunk.")}
    for key, value in state.items():
        prefix = next((p for p in _TRUNK_NAMES if key.startswith(p)), None)
        if prefix is None:
            if key.startswith("_trunk."):
                out[key] = value  # not a module of the trunk: refused as unknown
            continue
        out.setdefault(_TRUNK_NAMES[prefix] + key[len(prefix) :], value)
    return out


def load_state(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    what: str = "the model",
    allowed: Any = None,
) -> None:
    """``module.load_state_dict(state)`` with every parameter and buffer required (batch
    normalisation's step counters optional) and no other names but those ``allowed(name)``
    accepts; a :class:`ValueError` naming ``source`` and what is wrong otherwise."""
    expected = module.state_dict()
    counters = {k: v for k, v in expected.items() if k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in state and k not in counters]
    mismatched = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    unexpected = [k for k in state if k not in expected and not (allowed and allowed(k))]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if mismatched:
        problems.append(f"{len(mismatched)} of another shape (e.g. {'; '.join(mismatched[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unknown to it (e.g. {', '.join(unexpected[:3])})")
    if problems:
        raise ValueError(f"{source} do not fit {what}: parameters {'; '.join(problems)}")
    module.load_state_dict({**counters, **{k: v for k, v in state.items() if k in expected}})


def save_backbone(backbone: SequenceBackbone | nn.Module, folder: str | os.PathLike) -> Path:
    """Save a backbone in the packages' ``save_pretrained`` layout: ``config.json`` and
    ``model.safetensors`` (Enformer's parameters once, under their first names, as
    transformers 4 saved these models)."""
    from safetensors.torch import save_file

    model = backbone.model if isinstance(backbone, SequenceBackbone) else backbone
    state = model.state_dict()
    if not isinstance(backbone, SequenceBackbone) and backbone.config.model_type == "enformer":
        state = _public_names(state)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(folder / "config.json")
    state = {k: v.detach().contiguous() for k, v in state.items()}
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def parameter_counts(module: nn.Module) -> dict[str, int]:
    """Trainable and frozen parameters of ``module`` (a shared tensor counted once)."""
    counts = {"trainable": 0, "frozen": 0}
    for parameter in module.parameters():  # each tensor once
        counts["trainable" if parameter.requires_grad else "frozen"] += parameter.numel()
    return counts
