"""The cohort store: round trips, laziness, format version, safe rewrites, accessors, simulation."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import anndata as ad
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

import genlm_sc as gl
import genlm_sc.store as gl_store
from genlm_sc.io import FastaReference

PLUS, MINUS = "ENSG00000125818.13", "ENSG00000125895.5"  # PSMF1 (+), TMEM74B (-)
SMALL_GENES = ["PSMF1", "TMEM74B", "SIRPB2"]


# --------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written(cohort, tmp_path_factory) -> Path:
    """The example cohort written once; tests that change a store work on a copy."""
    path = tmp_path_factory.mktemp("written") / "cohort.zarr"
    gl.write(cohort, path)
    return path


@pytest.fixture(scope="module")
def read_back(written) -> ad.AnnData:
    return gl.read(written)


@pytest.fixture(scope="module")
def small_panel(example) -> ad.AnnData:
    return gl.pp.gene_windows(example.genes, fasta=example.fasta, width=4096, genes=SMALL_GENES)


@pytest.fixture(scope="module")
def small_cohort(example, small_panel) -> ad.AnnData:
    """503 people x 3 genes, in memory."""
    return gl.pp.personal_sequences(
        example.vcf, fasta=example.fasta, genes=small_panel, unphased="as_listed", progress=False
    )


@pytest.fixture(scope="module")
def small_store(small_cohort, tmp_path_factory) -> Path:
    """``small_cohort`` written once; tests copy it before changing anything."""
    path = tmp_path_factory.mktemp("small") / "small.zarr"
    gl.write(small_cohort, path)
    return path


def copy_store(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def fingerprint(store: Path) -> dict[str, str]:
    return {
        str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*"))
        if p.is_file()
    }


def leftovers(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.glob(f".{target.name}.*"))


def plain(value):
    """uns values with arrays as lists, to compare what anndata reads back with what was put."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray | list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.DataFrame):
        return plain(value.to_dict(orient="list"))
    return value


def assert_same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same index, columns and values (anndata stores string columns as categoricals)."""
    pd.testing.assert_frame_equal(a, b, check_dtype=False, check_categorical=False)
    for column in a.columns:
        kind_a = (
            a[column].dtype.kind if not isinstance(a[column].dtype, pd.CategoricalDtype) else "O"
        )
        kind_b = (
            b[column].dtype.kind if not isinstance(b[column].dtype, pd.CategoricalDtype) else "O"
        )
        assert kind_a == kind_b, column


def assert_same_cohort(a: ad.AnnData, b: ad.AnnData) -> None:
    assert_same_table(a.obs, b.obs)
    assert_same_table(a.var, b.var)
    if a.X is None:
        assert b.X is None
    else:
        np.testing.assert_array_equal(np.asarray(a.X), np.asarray(b.X))
    uns_a = {**a.uns, "gl": {k: v for k, v in a.uns["gl"].items() if k != "store"}}
    uns_b = {**b.uns, "gl": {k: v for k, v in b.uns["gl"].items() if k != "store"}}
    assert plain(uns_a) == plain(uns_b)
    xr.testing.assert_identical(gl.get.haplotype_store(a), gl.get.haplotype_store(b))


# --------------------------------------------------------------------------------------
# Round trip
# --------------------------------------------------------------------------------------


def test_round_trip(cohort, written, read_back):
    assert read_back.uns["gl"]["store"] == str(written.absolute())
    assert cohort.uns["gl"]["store"].startswith("memory://")  # the original is untouched
    assert_same_cohort(cohort, read_back)
    ds_memory = gl.get.haplotype_store(cohort).compute()
    ds_disk = gl.get.haplotype_store(read_back)
    assert ds_disk.identical(ds_memory)
    for name in ds_memory.variables:
        np.testing.assert_array_equal(ds_disk[name].values, ds_memory[name].values, err_msg=name)
    assert ds_disk.sizes["sample"] == 503 and ds_disk.sizes["gene"] == 30
    assert list(ds_disk["gene"].values) == list(cohort.var_names)
    assert list(ds_disk["sample"].values) == list(cohort.obs_names)


def test_read_is_lazy(read_back):
    ds = gl.get.haplotype_store(read_back)
    assert set(ds.data_vars) >= {
        "sequence",
        "segment_reference_start",
        "genotype",
        "sample_haplotype",
    }
    for name, variable in ds.data_vars.items():
        assert isinstance(variable.data, da.Array), name
    assert ds["sequence"].dtype == np.uint8
    assert ds["sequence"].dims == ("haplotype", "position")
    assert ds["sample_haplotype"].dims == ("sample", "gene", "ploidy")


def test_format_version_in_root_attributes(written):
    meta = json.loads((written / "zarr.json").read_text())["attributes"]["genlm_sc"]
    assert meta["format"] == "genlm_sc.cohort"
    assert meta["format_version"] == gl_store.FORMAT_VERSION == 2
    assert meta["written_by"] == gl.__version__
    assert zarr.open_group(written, mode="r").attrs["genlm_sc"]["format_version"] == 2
    assert gl_store.check_format(written)["format_version"] == 2


def test_newer_format_version_is_refused(small_store, tmp_path):
    path = copy_store(small_store, tmp_path / "newer.zarr")
    adata = gl.read(path)  # still readable before the change
    root = zarr.open_group(path, mode="r+")
    root.attrs["genlm_sc"] = {**root.attrs["genlm_sc"], "format_version": 99}
    assert (
        json.loads((path / "zarr.json").read_text())["attributes"]["genlm_sc"]["format_version"]
        == 99
    )
    with pytest.raises(
        ValueError, match=r"format version 99, newer than this genlm_sc reads \(2\)"
    ):
        gl.read(path)
    with pytest.raises(ValueError, match="upgrade genlm_sc") as info:
        gl.read(path)
    assert str(path) in str(info.value)
    gl_store._OPEN_DATASETS.pop(str(path), None)
    with pytest.raises(ValueError, match="newer"):
        gl.get.haplotype_store(adata)


def test_not_a_store_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such cohort store"):
        gl.read(tmp_path / "absent.zarr")
    zarr.open_group(tmp_path / "other.zarr", mode="w", zarr_format=3).attrs["x"] = 1
    with pytest.raises(ValueError, match="not a genlm_sc cohort store"):
        gl.read(tmp_path / "other.zarr")


# --------------------------------------------------------------------------------------
# Interrupted and in-place writes
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["memory", "same_path"])
def test_interrupted_write_keeps_the_previous_version(
    small_cohort, small_store, tmp_path, monkeypatch, source
):
    path = copy_store(small_store, tmp_path / "c.zarr")
    before = fingerprint(path)
    previous = gl.read(path)
    new = (small_cohort if source == "memory" else previous).copy()
    new.obs["note"] = "second version"

    seen = []

    def interrupted(store, adata):
        store = Path(store)
        assert store.name.startswith(".c.zarr.partial-")
        seen.append(sorted(p.name for p in (store / "haplotypes").iterdir()))
        raise RuntimeError("interrupted")

    monkeypatch.setattr(gl_store, "_write_anndata", interrupted)
    with pytest.raises(RuntimeError, match="interrupted"):
        gl.write(new, path)
    assert seen and "sequence" in seen[0] and "zarr.json" in seen[0]  # haplotypes were copied
    monkeypatch.undo()

    assert leftovers(path) == []
    assert fingerprint(path) == before
    again = gl.read(path)
    assert "note" not in again.obs
    gl_store._OPEN_DATASETS.pop(str(path), None)
    assert_same_cohort(small_cohort, again)


def test_write_back_to_the_path_it_was_read_from(small_cohort, small_store, tmp_path):
    path = copy_store(small_store, tmp_path / "c.zarr")
    cohort = gl.read(path)
    haplotypes_before = {g: gl.get.haplotypes(cohort, g) for g in cohort.var_names}
    cohort.obs["note"] = "second version"
    cohort.uns["extra"] = {"answer": 42}
    gl.write(cohort, path)
    assert leftovers(path) == []
    again = gl.read(path)
    assert (again.obs["note"] == "second version").all()
    assert again.uns["extra"]["answer"] == 42
    assert again.uns["gl"]["store"] == str(path.absolute())
    xr.testing.assert_identical(gl.get.haplotype_store(again), gl.get.haplotype_store(small_cohort))
    for gene, table in haplotypes_before.items():
        pd.testing.assert_frame_equal(gl.get.haplotypes(again, gene), table)


def test_write_to_a_new_path_leaves_the_source_store_alone(small_store, tmp_path):
    first = copy_store(small_store, tmp_path / "first.zarr")
    before = fingerprint(first)
    copy = tmp_path / "second.zarr"
    cohort = gl.read(first)
    cohort.obs["note"] = "copy"
    gl.write(cohort, copy)
    assert fingerprint(first) == before
    assert "note" not in gl.read(first).obs
    second = gl.read(copy)
    assert (second.obs["note"] == "copy").all()
    xr.testing.assert_identical(gl.get.haplotype_store(second), gl.get.haplotype_store(cohort))


def test_personal_sequences_writes_a_readable_store(example, small_panel, small_cohort, tmp_path):
    path = tmp_path / "built.zarr"
    built = gl.pp.personal_sequences(
        example.vcf,
        fasta=example.fasta,
        genes=small_panel,
        unphased="as_listed",
        store=path,
        progress=False,
    )
    assert built.uns["gl"]["store"] == str(path.absolute())
    assert leftovers(path) == []
    assert (
        json.loads((path / "zarr.json").read_text())["attributes"]["genlm_sc"]["format_version"]
        == gl_store.FORMAT_VERSION
    )
    read = gl.read(path)
    assert_same_cohort(small_cohort, read)
    assert_same_cohort(built, read)
    for gene in small_panel.obs_names:
        pd.testing.assert_frame_equal(
            gl.get.haplotypes(read, gene), gl.get.haplotypes(small_cohort, gene)
        )


# --------------------------------------------------------------------------------------
# Accessors on a read cohort
# --------------------------------------------------------------------------------------


def test_accessors_agree_between_memory_and_disk(cohort, read_back):
    for gene in cohort.var_names[::3]:  # 10 genes, both strands
        memory = gl.get.haplotypes(cohort, gene)
        disk = gl.get.haplotypes(read_back, gene)
        pd.testing.assert_frame_equal(disk, memory)
        assert memory.shape == (503, 2)
        unique = gl.get.unique_haplotypes(read_back, gene)
        pd.testing.assert_frame_equal(unique, gl.get.unique_haplotypes(cohort, gene))
        assert unique["count"].sum() == 2 * 503
        assert len(unique) == cohort.var.loc[gene, "n_haplotypes"]
        assert (unique["sequence"].str.len() == unique["length"]).all()
        observed = pd.concat([memory["haplotype_1"], memory["haplotype_2"]]).value_counts()
        assert dict(zip(unique["sequence"], unique["count"], strict=True)) == observed.to_dict()
    for gene in (PLUS, MINUS):
        xr.testing.assert_identical(
            gl.get.fixed_length_haplotypes(read_back, gene, length=1001),
            gl.get.fixed_length_haplotypes(cohort, gene, length=1001),
        )
    samples = ["NA12878", "HG00096"]
    pd.testing.assert_frame_equal(
        gl.get.haplotypes(read_back, "PSMF1", samples=samples),
        gl.get.haplotypes(cohort, PLUS).loc[samples],
        check_names=False,
    )


@pytest.mark.parametrize("length", [None, 1001, 1000, 6000])
def test_fixed_length_shape(read_back, length):
    fixed = gl.get.fixed_length_haplotypes(read_back, MINUS, length=length)
    expected = 4096 if length is None else length
    assert fixed.dims == ("sample", "ploidy", "position")
    assert fixed.shape == (503, 2, expected)
    assert fixed.dtype == np.uint8
    assert list(fixed["sample"].values) == list(read_back.obs_names)
    assert list(fixed["ploidy"].values) == [0, 1]
    assert set(np.unique(fixed.values)) <= set(b"ACGTN")


def _tss_base(example, row) -> str:
    with FastaReference(example.fasta) as fasta:
        base = fasta.fetch_str(row["chrom"], int(row["tss"]), int(row["tss"]) + 1)
    return base.translate(str.maketrans("ACGT", "TGCA")) if row["strand"] == "-" else base


def test_fixed_length_puts_the_tss_at_the_centre(example, read_back):
    references = gl.get.sequences(read_back)
    ds = gl.get.haplotype_store(read_back)
    assignment = ds["sample_haplotype"].values
    first_haplotype = ds["gene_first_haplotype"].values
    checked_without_indels = checked_with_indels = checked_reference = 0
    for g, gene in enumerate(read_back.var_names):
        row = read_back.var.loc[gene]
        width = int(row["end"] - row["start"])
        reference = references[gene]
        assert len(reference) == width
        assert reference[width // 2] == _tss_base(example, row), gene
        unique = gl.get.unique_haplotypes(read_back, gene)
        full = gl.get.fixed_length_haplotypes(read_back, gene).values
        short = gl.get.fixed_length_haplotypes(read_back, gene, length=1001).values
        people = gl.get.haplotypes(read_back, gene).to_numpy()
        gene_positions = gl.get.reference_positions(read_back, gene)
        for u, sequence in unique["sequence"].items():
            s, p = (int(i[0]) for i in np.nonzero(assignment[:, g, :] == u))  # one carrier
            assert people[s, p] == sequence
            coords = gene_positions.sel(haplotype=u).values[: len(sequence)]
            got_full = full[s, p].tobytes().decode()
            got_short = short[s, p].tobytes().decode()
            step = -1 if row["strand"] == "-" else 1
            no_indel = len(sequence) == width and (np.diff(coords) == step).all()
            if no_indel:
                checked_without_indels += 1
                assert got_full == sequence, (gene, u)
                assert got_short == sequence[width // 2 - 500 : width // 2 + 501], (gene, u)
                if sequence == reference:
                    checked_reference += 1
                    assert got_short[500] == _tss_base(example, row)
            else:
                # the base whose reference coordinate is the TSS lands at length // 2
                at = np.flatnonzero(coords == int(row["tss"]))
                if len(at):
                    checked_with_indels += 1
                    assert got_short[500] == sequence[at[0]], (gene, u)
                    assert got_full[width // 2] == sequence[at[0]], (gene, u)
        assert first_haplotype[g] == unique.index[0]
    assert checked_without_indels > 500
    assert checked_with_indels > 50
    assert checked_reference > 20


# --------------------------------------------------------------------------------------
# Simulated expression
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated(cohort) -> ad.AnnData:
    return gl.datasets.simulate_expression(cohort, n_causal=3, h2=0.3, random_state=7, copy=True)


def test_simulation_leaves_the_input_alone(cohort, simulated):
    assert cohort.X is None
    assert "gl_simulation" not in cohort.uns
    assert simulated.X.shape == (503, 30) and simulated.X.dtype == np.float32


def test_simulated_expression_has_unit_variance(simulated):
    variance = np.asarray(simulated.X).var(axis=0)
    assert np.all((variance > 0.75) & (variance < 1.25)), variance
    assert abs(variance.mean() - 1) < 0.06
    assert np.abs(np.asarray(simulated.X).mean(axis=0)).max() < 0.25


def test_causal_variants_exist_in_the_store(simulated):
    table = simulated.uns["gl_simulation"]["causal_variants"]
    ds = gl.get.haplotype_store(simulated)
    assert len(table) > 40
    assert set(table["gene"]) <= set(simulated.var_names)
    per_gene = table.groupby("gene").size().reindex(simulated.var_names, fill_value=0)
    np.testing.assert_array_equal(per_gene.to_numpy(), simulated.var["sim_n_causal"].to_numpy())
    assert per_gene.max() <= 3
    genes = list(simulated.var_names)
    store = {
        name: ds[f"variant_{name}"].values for name in ("id", "position", "ref", "alt", "gene")
    }
    for row in table.itertuples():
        v = row.variant
        assert store["id"][v] == row.variant_id
        assert store["position"][v] == row.position
        assert store["ref"][v] == row.ref
        assert store["alt"][v] == row.alt
        assert store["gene"][v] == genes.index(row.gene)
        var = simulated.var.loc[row.gene]
        assert var["start"] <= row.position < var["end"]
        assert 0.05 <= min(row.alt_frequency, 1 - row.alt_frequency)


def test_realised_correlation_is_close_to_sqrt_h2(simulated):
    table = simulated.uns["gl_simulation"]["causal_variants"]
    genotype = gl.get.haplotype_store(simulated)["genotype"].values
    X = np.asarray(simulated.X, dtype=float)
    stored = simulated.layers["sim_genetic_value"]
    assert stored.shape == simulated.shape
    assert not stored[:, (simulated.var["sim_n_causal"] == 0).to_numpy()].any()
    correlations = []
    for gene, rows in table.groupby("gene"):
        dosage = (genotype[:, rows["variant"].to_numpy(), :] > 0).sum(axis=2)
        genetic = dosage @ rows["effect"].to_numpy()
        np.testing.assert_allclose(genetic.var(), 0.3, rtol=1e-6)  # effects are scaled to h2
        g = simulated.var_names.get_loc(gene)
        np.testing.assert_allclose(stored[:, g], genetic - genetic.mean(), atol=1e-5)
        correlations.append(np.corrcoef(genetic, X[:, g])[0, 1])
    correlations = np.array(correlations)
    assert len(correlations) >= 20
    assert np.all(np.abs(correlations - np.sqrt(0.3)) < 0.15), correlations
    assert abs(correlations.mean() - np.sqrt(0.3)) < 0.03
    r2 = simulated.var["sim_genetic_r2"].to_numpy()
    assert abs(r2[simulated.var["sim_n_causal"] > 0].mean() - 0.3) < 0.05


def test_simulation_is_the_same_on_disk(cohort, read_back, simulated):
    again = gl.datasets.simulate_expression(
        read_back, n_causal=3, h2=0.3, random_state=7, copy=True
    )
    np.testing.assert_array_equal(again.X, simulated.X)
    np.testing.assert_array_equal(
        again.layers["sim_genetic_value"], simulated.layers["sim_genetic_value"]
    )
    pd.testing.assert_frame_equal(
        again.uns["gl_simulation"]["causal_variants"],
        simulated.uns["gl_simulation"]["causal_variants"],
    )


def test_simulated_cohort_round_trip(small_cohort, tmp_path):
    simulated = gl.datasets.simulate_expression(small_cohort, h2=0.5, random_state=3, copy=True)
    path = tmp_path / "sim.zarr"
    gl.write(simulated, path)
    again = gl.read(path)
    np.testing.assert_array_equal(np.asarray(again.X), simulated.X)
    pd.testing.assert_frame_equal(
        again.uns["gl_simulation"]["causal_variants"],
        simulated.uns["gl_simulation"]["causal_variants"],
        check_dtype=False,
    )
    assert_same_cohort(simulated, again)


def test_subsets_follow_names_not_positions(cohort, tmp_path):
    """Subsetting the AnnData (scanpy's everyday step) keeps accessors and writes right."""
    full = {g: gl.get.haplotypes(cohort, g) for g in cohort.var_names[:3]}
    subset = cohort[10:15, ::-1].copy()
    for gene in cohort.var_names[:3]:
        got = gl.get.haplotypes(subset, gene)
        assert list(got.index) == list(subset.obs_names)
        assert (got.to_numpy() == full[gene].loc[subset.obs_names].to_numpy()).all()
    fixed = gl.get.fixed_length_haplotypes(subset, "FKBP1A")
    expected = gl.get.fixed_length_haplotypes(cohort, "FKBP1A", samples=list(subset.obs_names))
    np.testing.assert_array_equal(fixed.values, expected.values)

    gl.write(subset, tmp_path / "subset.zarr")
    back = gl.read(tmp_path / "subset.zarr")
    ds = gl.get.haplotype_store(back)
    assert list(ds["sample"].values) == list(subset.obs_names)
    assert list(ds["gene"].values) == list(subset.var_names)
    assert int(ds["haplotype_count"].sum()) == 5 * 2 * subset.n_vars
    assert (ds["haplotype_count"].values > 0).all()
    for gene in cohort.var_names[:3]:
        got = gl.get.haplotypes(back, gene)
        assert (got.to_numpy() == full[gene].loc[subset.obs_names].to_numpy()).all()
        positions = gl.get.reference_positions(back, gene)
        assert positions.sizes["haplotype"] == len(gl.get.unique_haplotypes(back, gene))

    gl.datasets.simulate_expression(back, n_causal=2, h2=0.4, random_state=0)
    truth = back.uns["gl_simulation"]["causal_variants"]
    variant_gene = ds["variant_gene"].values[truth["variant"].to_numpy()]
    assert (ds["gene"].values[variant_gene] == truth["gene"].to_numpy()).all()
