# %% [markdown]
# # Personal haplotypes around genes
#
# From a reference genome, a VCF of real people and a gene annotation to each person's two
# haplotype sequences around each gene. The data are shipped with the package: 1 Mb of
# chr20 (GRCh37) with 503 Europeans of 1000 Genomes and the 30 genes whose TSS lies there.
# Run as a script (`python tutorials/01_personal_haplotypes.py`) or open with jupytext.

# %%
import matplotlib

matplotlib.use("Agg")
import genlm_sc as gl

files = gl.datasets.chr20_example()
print(files.notice.read_text().splitlines()[0])

# %% [markdown]
# ## A gene panel
# One observation per gene; the window is centred on the TSS, which lands at index
# `width // 2` of the gene-oriented sequence (minus-strand genes are reverse-complemented).

# %%
genes = gl.pp.gene_windows(files.genes, fasta=files.fasta, width=2048)
print(genes.obs[["gene_name", "chrom", "start", "end", "strand", "tss"]].head())
print(gl.get.sequences(genes).str.slice(1016, 1032).head())

# %% [markdown]
# ## Everyone's haplotypes
# A few heterozygous calls in this VCF are unphased; we must say what to do with them.

# %%
cohort = gl.pp.personal_sequences(
    files.vcf, fasta=files.fasta, genes=genes, panel=files.panel, unphased="random", seed=0
)
print(cohort)
print(cohort.obs["population"].value_counts())
print(cohort.var[["gene_name", "n_variants", "n_haplotypes"]].sort_values("n_haplotypes").tail())

# %% [markdown]
# Each distinct haplotype is stored once; people point at theirs.

# %%
table = gl.get.unique_haplotypes(cohort, "FKBP1A")
print(table[["length", "count"]].head())
per_person = gl.get.haplotypes(cohort, "FKBP1A", samples=["HG00096", "NA12878"])
print(per_person.map(len))

# %% [markdown]
# A fixed-length, TSS-aligned view for models:

# %%
view = gl.get.fixed_length_haplotypes(cohort, "FKBP1A", length=1024)
print(view.sizes)

# %% [markdown]
# ## Save, read back, plot

# %%
gl.write(cohort, "tutorial_cohort.zarr")
again = gl.read("tutorial_cohort.zarr")
ax = gl.pl.haplotype_diversity(again)
ax.figure.savefig("tutorial_haplotype_diversity.png", dpi=120, bbox_inches="tight")
