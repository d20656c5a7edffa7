"""Which GTEx LCL eQTL lead variants the shipped example joins, and how far from their TSS.

Reads the GTEx v8 EBV-transformed lymphocyte eGene table (``shared/data/eqtl``) and the
example VCF (chr20:1,000,001–2,000,000, 503 Europeans of 1000 Genomes), joins the lead
variants by rsID, and records for each: gene, q-value, slope and distance to its gene's TSS
(GTEx's ``tss_distance``). Also counts the lead variants that lead more than one gene.
These are the facts behind "sign agreement cannot be measured on the shipped data".

    python benchmarks/eqtl_join_facts.py   # writes results/eqtl_join.json
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

import genlm_sc as gl

HERE = Path(__file__).resolve().parent
EQTL = HERE.parents[1] / "shared" / "data" / "eqtl"
TABLE = EQTL / "GTEx_v8_Cells_EBV-transformed_lymphocytes.v8.egenes.txt.gz"


def main() -> None:
    egenes = pd.read_csv(TABLE, sep="\t")
    leads = egenes["rs_id_dbSNP151_GRCh38p7"]
    shared = leads[leads.str.startswith("rs")].value_counts()  # "." is no rsID
    from cyvcf2 import VCF

    ids = {v.ID for v in VCF(str(gl.datasets.chr20_example().vcf)) if v.ID}
    joined = egenes[leads.isin(ids)]
    rows = [
        {"rsid": r.rs_id_dbSNP151_GRCh38p7, "gene": r.gene_name, "qval": round(r.qval, 3),
         "slope": round(r.slope, 3), "tss_distance_bp": int(r.tss_distance)}
        for r in joined.itertuples()
    ]  # fmt: skip
    result = {
        "egenes": len(egenes),
        "lead_variants_leading_several_genes": int((shared > 1).sum()),
        "most_genes_led_by_one_variant": int(shared.max()),
        "lead_variants_in_example_vcf": len(rows),
        "significant_at_q_0.05": sum(r["qval"] < 0.05 for r in rows),
        "within_2048_bp_of_tss": sum(abs(r["tss_distance_bp"]) <= 2048 for r in rows),
        "joined": sorted(rows, key=lambda r: abs(r["tss_distance_bp"])),
    }
    print(json.dumps(result, indent=1))
    (HERE / "results" / "eqtl_join.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
