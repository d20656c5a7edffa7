"""Parameter counts of the published Enformer and Borzoi architectures and of the fused
models built on them (UKBioFormer, UKBioZoi), trainable and frozen per tuning.

The architectures are the packages' defaults (``enformer_pytorch.EnformerConfig()``:
dim 1536, 11 blocks, human and mouse heads; ``borzoi_pytorch`` ``BorzoiConfig()``: dim
1536, 8 blocks, human head), built with **random weights** (counts do not depend on the
weights). The fused model takes a 1,536-wide embedding (two 768-wide haplotype
embeddings side by side, as UKBioFormer's UKBioBERT features) through a 512-unit MLP;
LoRA has rank 8 on ``to_q``/``to_v``.

    python benchmarks/fusion_parameters.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def main() -> None:
    import os

    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    import torch

    from genlm_sc.models.backbones import PINNED, build_backbone
    from genlm_sc.models.fusion import FusionRegressor

    torch.set_num_threads(1)
    out = {"weights": "random (counts only)", "packages": {n: v[2] for n, v in PINNED.items()}}
    for name in ("enformer", "borzoi"):
        start = time.perf_counter()
        if name == "enformer":
            from enformer_pytorch import Enformer, EnformerConfig

            published = Enformer(EnformerConfig())
            heads = count(published._heads)
        else:
            from borzoi_pytorch import Borzoi
            from borzoi_pytorch.config_borzoi import BorzoiConfig

            published = Borzoi(BorzoiConfig())
            heads = count(published.human_head)
        blocks = len(published.transformer)
        per_block = count(published.transformer[0])
        total = count(published)
        del published
        row = {"architecture": total, "track_heads": heads, "transformer_blocks": blocks,
               "per_block": per_block, "trunk": total - heads}  # fmt: skip
        for n_blocks in (None, 1):
            backbone, _ = build_backbone(name, weights=None, n_blocks=n_blocks)
            label = "all_blocks" if n_blocks is None else f"{n_blocks}_block"
            row[f"trunk_{label}"] = count(backbone)
            model = FusionRegressor(backbone, embedding_width=1536, input_length=49_152)
            for tuning in ("head", "lora", "full"):
                model.set_tuning(tuning, lora_rank=8, lora_alpha=16)
                counts = model.parameter_counts()
                row[f"fused_{label}_{tuning}"] = {
                    "trainable": counts["trainable"], "frozen": counts["frozen"]
                }  # fmt: skip
                model.merge_adapters()
            del model, backbone
        row["seconds"] = round(time.perf_counter() - start, 1)
        out[name] = row
        print(name, json.dumps(row), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fusion_parameters.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
