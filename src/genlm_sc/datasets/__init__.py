"""Example data shipped with the package, and a simulator with known ground truth."""

from ._example import ExampleFiles, chr20_example, example_cohort, example_gene_panel
from ._simulate import simulate_expression

__all__ = [
    "ExampleFiles",
    "chr20_example",
    "example_cohort",
    "example_gene_panel",
    "simulate_expression",
]
