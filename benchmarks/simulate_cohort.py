"""Simulate a phased cohort over the 1 Mb of real chr20 sequence and write it as a VCF.

The genealogy comes from msprime (coalescent with recombination) under a human-like
demography: the European branch of the out-of-Africa model built here (one population),
or any ``HomSap`` demographic model of stdpopsim by its id (``--demography
OutOfAfrica_2T12``: Africans and Europeans, ``--n-people`` of each), on a 1 Mb contig
with a uniform recombination rate. Mutations are placed on the genealogy with msprime's
binary (two-state) model on a discrete genome. Each segregating site becomes a VCF record whose
REF is the real hs37d5 base at that position and whose ALT is a different base
(transitions twice as likely as transversions). Optionally a fraction of the sites is
turned into short indels (``--indel-fraction``), left-aligned with ``bcftools norm``.

The output is bgzipped and tabix-indexed, deterministic for a given seed, and cached
under ``benchmarks/work/`` (git-ignored): a second call with the same parameters
returns the cached file at once. A sample panel (1000 Genomes layout: ``sample pop
super_pop``) beside it names each person's population.

Usage::

    python benchmarks/simulate_cohort.py                 # 2,500 people, SNVs only
    python benchmarks/simulate_cohort.py --n-people 200 --indel-fraction 0.1
    python benchmarks/simulate_cohort.py --demography OutOfAfrica_2T12 --n-people 500
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
#: The demographies built here; any other name is a stdpopsim ``HomSap`` model id.
BUILT_IN = ("ooa", "constant")
#: Mutation rate of the built-in demographies (stdpopsim models bring their own).
MUTATION_RATE = 1.25e-8


@dataclass(frozen=True)
class SimulationParams:
    """Everything that determines the simulated VCF (and so its cache key).

    ``n_people`` people are sampled from each population of the demography (one for the
    built-in ones). ``mutation_rate`` ``None`` is :data:`MUTATION_RATE` for the built-in
    demographies and the stdpopsim model's own rate otherwise (2.36e-8 for
    ``OutOfAfrica_2T12``).
    """

    n_people: int = 2500
    seed: int = 20240601
    demography: str = "ooa"
    recombination_rate: float = 1e-8
    mutation_rate: float | None = None
    indel_fraction: float = 0.0

    def stem(self) -> str:
        """File name stem that identifies these parameters."""
        stem = f"sim_{self.demography}_n{self.n_people}_seed{self.seed}"
        if self.recombination_rate != 1e-8 or self.mutation_rate is not None:
            mutation_rate = "model" if self.mutation_rate is None else f"{self.mutation_rate:g}"
            stem += f"_r{self.recombination_rate:g}_mu{mutation_rate}"
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


def simulate_ancestry(params: SimulationParams, length: int):
    """The genealogy of the sampled people (a tskit tree sequence, no mutations), and the
    mutation rate to place on it.

    The built-in demographies run :func:`msprime.sim_ancestry` here; a stdpopsim model
    runs through stdpopsim's msprime engine on a ``HomSap`` contig of ``length`` bp with
    the uniform ``params.recombination_rate``, ``params.n_people`` people from each of
    the model's populations sampled at present. stdpopsim's own mutations (Jukes-Cantor,
    some multi-allelic) are removed: the caller places binary ones on the real reference.
    """
    import msprime

    if params.demography in BUILT_IN:
        ts = msprime.sim_ancestry(
            samples={"EUR": params.n_people},
            demography=demography_model(params.demography),
            sequence_length=length,
            recombination_rate=params.recombination_rate,
            ploidy=2,
            discrete_genome=True,
            random_seed=params.seed,
        )
        return ts, params.mutation_rate or MUTATION_RATE
    try:
        import stdpopsim
    except ImportError as err:
        raise ImportError(
            f"the demography {params.demography!r} is a stdpopsim model: "
            "pip install 'stdpopsim>=0.3' (in the bench extra)"
        ) from err
    species = stdpopsim.get_species("HomSap")
    model = species.get_demographic_model(params.demography)
    mutation_rate = params.mutation_rate or model.mutation_rate
    contig = species.get_contig(
        length=length, mutation_rate=mutation_rate, recombination_rate=params.recombination_rate
    )
    present = [p.name for p in model.populations if p.default_sampling_time == 0]
    ts = stdpopsim.get_engine("msprime").simulate(
        model, contig, dict.fromkeys(present, params.n_people), seed=params.seed
    )
    return ts.delete_sites(np.arange(ts.num_sites)), mutation_rate


def simulate_genotypes(
    params: SimulationParams, length: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Simulate the haplotypes of ``params.n_people`` diploid people (of each population).

    Returns
    -------
    positions
        0-based site positions relative to the start of the simulated segment, sorted.
    genotypes
        ``(n_sites, 2 * n_people)`` uint8 matrix of 0 (ancestral) / 1 (derived) alleles;
        columns ``2 i`` and ``2 i + 1`` are the two haplotypes of person ``i``.
    populations
        The population of each person.
    """
    import msprime

    ts, mutation_rate = simulate_ancestry(params, length)
    ts = msprime.sim_mutations(
        ts,
        rate=mutation_rate,
        model=msprime.BinaryMutationModel(),
        discrete_genome=True,
        random_seed=params.seed + 1,
    )
    positions = ts.tables.sites.position.astype(np.int64)
    genotypes = ts.genotype_matrix().astype(np.uint8, copy=False)
    names = [p.metadata["name"] for p in ts.populations()]
    populations = [names[ts.node(ind.nodes[0]).population] for ind in ts.individuals()]
    return positions, genotypes, populations


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


def _header(params: SimulationParams, n_sites: int, n_people: int) -> str:
    import msprime

    samples = "\t".join(sample_ids(n_people))
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
        out.write(_header(params, len(refs), n_people).encode())
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

    A JSON file next to the VCF records the parameters and summary statistics, and a
    sample panel (:func:`panel_path`) each person's population.
    """
    import pysam

    params = params or SimulationParams()
    out_dir.mkdir(parents=True, exist_ok=True)
    vcf_gz = out_dir / f"{params.stem()}.vcf.gz"
    meta_path = out_dir / f"{params.stem()}.json"
    done = [vcf_gz, Path(f"{vcf_gz}.tbi"), meta_path, panel_path(vcf_gz)]
    if not force and all(path.exists() for path in done):
        return vcf_gz

    t0 = time.perf_counter()
    length = REGION_END0 - REGION_START0
    with pysam.FastaFile(str(reference)) as fasta:
        segment = fasta.fetch(CONTIG, REGION_START0, REGION_END0).upper().encode()
    positions, genotypes, populations = simulate_genotypes(params, length)
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
    write_panel(panel_path(vcf_gz), sample_ids(len(populations)), populations)
    elapsed = time.perf_counter() - t0

    af = genotypes.mean(axis=1)
    n_indels = sum(len(r) != len(a) for r, a in zip(refs, alts, strict=True))
    meta = {
        "params": asdict(params),
        "vcf": str(vcf_gz),
        "panel": str(panel_path(vcf_gz)),
        "people": {p: populations.count(p) for p in sorted(set(populations))},
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
            f"simulated {len(populations)} people, {meta['n_sites']} sites "
            f"({meta['n_indels']} indels, {meta['n_singletons']} singletons) "
            f"in {elapsed:.1f} s -> {vcf_gz}"
        )
    return vcf_gz


def panel_path(vcf_gz: Path) -> Path:
    """The sample panel written beside a simulated VCF."""
    return Path(str(vcf_gz).removesuffix(".vcf.gz") + ".panel")


def write_panel(path: Path, samples: list[str], populations: list[str]) -> None:
    """A 1000 Genomes-style panel (``sample pop super_pop``) for ``gl.pp.personal_sequences``."""
    lines = [f"{s}\t{p}\t{p}\n" for s, p in zip(samples, populations, strict=True)]
    path.write_text("sample\tpop\tsuper_pop\n" + "".join(lines))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-people", type=int, default=SimulationParams.n_people)
    parser.add_argument("--seed", type=int, default=SimulationParams.seed)
    parser.add_argument(
        "--demography",
        default="ooa",
        help="'ooa' (European branch), 'constant', or a stdpopsim HomSap model id "
        "(e.g. OutOfAfrica_2T12: --n-people of each population)",
    )
    parser.add_argument("--recombination-rate", type=float, default=1e-8)
    parser.add_argument(
        "--mutation-rate",
        type=float,
        default=None,
        help=f"default: {MUTATION_RATE:g}, or the stdpopsim model's own rate",
    )
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
