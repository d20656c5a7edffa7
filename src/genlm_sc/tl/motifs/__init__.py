"""Motifs: the motif scanner, and the variants of a cohort that make or break matches."""
