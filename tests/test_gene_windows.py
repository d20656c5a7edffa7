"""Gene panels: the anchor base lands at index width // 2 on both strands."""

from __future__ import annotations

import numpy as np
import pytest

import genlm_sc as gl
from genlm_sc.io.fasta import FastaReference
from genlm_sc.pp.haplotypes import reverse_complement


@pytest.mark.parametrize("anchor", ["tss", "tes", "center"])
@pytest.mark.parametrize("width", [1000, 1001])
def test_anchor_base_is_at_the_middle_index(example, anchor, width):
    panel = gl.pp.gene_windows(example.genes, fasta=example.fasta, width=width, anchor=anchor)
    windows = gl.get.sequences(panel)
    with FastaReference(example.fasta) as fasta:
        for gene, row in panel.obs.iterrows():
            body = fasta.fetch(row["chrom"], int(row["gene_start"]), int(row["gene_end"]))
            if row["strand"] == "-":
                body = reverse_complement(body)  # gene orientation
            index = {"tss": 0, "tes": len(body) - 1, "center": (len(body) - 1) // 2}[anchor]
            assert windows[gene][width // 2] == chr(body[index]), (gene, row["strand"])
            assert len(windows[gene]) == width
    assert set(panel.obs["strand"]) == {"+", "-"}


def test_panel_is_sorted_and_documented(panel):
    starts = panel.obs["start"].to_numpy()
    assert np.all(np.diff(starts) >= 0)
    assert panel.uns["gl"]["width"] == 4096
    assert panel.uns["gl"]["fasta"]["sha256_edges"]
