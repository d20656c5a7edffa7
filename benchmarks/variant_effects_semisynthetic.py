"""Semi-synthetic truth for variant effects and motifs.

On the real 503-person genotypes of the shipped example, expression is simulated from
planted causal variants (``gl.datasets.simulate_expression(causal=...)``). In genes where
a common SNV breaks a JASPAR 2024 motif instance of the reference by FIMO (memelite's, on
the matrices our scanner uses: a placement over the SNV at p < 1e-4 with REF, not with
ALT), that SNV is planted as the causal variant with a negative effect (a broken binding
site lowers expression); other genes get 1–2 random common causal variants. FIMO, not our
scanner, picks the planted motifs, so that our scanner's report below is a check. Per
gene, a language model is fine-tuned on the people of one half
(``fit_expression(method="finetune")``, two outer folds, the fold-0 model kept), then:

* ``gl.tl.variant_effects`` with that model ranks the window's variants by
  ``|delta_expression|`` (reference background) and by ``|delta_expression_carriers|``;
  reported: rank of each causal variant, precision of the top ``n_causal``, sign agreement
  with the planted effect, and the same for PrediXcan weights and for the best single-SNP
  correlation as context (variants in LD with a causal one cannot be told apart from data);
* ``gl.tl.motif_matches`` on the planted variants must report the planted motif as broken.

``--causal gtex`` plants instead the GTEx v8 LCL lead variants that the example VCF
holds (joined by rsID, 8 of them in genes of the example annotation), each in its own
gene with its GTEx slope as the effect (allele-matched; one causal variant per gene), in a
window centred on the variant rather than on the TSS (most lie 4–300 kb from it); then
``gl.tl.variant_effects(eqtl=...)`` joins the real GTEx table and reports whether the
predicted change has the sign of the measured eQTL.

Writes ``results/variant_effects_semisynthetic.{json,md,csv}`` and a figure.
``--motifs-only`` plants and checks the motifs of ``--genes`` genes, and fits nothing.

    python benchmarks/variant_effects_semisynthetic.py --genes 8 --width 256
    python benchmarks/variant_effects_semisynthetic.py --genes 30 --width 512 --motifs-only
    python benchmarks/variant_effects_semisynthetic.py --causal gtex --width 512 --epochs 3 \
        --out benchmarks/results/variant_effects_gtex

Needs ``memelite`` (``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from motif_fimo_agreement import KEYS, fimo_hits, fimo_matrices

import genlm_sc as gl

HERE = Path(__file__).parent
RESULTS = HERE / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
JASPAR = SHARED / "motifs" / "JASPAR2024_CORE_vertebrates_nonredundant.jaspar.gz"
GTEX = SHARED / "eqtl" / "GTEx_v8_Cells_EBV-transformed_lymphocytes.v8.egenes.txt.gz"


def gtex_cohort(width: int):
    """The example people over windows centred on the GTEx LCL lead variants the VCF holds,
    one per eGene of the example annotation, and those variants with their slopes."""
    from cyvcf2 import VCF

    example = gl.datasets.chr20_example()
    egenes = gl.io.read_eqtl(GTEX)
    found = {v.ID: (v.POS - 1, v.REF, v.ALT[0]) for v in VCF(str(example.vcf))
             if v.ID and len(v.ALT) == 1}  # fmt: skip
    genes = pd.read_csv(example.genes, sep="\t")
    leads = egenes[egenes["rsid"].isin(found) & egenes["gene_name"].isin(genes["gene_name"])]
    rows, causal = [], []
    for lead in leads.itertuples():
        position, ref, alt = found[lead.rsid]
        if (lead.ref, lead.alt) not in ((ref, alt), (alt, ref)):
            continue  # alleles that do not match the VCF's
        gene = genes[genes["gene_name"] == lead.gene_name].iloc[0].copy()
        # a one-base "gene" at the lead variant, on the gene's strand: the window is
        # centred on the variant, in the gene's orientation
        gene["start0"], gene["end"], gene["tss0"] = position, position + 1, position
        rows.append(gene)
        effect = lead.slope if lead.alt == alt else -lead.slope
        causal.append({"gene": gene["gene_id"], "variant_id": lead.rsid, "effect": effect})
    panel = gl.pp.gene_windows(pd.DataFrame(rows), fasta=example.fasta, width=width)
    cohort = gl.pp.personal_sequences(example.vcf, fasta=example.fasta, genes=panel,
                                      panel=example.panel, unphased="random")  # fmt: skip
    return cohort, pd.DataFrame(causal)


def common_variants(cohort, gene: str, min_maf: float) -> pd.DataFrame:
    ds = gl.get.haplotype_store(cohort)
    g = list(ds["gene"].values).index(gene)
    rows = np.flatnonzero(ds["variant_gene"].values == g)
    calls = ds["genotype"].values[:, rows, :]
    frequency = (calls == 1).sum(axis=(0, 2)) / np.maximum((calls >= 0).sum(axis=(0, 2)), 1)
    table = pd.DataFrame(
        {
            "variant_id": ds["variant_id"].values[rows],
            "position": ds["variant_position"].values[rows],
            "ref": ds["variant_ref"].values[rows],
            "alt": ds["variant_alt"].values[rows],
            "frequency": frequency,
        }
    )
    maf = np.minimum(table["frequency"], 1 - table["frequency"])
    snv = (table["ref"].str.len() == 1) & (table["alt"].str.len() == 1)
    return table[(maf >= min_maf) & snv & table["variant_id"].str.startswith("rs")]


def plant(cohort, genes, motifs, rng, min_maf) -> tuple[pd.DataFrame, dict]:
    """Causal variants: a common SNV that breaks a motif by FIMO where there is one, else random."""
    rows, motif_of = [], {}
    matrices = fimo_matrices(motifs, pseudocount=0.8)
    names = {m.matrix_id: m.name for m in motifs}
    for gene in genes:
        common = common_variants(cohort, gene, min_maf)
        broken = fimo_broken(cohort, gene, common, matrices)
        if len(broken):
            best = broken.iloc[0]
            rows.append({"gene": gene, "variant_id": best["variant_id"], "effect": -1.0})
            motif_of[gene] = (best["variant_id"], best["motif_id"], names[best["motif_id"]])
            continue
        chosen = rng.choice(common["variant_id"].to_numpy(), min(len(common), rng.integers(1, 3)),
                            replace=False)  # fmt: skip
        for variant_id in chosen:
            rows.append({"gene": gene, "variant_id": variant_id, "effect": rng.standard_normal()})
    return pd.DataFrame(rows), motif_of


def fimo_broken(cohort, gene: str, common: pd.DataFrame, matrices, pvalue: float = 1e-4):
    """Reference motif placements over an SNV that FIMO finds at p < ``pvalue`` with REF and
    not with ALT (same motif, start and strand), by REF p-value."""
    flank = max(m.shape[1] for m in matrices.values()) - 1
    chrom = cohort.var.loc[gene, "chrom"]
    with gl.io.FastaReference(gl.get.recorded_fasta(cohort)) as reference:
        refs = [reference.fetch_str(chrom, int(p) - flank, int(p) + flank + 1).upper()
                for p in common["position"]]  # fmt: skip
    assert all(s[flank] == r for s, r in zip(refs, common["ref"], strict=True))
    alts = [s[:flank] + a + s[flank + 1 :] for s, a in zip(refs, common["alt"], strict=True)]
    if not refs:
        return pd.DataFrame(columns=[*KEYS, "pvalue", "variant_id"])
    found = fimo_hits(refs, matrices, threshold=pvalue, eps=0.0)
    found = found[(found["start"] <= flank) & (found["end"] > flank)]
    kept = fimo_hits(alts, matrices, threshold=pvalue, eps=0.0)[KEYS]
    found = found.merge(kept, on=KEYS, how="left", indicator=True)
    broken = found[found["_merge"] == "left_only"].sort_values("pvalue", kind="stable")
    return broken.assign(variant_id=common["variant_id"].to_numpy()[broken["sequence"]])


def motif_check(cohort, gene: str, motifs, planted: tuple[str, str, str]) -> dict:
    """Whether ``gl.tl.motif_matches`` reports the FIMO-planted motif broken by its variant."""
    variant_id, motif_id, name = planted
    gl.tl.motif_matches(cohort, gene=gene, motifs=motifs, variants=[variant_id])
    found = gl.get.motif_matches(cohort, gene)
    again = found[(found["motif_id"] == motif_id) & (found["effect"] == "breaks")]
    return {"planted_motif": f"{name} ({motif_id}) at {variant_id}",
            "motif_found_broken": bool(len(again))}  # fmt: skip


def rank_of(table: pd.DataFrame, column: str, causal: set[str]) -> list[int]:
    order = table.assign(size=table[column].abs()).sort_values("size", ascending=False)
    ids = order.drop_duplicates("variant_id")["variant_id"].tolist()
    return [ids.index(c) + 1 for c in causal if c in ids]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=HERE / "work" / "pretrain" / "reference")
    parser.add_argument("--genes", type=int, default=8)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--h2", type=float, default=0.4)
    parser.add_argument("--n-layers", type=int, default=2, help="encoder blocks kept")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--min-maf", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--motifs-only", action="store_true", help="plant and check motifs only")
    parser.add_argument("--causal", choices=("motifs", "gtex"), default="motifs",
                        help="motif-breaking or random causal variants, or GTEx leads")  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS / "variant_effects_semisynthetic",
                        help="results stem: STEM.json, .csv, .md, .png")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(exist_ok=True)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()

    motifs = gl.io.read_motifs(JASPAR)
    if args.causal == "gtex":
        cohort, causal = gtex_cohort(args.width)
        genes, motif_of = list(causal["gene"]), {}
    else:
        cohort = gl.datasets.example_cohort(width=args.width)
        candidates = [g for g in cohort.var_names
                      if len(common_variants(cohort, g, args.min_maf)) >= 2]  # fmt: skip
        genes = candidates[: args.genes]
        causal, motif_of = plant(cohort, genes, motifs, rng, args.min_maf)
    if args.motifs_only:
        checks = [motif_check(cohort, gene, motifs, motif_of[gene]) for gene in motif_of]
        print(pd.DataFrame(checks, index=list(motif_of)).to_string())
        found = sum(c["motif_found_broken"] for c in checks)
        print(f"{len(genes)} genes, {len(motif_of)} with a FIMO-planted motif; "
              f"gl.tl.motif_matches reports it broken in {found}")  # fmt: skip
        return
    gl.datasets.simulate_expression(cohort, h2=args.h2, causal=causal, random_state=args.seed)
    planted = cohort.uns["gl_simulation"]["causal_variants"]

    output = HERE / "work" / "semisynthetic_models"
    options = {
        "model": args.model, "strategy": "prune", "n_layers": args.n_layers,
        "epochs": args.epochs, "batch_size": 16, "learning_rate": 1e-3, "device": "cpu",
        "random_state": args.seed, "output_dir": output, "progress": False,
    }  # fmt: skip
    gl.tl.fit_expression(cohort, method="predixcan", genes=genes, n_folds=2)
    gl.tl.fit_expression(
        cohort, method="finetune", genes=genes, n_folds=2, finetune_options=options
    )
    fits = gl.get.expression_results(cohort)
    records, tables = [], []
    for gene in genes:
        truth = planted[planted["gene"] == gene]
        ids = set(truth["variant_id"])
        model = output / gene / "fold_0"
        gtex = GTEX if args.causal == "gtex" else None
        gl.tl.variant_effects(cohort, gene=gene, expression_model=model, eqtl=gtex, device="cpu")
        table = gl.get.variant_effects(cohort, gene)
        table = table.merge(truth[["variant_id", "effect"]], on="variant_id", how="left")
        table["gene"] = gene
        tables.append(table)
        dosage_r = _single_snp_r(cohort, gene, table)
        record = {
            "gene": gene, "n_variants": len(table), "n_causal": len(ids),
            "r_finetune": _r(fits, gene, "finetune"), "r_predixcan": _r(fits, gene, "predixcan"),
            "oracle_r": _r(fits, gene, "finetune", column="oracle_r"),
        }  # fmt: skip
        for column in ("delta_expression", "delta_expression_carriers"):
            ranks = rank_of(table, column, ids)
            record[f"{column}_ranks"] = ranks
            record[f"{column}_precision"] = float(np.mean([r <= len(ids) for r in ranks]))
            hits = table[table["variant_id"].isin(ids)]
            record[f"{column}_sign_agreement"] = float(
                np.mean(np.sign(hits[column]) == np.sign(hits["effect"]))
            )
        record["single_snp_precision"] = float(
            np.mean([r <= len(ids) for r in rank_of(dosage_r, "r", ids)])
        )
        if gene in motif_of:
            record.update(motif_check(cohort, gene, motifs, motif_of[gene]))
        if gtex is not None:  # the real eQTL table, joined by variant_effects
            lead = table[table["variant_id"].isin(ids)].iloc[0]
            record.update(variant_id=lead["variant_id"],
                          gene_name=cohort.var.loc[gene, "gene_name"],
                          gtex_slope=float(lead["eqtl_slope"]),
                          gtex_qval=float(lead["eqtl_qval"]),
                          carriers=int(lead["n_carriers"]),
                          eqtl_sign_agreement=bool(lead["sign_agreement"]))  # fmt: skip
        records.append(record)
        print(json.dumps(record, default=str), flush=True)

    summary = pd.DataFrame(records)
    found = summary.get("motif_found_broken", pd.Series(dtype=object))
    report = {
        "genes": len(genes), "width": args.width, "h2": args.h2, "model": str(args.model),
        "n_layers": args.n_layers, "epochs": args.epochs,
        "mean_r_finetune": float(summary["r_finetune"].mean()),
        "mean_r_predixcan": float(summary["r_predixcan"].mean()),
        "mean_oracle_r": float(summary["oracle_r"].mean()),
        "precision_delta_expression": float(summary["delta_expression_precision"].mean()),
        "precision_carriers": float(summary["delta_expression_carriers_precision"].mean()),
        "precision_single_snp": float(summary["single_snp_precision"].mean()),
        "sign_agreement": float(summary["delta_expression_sign_agreement"].mean()),
        "causal": args.causal,
        "eqtl_sign_agreement": (float(summary["eqtl_sign_agreement"].mean())
                                if "eqtl_sign_agreement" in summary else None),
        "motif_genes": int(found.notna().sum()),
        "motif_found": int(found.eq(True).sum()),
        "wall_s": time.perf_counter() - started,
    }  # fmt: skip
    print(json.dumps(report, indent=2))
    report["seed"] = args.seed
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    summary.to_csv(args.out.with_suffix(".csv"), index=False)
    args.out.with_suffix(".md").write_text(summary.to_markdown(index=False))
    _figure(pd.concat(tables), args.out.with_suffix(".png"))


def _r(fits: pd.DataFrame, gene: str, method: str, column: str = "r") -> float:
    """A fit's out-of-fold r, or its oracle r: corr(genetic value, expression), same people."""
    row = fits[(fits["gene"] == gene) & (fits["method"] == method)]
    return float(row[column].iloc[0]) if len(row) else float("nan")


def _single_snp_r(cohort, gene: str, table: pd.DataFrame) -> pd.DataFrame:
    """|Pearson r| of each variant's dosage with the simulated expression."""
    ds = gl.get.haplotype_store(cohort)
    g = list(ds["gene"].values).index(gene)
    rows = np.flatnonzero(ds["variant_gene"].values == g)
    dosage = (ds["genotype"].values[:, rows, :] == 1).sum(axis=2).astype(float)
    y = np.asarray(cohort[:, gene].X).ravel()
    r = [abs(np.corrcoef(d, y)[0, 1]) if d.std() > 0 else 0.0 for d in dosage.T]
    return pd.DataFrame({"variant_id": ds["variant_id"].values[rows], "r": r})


def _figure(table: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    causal = table["effect"].notna()
    ax.scatter(table.loc[~causal, "delta_expression"], np.zeros((~causal).sum()), s=10,
               color="lightgrey", label="other variants (effect 0)")  # fmt: skip
    ax.scatter(table.loc[causal, "delta_expression"], table.loc[causal, "effect"], s=28,
               color="tab:red", label="planted causal")  # fmt: skip
    ax.axhline(0, color="grey", lw=0.6)
    ax.axvline(0, color="grey", lw=0.6)
    ax.set_xlabel("predicted change per ALT copy (fine-tuned model)")
    ax.set_ylabel("planted effect (SD units)")
    ax.set_title("Semi-synthetic variant effects")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
