"""Point labels in scatter plots overlap neither each other nor the points."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import genlm_sc as gl


def boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_haplotype_diversity_labels_are_apart(cohort):
    ax = gl.pl.haplotype_diversity(cohort, label=6)
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    names = set(cohort.var["gene_name"])
    texts = [t for t in ax.texts if t.get_text() in names]
    assert len(texts) == 12
    boxes = [t.get_window_extent(renderer) for t in texts]
    for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
        assert not boxes_overlap(a, b), (texts[i].get_text(), texts[j].get_text())
    points = ax.transData.transform(
        np.c_[cohort.var["n_variants"], cohort.var["n_haplotypes"]].astype(float)
    )
    for text, box in zip(texts, boxes, strict=True):
        inside = [box.x0 < x < box.x1 and box.y0 < y < box.y1 for x, y in points]
        assert not any(inside), text.get_text()
    plt.close(ax.figure)
