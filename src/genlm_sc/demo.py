"""The main demo on the shipped example data: ``python -m genlm_sc.demo [OUTDIR]``.

Builds the 30-gene panel, every person's haplotypes, writes the cohort store, reads it back
and draws the haplotype diversity plot; then pretrains a small variant-aware DNA language
model on the example region (a few minutes on a laptop CPU), embeds every distinct
haplotype with it and clusters the people of one gene with scanpy; finally scores every
variant of that gene zero-shot with the model and draws the bases the model relies on
around the variant it finds least likely.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import genlm_sc as gl


def main(outdir: str = "genlm_sc_demo", *, pretrain_steps: int = 150) -> None:
    """Run the demo, writing into ``outdir`` (``pretrain_steps``: language-model budget)."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    files = gl.datasets.chr20_example()
    started = time.perf_counter()
    genes = gl.pp.gene_windows(files.genes, fasta=files.fasta, width=4096)
    print(f"gene panel: {genes.n_obs} genes, 4,096-bp windows centred on the TSS")
    print(gl.get.sequences(genes).str.slice(2040, 2056).rename("bases around TSS").head(3))
    cohort = gl.pp.personal_sequences(
        files.vcf,
        fasta=files.fasta,
        genes=genes,
        panel=files.panel,
        unphased="random",
        store=out / "cohort.zarr",
    )
    elapsed = time.perf_counter() - started
    print(cohort)
    counts = cohort.uns["gl"]["counts"]
    print(
        f"{counts['records']} records ({counts['snv']} SNV, {counts['indel']} indel alleles), "
        f"{counts['unphased_heterozygous']} unphased heterozygous calls phased at random"
    )
    unique = int(cohort.var["n_haplotypes"].sum())
    print(
        f"{unique} distinct haplotypes for {cohort.n_obs} people x 2 x {cohort.n_vars} genes "
        f"({cohort.n_obs * 2 * cohort.n_vars} person-haplotypes) in {elapsed:.1f} s"
    )
    again = gl.read(out / "cohort.zarr")
    fkbp1a = gl.get.haplotypes(again, "FKBP1A", samples=["HG00096", "NA12878"])
    print("FKBP1A haplotype lengths:\n", fkbp1a.map(len))
    gl.datasets.simulate_expression(again, n_causal=(1, 3), h2=(0.1, 0.5), random_state=0)
    print(again.uns["gl_simulation"]["causal_variants"].head())
    ax = gl.pl.haplotype_diversity(again)
    ax.figure.savefig(out / "haplotype_diversity.png", dpi=150, bbox_inches="tight")
    print(f"wrote {out / 'cohort.zarr'} and {out / 'haplotype_diversity.png'}")
    language_model(again, files, out, steps=pretrain_steps)


def language_model(cohort, files, out: Path, *, steps: int) -> None:
    """Pretrain with variants, embed the cohort's haplotypes, cluster people with scanpy."""
    import scanpy as sc
    from scipy.sparse import SparseEfficiencyWarning

    from .models import pretraining_record
    from .pp import PretrainingCorpus

    train, held_out = ["20:1000001-1800000"], ["20:1800001-2000000"]
    corpus = PretrainingCorpus().add_fasta(files.fasta, regions=train)
    corpus.add_variant_windows(files.vcf, fasta=files.fasta, regions=train, width=512)
    evaluation = PretrainingCorpus().add_fasta(files.fasta, regions=held_out)
    print(f"pretraining a small variant-aware language model for {steps} steps on "
          f"{', '.join(train)} (held out: {', '.join(held_out)})", flush=True)  # fmt: skip
    model_dir = gl.tl.pretrain(
        corpus, eval_corpus=evaluation, output_dir=out / "chr20_lm", max_steps=steps,
        eval_steps=max(steps // 2, 1), genome_build="GRCh37",
    )  # fmt: skip
    bits = pretraining_record(model_dir)["metrics"]["eval_heldout_bits_per_base"]
    print(f"pretrained {model_dir}: {bits:.3f} bits/base on the held-out region")
    # the gene whose number of distinct haplotypes is closest to 60 (a quick demo)
    gene = (cohort.var["n_haplotypes"] - 60).abs().idxmin()
    gl.tl.embed(cohort, model=model_dir, genes=[gene])
    n_forward = cohort.uns["gl"]["embeddings"]["X_gl"]["n_forward_sequences"]
    print(
        f"embedded {n_forward} distinct haplotypes of {gene} ({2 * cohort.n_obs} person-haplotypes)"
    )
    people = gl.get.gene_view(cohort, gene)
    with warnings.catch_warnings():  # people sharing both haplotypes sit at distance 0
        warnings.filterwarnings("ignore", category=SparseEfficiencyWarning)
        sc.pp.neighbors(people, use_rep="X_gl")
    sc.tl.umap(people, random_state=0)
    sc.tl.leiden(people, flavor="igraph", n_iterations=2, directed=False, random_state=0)
    ax = gl.pl.embedding(people, basis="umap", color="leiden")
    ax.set_title(f"{cohort.var.loc[gene, 'gene_name']}: people by their two haplotypes")
    ax.figure.savefig(out / "people_umap.png", dpi=150, bbox_inches="tight")
    print(f"wrote {out / 'people_umap.png'}")
    variant_effects(cohort, gene, model_dir, out)


def variant_effects(cohort, gene: str, model_dir: Path, out: Path) -> None:
    """Zero-shot variant scores and a gradient × input logo around the lowest-scoring SNV."""
    import matplotlib.pyplot as plt

    gl.tl.variant_effects(cohort, gene=gene, model=model_dir)
    effects = gl.get.variant_effects(cohort, gene)
    columns = ["variant_id", "position", "ref", "alt", "alt_frequency", "llr_masked"]
    ranked = effects.dropna(subset=["llr_masked"]).sort_values("llr_masked")
    print(f"variants of {gene} the model finds least likely (natural-log ratio ALT vs REF):")
    print(ranked[columns].head(5).to_string(index=False))
    gl.tl.attribute(cohort, gene=gene, model=model_dir, method="grad_x_input", target="mlm")
    fig, ax = plt.subplots(figsize=(12, 2.8))
    gl.pl.attribution(cohort, gene=gene, key="gl_grad_x_input_mlm",
                      center=int(ranked["position"].iloc[0]), flank=30, ax=ax)  # fmt: skip
    fig.savefig(out / "attribution.png", dpi=150, bbox_inches="tight")
    print(f"wrote {out / 'attribution.png'}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
