"""Fused sequence-to-function backbones (UKBioFormer / UKBioZoi): Enformer and Borzoi from
their packages, local weights only, ``fit_expression(method="fusion")``, attributions.

Every backbone here is a tiny configuration with random weights (or weights the tests
save themselves); no number measures a trained Enformer or Borzoi.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

import genlm_sc as gl
from genlm_sc.models.backbones import INSTALL, build_backbone, save_backbone
from genlm_sc.models.fusion import FusionRegressor, onehot
from genlm_sc.tl.expression.features import dosage_source
from test_embed import conv_checkpoint

torch.set_num_threads(1)
needs_backbones = pytest.mark.needs_packages("enformer_pytorch", "borzoi_pytorch")
#: Tiny architectures: Enformer with 8-bp bins, Borzoi with its fixed convolution tower.
ENFORMER = {"dim": 48, "depth": 2, "heads": 2, "attn_dim_key": 8, "num_downsamples": 3,
            "dim_divisible_by": 8}  # fmt: skip
BORZOI = {"dim": 32, "depth": 2, "heads": 2, "attn_dim_key": 8, "attn_dim_value": 16}
SETTINGS = {"enformer": (ENFORMER, 256), "borzoi": (BORZOI, 256)}


def random_bases(n: int, length: int, seed: int = 0) -> list[str]:
    generator = np.random.default_rng(seed)
    return ["".join(generator.choice(list("ACGT"), length)) for _ in range(n)]


def test_missing_packages_say_how_to_install_them(monkeypatch):
    monkeypatch.setitem(sys.modules, "enformer_pytorch", None)  # import fails
    with pytest.raises(ImportError, match=re.escape("pip install --no-deps enformer-pytorch==")):
        build_backbone("enformer", weights=None)
    pins = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert INSTALL.endswith(" ".join(pins["tool"]["genlm_sc"]["no-deps"]))


@needs_backbones
@pytest.mark.parametrize("name", ["enformer", "borzoi"])
def test_backbones_keep_their_first_blocks_and_count_parameters(name):
    config, length = SETTINGS[name]
    backbone, record = build_backbone(name, weights=None, config=config, n_blocks=1)
    assert len(backbone.blocks) == 1 and backbone.config.depth == 1
    assert record == {"backbone": name, "weights": "random", "random_state": 0, "depth": 2,
                      "n_blocks": 1}  # fmt: skip
    out = backbone(onehot(random_bases(2, length), length))
    assert out.shape == (2, length // backbone.bin_size, backbone.channels)
    model = FusionRegressor(backbone, embedding_width=3, input_length=length)
    counts = {}
    for tuning in ("head", "lora", "full"):
        model.set_tuning(tuning, lora_rank=2)
        counts[tuning] = model.parameter_counts()
    head, lora, full = counts["head"], counts["lora"], counts["full"]
    heads = head["sequence_head"] + head["embedding_mlp"] + head["gate"]
    assert head["trainable"] == heads and head["frozen"] == head["backbone"]
    assert heads < lora["trainable"] < heads + 0.05 * lora["frozen"]  # adapters only
    assert lora["frozen"] == head["backbone"]  # the backbone's own weights stay frozen
    assert full["frozen"] == 0 and full["trainable"] == full["backbone"] + heads
    with pytest.raises(ValueError, match="n_blocks=3"):
        build_backbone(name, weights=None, config=config, n_blocks=3)
    with pytest.raises(ValueError, match="multiple of"):
        FusionRegressor(backbone, embedding_width=3, input_length=length + 4)


def trunk(model: torch.nn.Module, n_blocks: int, length: int = 128) -> torch.Tensor:
    """Embeddings of a plain package Enformer cut to ``n_blocks`` blocks, by its own code."""
    import copy

    model = copy.deepcopy(model).eval()
    del model.transformer[n_blocks:]
    model.set_target_length(-1)
    with torch.no_grad():
        return model(onehot(random_bases(2, length, seed=1), length), return_only_embeddings=True)


@needs_backbones
def test_weights_load_from_every_layout_and_refuse_what_does_not_fit(tmp_path):
    from enformer_pytorch import Enformer, EnformerConfig
    from safetensors.torch import save_file

    torch.manual_seed(1)
    published = Enformer(EnformerConfig(**ENFORMER, output_heads={"human": 3})).eval()
    expected = trunk(published, 1)
    state = published.state_dict()  # every trunk tensor twice (stem. and _trunk.1.), heads
    torch.save(state, tmp_path / "weights.pt")
    public = {k: v for k, v in state.items() if not k.startswith("_trunk.")}
    save_file({k: v.contiguous() for k, v in public.items()}, tmp_path / "weights.safetensors")
    folder = save_backbone(published, tmp_path / "folder")  # the save_pretrained layout
    sources = {
        "pt": (tmp_path / "weights.pt", ENFORMER),
        "safetensors": (tmp_path / "weights.safetensors", ENFORMER),
        "folder": (folder, None),
    }
    for source, (weights, config) in sources.items():
        backbone, record = build_backbone(
            "enformer", weights=weights, config=config, n_blocks=1, random_state=5
        )
        with torch.no_grad():
            got = backbone(onehot(random_bases(2, 128, seed=1), 128))
        torch.testing.assert_close(got, expected, msg=source)
        assert record["weights"] == str(weights.resolve())

    def refused(weights, match, config=ENFORMER):
        with pytest.raises(ValueError, match=match):
            build_backbone("enformer", weights=weights, config=config, n_blocks=1)

    partial = dict(public)
    del partial["transformer.0.0.fn.1.to_q.weight"]
    save_file({k: v.contiguous() for k, v in partial.items()}, tmp_path / "partial.safetensors")
    refused(tmp_path / "partial.safetensors", r"1 missing \(e\.g\. transformer\.0\.0\.fn\.1\.to_q")
    refused(tmp_path / "weights.pt", "of another shape", config={**ENFORMER, "dim": 96})
    extra = {**public, "adapter.weight": torch.zeros(2)}
    save_file({k: v.contiguous() for k, v in extra.items()}, tmp_path / "extra.safetensors")
    refused(tmp_path / "extra.safetensors", r"1 unknown to it \(e\.g\. adapter\.weight")
    deeper = {**public, "transformer.2.0.fn.0.weight": torch.zeros(48)}  # a block beyond depth
    save_file({k: v.contiguous() for k, v in deeper.items()}, tmp_path / "deeper.safetensors")
    refused(tmp_path / "deeper.safetensors", "unknown to it")
    refused(folder, "config.json is used", config={"dim": 48})
    with pytest.raises(ValueError, match="not 'borzoi'"):
        build_backbone("borzoi", weights=folder)
    with pytest.raises(FileNotFoundError):
        build_backbone("enformer", weights=tmp_path / "none.pt", config=ENFORMER)


@needs_backbones
def test_borzoi_reads_the_package_save_pretrained_folder(tmp_path):
    from borzoi_pytorch import Borzoi
    from borzoi_pytorch.config_borzoi import BorzoiConfig

    torch.manual_seed(2)
    published = Borzoi(BorzoiConfig(**BORZOI, enable_human_head=False)).eval()
    published.save_pretrained(tmp_path / "borzoi")  # the package's own writer
    backbone, _ = build_backbone("borzoi", weights=tmp_path / "borzoi")
    bases = onehot(random_bases(1, 256, seed=3), 256)
    published.crop.target_length = -1  # its own code, on all bins
    with torch.no_grad():
        own = published.final_joined_convs(published.get_embs_after_crop(bases.transpose(1, 2)))
        torch.testing.assert_close(backbone(bases), own.transpose(1, 2))


# --- fit_expression(method="fusion") ----------------------------------------------------

GENE = "ENSG00000088833.13"  # minus strand; a 1-bp deletion (AC>A) 11 bp from its anchor


#: The fit of the tests and of ``benchmarks/fusion_seeds.py``.
OPTIONS = {"backbone": "enformer", "weights": "random", "config": ENFORMER, "input_length": 256,
           "epochs": 3, "batch_size": 32, "learning_rate": 1e-2, "device": "cpu",
           "progress": False}  # fmt: skip


def planted_deletion(folder: Path):
    """The example cohort (512-bp windows, embedded by a tiny random language model) with
    expression = copies of GENE's deletion + N(0, 0.3²) noise, and an elastic net fitted."""
    cohort = gl.datasets.example_cohort(width=512)
    x, names = dosage_source(cohort, window=10**6)(GENE)
    ds = gl.get.haplotype_store(cohort)
    deletion = [i for i, v in enumerate(ds["variant_ref"].values) if str(v) == "AC"]
    dose = x[:, names.index(str(ds["variant_id"].values[deletion[0]]))]
    expression = np.zeros(cohort.shape, dtype=np.float32)
    noise = np.random.default_rng(0).standard_normal(cohort.n_obs)
    expression[:, cohort.var_names.get_loc(GENE)] = dose + 0.3 * noise
    cohort.X = expression
    gl.tl.embed(cohort, model=conv_checkpoint(folder / "lm"), progress=False, device="cpu")
    gl.tl.fit_expression(cohort, method="elastic_net", genes=[GENE], n_folds=2)
    return cohort


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    """The planted cohort with fusion fitted twice: frozen backbone (refit too) and LoRA."""
    root = tmp_path_factory.mktemp("fusion")
    cohort = planted_deletion(root)
    fitted = {}
    for key, extra in (("fusion", {"refit": True}), ("fusion_lora", {"tuning": "lora"})):
        fitted[key] = root / key
        gl.tl.fit_expression(
            cohort, method="fusion", genes=[GENE], n_folds=2, key_added=key,
            fusion_options={**OPTIONS, **extra, "output_dir": fitted[key]},
        )  # fmt: skip
    return cohort, OPTIONS, fitted


@needs_backbones
def test_fusion_fits_on_the_same_folds_with_the_same_outputs(fused):
    cohort, _, _ = fused
    table = gl.get.expression_results(cohort).set_index("method")
    assert set(table.index) == {"elastic_net", "fusion", "fusion_lora"}
    column = cohort.var_names.get_loc(GENE)
    for key in table.index:
        assert np.isfinite(cohort.layers[f"gl_pred_{key}"][:, column]).all()
        assert np.isfinite(
            cohort.var.loc[GENE, [f"gl_{key}_r", f"gl_{key}_r2"]].astype(float)
        ).all()
        assert table.loc[key, "n_test"] == cohort.n_obs and table.loc[key, "n_folds"] == 2
    assert table.loc["fusion", "n_features"] == 96 + 32  # backbone channels + embedding
    assert (
        table.loc["fusion", "r"] > 0.8
    )  # 10 seeds: mean 0.885, SD 0.006 (results/fusion_seeds.csv)
    params = cohort.uns["gl_expression"]["params"]
    head, lora = params["fusion"]["fusion"], params["fusion_lora"]["fusion"]
    assert params["fusion"]["use_rep"] == "X_gl" and head["weights"] == "random"
    assert head["n_frozen"] == head["n_backbone"] == lora["n_frozen"] > 0
    assert 0 < head["n_trainable"] < lora["n_trainable"]
    with pytest.raises(ValueError, match="fusion_options"):
        gl.tl.fit_expression(cohort, method="fusion", genes=[GENE], n_folds=2)
    with pytest.raises(ValueError, match="shorter than the backbone"):
        gl.tl.fit_expression(cohort, method="fusion", genes=[GENE], n_folds=2, fusion_options={
            "backbone": "enformer", "weights": "random", "config": ENFORMER})  # fmt: skip


@needs_backbones
def test_saved_fold_models_reproduce_the_out_of_fold_predictions(fused):
    cohort, options, fitted = fused
    folds = cohort.obs["gl_fold"].to_numpy()
    codes = gl.get.fixed_length_haplotypes(cohort, GENE, length=256).values
    features = gl.get.gene_view(cohort, GENE).obsm["X_gl"]
    people = [(a.tobytes().decode(), b.tobytes().decode(), e)
              for (a, b), e in zip(codes, features, strict=True)]  # fmt: skip
    for key in ("fusion", "fusion_lora"):
        layer = cohort.layers[f"gl_pred_{key}"][:, cohort.var_names.get_loc(GENE)]
        for fold in (0, 1):
            model = FusionRegressor.from_pretrained(
                fitted[key] / GENE / f"fold_{fold}", device="cpu"
            )
            picked = [p for p, f in zip(people, folds, strict=True) if f == fold]
            # float32 results move by ~1e-5 with the make-up of a batch
            np.testing.assert_allclose(model.predict(picked), layer[folds == fold], atol=1e-4)
    assert {p.name for p in (fitted["fusion"] / GENE).iterdir()} == {"fold_0", "fold_1", "all"}
    again = cohort.copy()  # the same settings give the same predictions
    gl.tl.fit_expression(again, method="fusion", genes=[GENE], n_folds=2, fusion_options=options)
    np.testing.assert_array_equal(again.layers["gl_pred_fusion"], cohort.layers["gl_pred_fusion"])


# --- attributions and variant effects ---------------------------------------------------


@needs_backbones
def test_attributions_explain_the_backbone_through_indels(fused):
    cohort, _, fitted = fused
    model = FusionRegressor.from_pretrained(fitted["fusion"] / GENE / "all", device="cpu")
    carriers = gl.get.haplotypes(cohort, GENE)
    deleted = carriers.index[carriers["haplotype_1"].str.len() == 511][:2].tolist()
    anchor = 1448161 + 512 - 1 - 256  # minus strand: the window's middle base
    region = (anchor - 8, anchor + 16)
    gl.tl.attribute(cohort, gene=GENE, model=model, method="ism", samples=deleted,
                    region=region, device="cpu")  # fmt: skip
    result = gl.get.attribution(cohort, GENE)
    reference = result["attribution"].sel(sequence="reference")
    inside = (result.position >= region[0]) & (result.position < region[1])
    assert np.isfinite(reference.values[inside]).all() and np.isnan(reference.values[~inside]).all()
    window = gl.tl.attribution.attribute.gene_window(cohort, GENE)  # brute force, one mutant
    position = int(result.position[inside][3])
    at = window.columns(np.array([position]))[0]
    base = "ACGT".index(window.sequence[at])
    other = (base + 1) % 4
    mutant = window.sequence[:at] + "ACGT"[other] + window.sequence[at + 1 :]
    scores = [model.homozygous(onehot([s], 256)).item() for s in (window.sequence, mutant)]
    assert reference.sel(position=position).values[other] == pytest.approx(
        scores[1] - scores[0], abs=1e-4
    )
    lengths = gl.get.unique_haplotypes(cohort, GENE)["length"]
    carrier = result["attribution"].sel(sequence=f"haplotype_{lengths.idxmin()}")  # deletion
    assert np.isnan(carrier.sel(position=1448428).values).all()  # the deleted C
    assert np.isfinite(carrier.sel(position=1448427).values).all()

    gl.tl.attribute(cohort, gene=GENE, model=model, method="integrated_gradients",
                    samples=deleted, n_steps=32, device="cpu")  # fmt: skip
    ig = gl.get.attribution(cohort, GENE, key="gl_integrated_gradients_expression")
    scored = np.isfinite(ig["attribution"].values).any(axis=2).sum(axis=1)
    assert scored[0] == 256  # the reference bases the model reads, around the anchor
    assert (scored[1:] <= 256).all()
    assert np.abs(ig["convergence_delta"].values).max() < 0.05


@needs_backbones
def test_variant_effects_of_a_fused_model(fused):
    cohort, _, fitted = fused
    gl.tl.variant_effects(cohort, gene=GENE, expression_model=fitted["fusion"] / GENE / "all",
                          device="cpu")  # fmt: skip
    table = gl.get.variant_effects(cohort, GENE).set_index("position")
    read = (table.index >= 1448416 - 127) & (table.index <= 1448416 + 128)  # 256 around it
    assert np.isfinite(table.loc[read, "delta_expression"]).all()
    assert np.isnan(table.loc[~read, "delta_expression"]).all()  # outside the model's input
    deletion = table.loc[1448427]
    assert deletion["kind"] == "deletion"
    assert deletion["delta_expression"] > 0  # expression rises with the deletion's copies
    assert deletion["delta_expression_carriers"] == pytest.approx(
        deletion["delta_expression"], rel=0.5
    )
