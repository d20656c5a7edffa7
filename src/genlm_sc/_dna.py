"""The DNA alphabet, defined once for every floor of the package."""

#: The four bases, in the order every base axis of the package uses (one-hot columns,
#: attribution ``base`` coordinates, k-mer enumeration of our tokenizers, motif matrices).
BASES = "ACGT"
#: Index of each base along such an axis.
BASE_INDEX = {base: i for i, base in enumerate(BASES)}
