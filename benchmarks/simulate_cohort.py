"""Simulate a phased cohort over the 1 Mb of real chr20 sequence and write it as a VCF.

The genealogy comes from msprime (coalescent with recombination) under a human-like
demography; mutations are placed on it with msprime's binary (infinite-alleles-free,
two-state) model on a discrete genome. Each segregating site becomes a VCF record whose
REF is the real hs37d5 base at that position and whose ALT is a different base
(transitions twice as likely as transversions). Optionally a fraction of the sites is
turned into short indels (``--indel-fraction``), left-aligned with ``bcftools norm``.

The output is bgzipped and tabix-indexed, deterministic for a given seed, and cached
under ``benchmarks/work/`` (git-ignored): a second call with the same parameters
returns the cached file at once.

Usage::

    python benchmarks/simulate_cohort.py                 # 2,500 people, SNVs only
    python benchmarks/simulate_cohort.py --n-people 200 --indel-fraction 0.1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
# ../shared/data from the project root, as in the other tests and examples
DATA = Path(os.environ.get("GENLM_SC_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
REFERENCE = DATA / "reference" / "hs37d5_chr20_1-2000000_Npadded.fa.gz"

CONTIG = "20"
CONTIG_LENGTH = 2_000_000
REGION_START0 = 1_000_000  # first real base (0-based); 1,000,001 in 1-based VCF coordinates
REGION_END0 = 2_000_000

_TRANSITION = {ord("A"): ord("G"), ord("G"): ord("A"), ord("C"): ord("T"), ord("T"): ord("C")}
_TRANSVERSIONS = {
    ord("A"): (ord("C"), ord("T")),
    ord("G"): (ord("C"), ord("T")),
    ord("C"): (ord("A"), ord("G")),
    ord("T"): (ord("A"), ord("G")),
}
_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)


@dataclass(frozen=True)
class SimulationParams:
    """Everything that determines the simulated VCF (and so its cache key)."""

    n_people: int = 2500
    seed: int = 20240601
    demography: str = "ooa"
    recombination_rate: float = 1e-8
    mutation_rate: float = 1.25e-8
    indel_fraction: float = 0.0

    def stem(self) -> str:
        """File name stem that identifies these parameters."""
        stem = f"sim_{self.demography}_n{self.n_people}_seed{self.seed}"
        if self.recombination_rate != 1e-8 or self.mutation_rate != 1.25e-8:
            stem += f"_r{self.recombination_rate:g}_mu{self.mutation_rate:g}"
        if self.indel_fraction > 0:
            stem += f"_indel{self.indel_fraction:g}"
        return stem


def demography_model(name: str):
    """A one-population demography for a European-like cohort.

    ``"constant"``: Ne = 10,000. ``"ooa"``: the European branch of the Tennessen et al.
    (2012) out-of-Africa model, without migration: ancestral Ne 7,310, growth to 14,474
    at 5,920 generations ago, out-of-Africa bottleneck of 1,861 from 2,040 generations
    ago, a second bottleneck to 1,032 at 920 generations ago with slow growth
    (r = 0.307 % per generation) to about 9,300 at 204 generations ago, then fast growth
    (r = 1.95 %) to about 500,000 today. The recent growth gives the excess of rare
    variants seen in large real cohorts.
    """
    import msprime

    demography = msprime.Demography()
    if name == "constant":
        demography.add_population(name="EUR", initial_size=10_000)
        return demography
    if name != "ooa":
        raise ValueError(f"unknown demography {name!r}; use 'ooa' or 'constant'")
    t_fast, r_fast = 204, 0.0195
    t_eu, r_slow, n_eu0 = 920, 0.00307, 1_032
    n_at_fast = n_eu0 * np.exp(r_slow * (t_eu - t_fast))
    demography.add_population(
        name="EUR", initial_size=n_at_fast * np.exp(r_fast * t_fast), growth_rate=r_fast
    )
    demography.add_population_parameters_change(
        time=t_fast, initial_size=n_at_fast, growth_rate=r_slow, population="EUR"
    )
    demography.add_population_parameters_change(
        time=t_eu, initial_size=1_861, growth_rate=0, population="EUR"
    )
    demography.add_population_parameters_change(time=2_040, initial_size=14_474, population="EUR")
    demography.add_population_parameters_change(time=5_920, initial_size=7_310, population="EUR")
    return demography


def simulate_genotypes(params: SimulationParams, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Simulate the haplotypes of ``params.n_people`` diploid people.

    Returns
    -------
    positions
        0-based site positions relative to the start of the simulated segment, sorted.
    genotypes
        ``(n_sites, 2 * n_people)`` uint8 matrix of 0 (ancestral) / 1 (derived) alleles;
        columns ``2 i`` and ``2 i + 1`` are the two haplotypes of person ``i``.
    """
    import msprime

    ts = msprime.sim_ancestry(
        samples={"EUR": params.n_people},
        demography=demography_model(params.demography),
        sequence_length=length,
        recombination_rate=params.recombination_rate,
        ploidy=2,
        discrete_genome=True,
        random_seed=params.seed,
    )
    ts = msprime.sim_mutations(
        ts,
        rate=params.mutation_rate,
        model=msprime.BinaryMutationModel(),
        discrete_genome=True,
        random_seed=params.seed + 1,
    )
    positions = ts.tables.sites.position.astype(np.int64)
    genotypes = ts.genotype_matrix().astype(np.uint8, copy=False)
    return positions, genotypes


def _alt_bases(ref_bases: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A different base for each REF base: a transition with probability 2/3."""
    alt = np.empty_like(ref_bases)
    transition = rng.random(ref_bases.size) < 2 / 3
    pick = rng.integers(0, 2, ref_bases.size)
    for i, (base, is_ts, which) in enumerate(zip(ref_bases, transition, pick, strict=True)):
        alt[i] = _TRANSITION[base] if is_ts else _TRANSVERSIONS[base][which]
    return alt


def make_alleles(
    positions: np.ndarray,
    reference: bytes,
    rng: np.random.Generator,
    indel_fraction: float = 0.0,
) -> tuple[np.ndarray, list[bytes], list[bytes]]:
    """Choose REF/ALT alleles for each simulated site from the real reference.

    Parameters
    ----------
    positions
        0-based positions into ``reference``.
    reference
        The reference sequence of the simulated segment (upper case).
    rng
        Random generator (ALT bases, indel choice and lengths).
    indel_fraction
        Fraction of sites to turn into indels (half deletions, half insertions, 1–10 bp).

    Returns
    -------
    keep
        Indices of the sites kept (sites on ``N`` and sites inside a simulated deletion
        are dropped).
    refs, alts
        REF and ALT alleles of the kept sites.
    """
    ref_arr = np.frombuffer(reference, dtype=np.uint8)
    ref_bases = ref_arr[positions]
    acgt = np.isin(ref_bases, _BASES)
    alt_bases = np.zeros_like(ref_bases)
    alt_bases[acgt] = _alt_bases(ref_bases[acgt], rng)
    is_indel = rng.random(positions.size) < indel_fraction
    is_deletion = rng.random(positions.size) < 0.5
    lengths = np.minimum(rng.geometric(0.4, positions.size), 10)

    keep: list[int] = []
    refs: list[bytes] = []
    alts: list[bytes] = []
    blocked_until = -1  # last position covered by the REF allele of the previous record
    for i, pos in enumerate(positions.tolist()):
        if not acgt[i] or pos <= blocked_until:
            continue
        ref = bytes([ref_bases[i]])
        alt = bytes([alt_bases[i]])
        if is_indel[i]:
            k = int(lengths[i])
            if is_deletion[i]:
                span = reference[pos : pos + k + 1]
                if len(span) == k + 1 and b"N" not in span:
                    ref, alt = span, span[:1]
            else:
                ins = _BASES[rng.integers(0, 4, k)].tobytes()
                ref, alt = ref, ref + ins
        keep.append(i)
        refs.append(ref)
        alts.append(alt)
        blocked_until = pos + len(ref) - 1
    return np.asarray(keep, dtype=np.int64), refs, alts


def _header(params: SimulationParams, n_sites: int) -> str:
    import msprime

    samples = "\t".join(sample_ids(params.n_people))
    return (
        "##fileformat=VCFv4.2\n"
        '##FILTER=<ID=PASS,Description="All filters passed">\n'
        f"##source=genlm_sc benchmarks/simulate_cohort.py, msprime {msprime.__version__}; "
        f"{json.dumps(asdict(params))}; {n_sites} sites\n"
        f"##reference=hs37d5 chr20 (REF alleles are the real bases of "
        f"{CONTIG}:{REGION_START0 + 1}-{REGION_END0})\n"
        f'##contig=<ID={CONTIG},length={CONTIG_LENGTH},assembly="b37">\n'
        '##INFO=<ID=AC,Number=A,Type=Integer,Description="Alt allele count">\n'
        '##INFO=<ID=AN,Number=1,Type=Integer,Description="Total called alleles">\n'
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Phased genotype">\n'
        f"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{samples}\n"
    )


def sample_ids(n_people: int) -> list[str]:
    """Sample ids ``SIM00001``, ``SIM00002``, ... (zero-padded so they sort as numbers)."""
    width = max(5, len(str(n_people)))
    return [f"SIM{i:0{width}d}" for i in range(1, n_people + 1)]


def write_vcf(
    path: Path,
    params: SimulationParams,
    positions1: np.ndarray,
    refs: list[bytes],
    alts: list[bytes],
    genotypes: np.ndarray,
    chunk: int = 2000,
) -> None:
    """Write a plain-text phased VCF (bgzip it afterwards).

    ``positions1`` are 1-based positions; ``genotypes`` is ``(n_sites, 2 * n_people)``.
    The genotype columns are formatted with numpy, ``chunk`` sites at a time.
    """
    n_people = genotypes.shape[1] // 2
    an = 2 * n_people
    with open(path, "wb") as out:
        out.write(_header(params, len(refs)).encode())
        for lo in range(0, len(refs), chunk):
            g = genotypes[lo : lo + chunk]
            cells = np.empty((g.shape[0], n_people, 4), dtype=np.uint8)
            cells[:, :, 0] = g[:, 0::2] + ord("0")
            cells[:, :, 1] = ord("|")
            cells[:, :, 2] = g[:, 1::2] + ord("0")
            cells[:, :, 3] = ord("\t")
            cells[:, -1, 3] = ord("\n")
            ac = g.sum(axis=1, dtype=np.int64)
            for j in range(g.shape[0]):
                i = lo + j
                out.write(
                    b"%s\t%d\t.\t%s\t%s\t.\tPASS\tAC=%d;AN=%d\tGT\t"
                    % (CONTIG.encode(), positions1[i], refs[i], alts[i], ac[j], an)
                )
                out.write(cells[j].tobytes())


def simulate_cohort(
    params: SimulationParams | None = None,
    *,
    out_dir: Path = WORK,
    reference: Path = REFERENCE,
    force: bool = False,
    verbose: bool = True,
) -> Path:
    """Simulate the cohort (or reuse the cached one) and return the path of its ``.vcf.gz``.

    A JSON file next to the VCF records the parameters and summary statistics.
    """
    import pysam

    params = params or SimulationParams()
    out_dir.mkdir(parents=True, exist_ok=True)
    vcf_gz = out_dir / f"{params.stem()}.vcf.gz"
    meta_path = out_dir / f"{params.stem()}.json"
    if not force and vcf_gz.exists() and Path(f"{vcf_gz}.tbi").exists() and meta_path.exists():
        return vcf_gz

    t0 = time.perf_counter()
    length = REGION_END0 - REGION_START0
    with pysam.FastaFile(str(reference)) as fasta:
        segment = fasta.fetch(CONTIG, REGION_START0, REGION_END0).upper().encode()
    positions, genotypes = simulate_genotypes(params, length)
    t_sim = time.perf_counter() - t0

    rng = np.random.default_rng(params.seed + 2)
    keep, refs, alts = make_alleles(positions, segment, rng, params.indel_fraction)
    genotypes = genotypes[keep]
    positions1 = positions[keep] + REGION_START0 + 1

    plain = out_dir / f"{params.stem()}.vcf"
    write_vcf(plain, params, positions1, refs, alts, genotypes)
    if params.indel_fraction > 0:
        # indels are placed at random, so left-align them (GenVarLoader requires it)
        norm = ["bcftools", "norm", "--no-version", "-f", str(reference), "-Oz"]
        subprocess.run(
            [*norm, "-o", str(vcf_gz), str(plain)],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        plain.unlink()
        pysam.tabix_index(str(vcf_gz), preset="vcf", force=True)
    else:
        # bgzip + tabix; removes the plain-text file
        pysam.tabix_index(str(plain), preset="vcf", force=True, keep_original=False)
    elapsed = time.perf_counter() - t0

    af = genotypes.mean(axis=1)
    n_indels = sum(len(r) != len(a) for r, a in zip(refs, alts, strict=True))
    meta = {
        "params": asdict(params),
        "vcf": str(vcf_gz),
        "n_sites": len(refs),
        "n_indels": n_indels,
        "n_singletons": int((genotypes.sum(axis=1) == 1).sum()),
        "n_af_ge_0.01": int((af >= 0.01).sum()),
        "sites_per_kb": len(refs) / (length / 1000),
        "simulate_seconds": round(t_sim, 2),
        "total_seconds": round(elapsed, 2),
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    if verbose:
        print(
            f"simulated {params.n_people} people, {meta['n_sites']} sites "
            f"({meta['n_indels']} indels, {meta['n_singletons']} singletons) "
            f"in {elapsed:.1f} s -> {vcf_gz}"
        )
    return vcf_gz


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-people", type=int, default=SimulationParams.n_people)
    parser.add_argument("--seed", type=int, default=SimulationParams.seed)
    parser.add_argument("--demography", choices=["ooa", "constant"], default="ooa")
    parser.add_argument("--recombination-rate", type=float, default=1e-8)
    parser.add_argument("--mutation-rate", type=float, default=1.25e-8)
    parser.add_argument(
        "--indel-fraction",
        type=float,
        default=0.0,
        help="fraction of sites written as 1-10 bp indels (default 0: SNVs only)",
    )
    parser.add_argument("--out-dir", type=Path, default=WORK)
    parser.add_argument("--force", action="store_true", help="re-simulate even if cached")
    args = parser.parse_args(argv)
    params = SimulationParams(
        n_people=args.n_people,
        seed=args.seed,
        demography=args.demography,
        recombination_rate=args.recombination_rate,
        mutation_rate=args.mutation_rate,
        indel_fraction=args.indel_fraction,
    )
    path = simulate_cohort(params, out_dir=args.out_dir, force=args.force)
    print(Path(str(path).removesuffix(".vcf.gz") + ".json").read_text())


if __name__ == "__main__":
    main()
