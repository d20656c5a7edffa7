"""The distributed engine: haplotypes and embeddings on a dask LocalCluster of 2 workers
equal the single-process run; a killed build resumes from the gene groups it finished."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

import genlm_sc as gl
from genlm_sc.pp import cohort_parts
from test_embed import conv_checkpoint

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    """Two worker processes, one thread each (as ``n_jobs=2`` makes them)."""
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as local,
        distributed.Client(local) as made,
    ):
        yield made


@pytest.fixture(scope="module")
def built(example, tmp_path_factory):
    """The same 12 genes built in this process, as reference."""
    folder = tmp_path_factory.mktemp("single")
    panel = gl.pp.gene_windows(example.genes, fasta=example.fasta, width=2048)[:12]
    cohort = gl.pp.personal_sequences(
        example.vcf, fasta=example.fasta, genes=panel, panel=example.panel,
        unphased="random", store=folder / "single.zarr", progress=False,
    )  # fmt: skip
    return panel, cohort, folder / "single.zarr"


def arrays(store: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(os.fspath(store / "haplotypes"), mode="r")
    return {name: group[name][:] for name in group.array_keys()}


def assert_same_store(a: Path, b: Path) -> None:
    left, right = arrays(a), arrays(b)
    assert sorted(left) == sorted(right)
    for name in left:
        assert left[name].shape == right[name].shape, name
        assert left[name].dtype == right[name].dtype, name
        assert (left[name] == right[name]).all(), name
        chunks = [zarr.open_array(os.fspath(s / "haplotypes" / name)).chunks for s in (a, b)]
        assert chunks[0] == chunks[1], name


def test_haplotypes_on_two_workers_equal_one_process(example, built, client, tmp_path):
    panel, single, single_store = built
    cohort = gl.pp.personal_sequences(
        example.vcf, fasta=example.fasta, genes=panel, panel=example.panel,
        unphased="random", store=tmp_path / "two.zarr", progress=False, client=client,
    )  # fmt: skip
    assert cohort.uns["gl"]["parts"]["groups"] > 2  # the work was really split
    assert_same_store(single_store, tmp_path / "two.zarr")
    pd.testing.assert_frame_equal(cohort.var, single.var)
    pd.testing.assert_frame_equal(cohort.obs, single.obs)
    for key in ("counts", "ref_mismatch_records", "policies", "genotypes", "filters", "fasta"):
        assert cohort.uns["gl"][key] == single.uns["gl"][key], key
    assert not cohort_parts.parts_folder(tmp_path / "two.zarr").exists()  # parts removed
    read = gl.read(tmp_path / "two.zarr")  # a complete, sealed store
    gene = panel.obs_names[5]
    pd.testing.assert_frame_equal(gl.get.haplotypes(read, gene), gl.get.haplotypes(single, gene))


def test_pgen_with_filters_on_two_workers_equals_one_process(example, client, tmp_path):
    """Any genotype format and the record filters go through the tasks unchanged."""
    if shutil.which("plink2") is None:
        pytest.skip("plink2 is not installed")
    from genotype_formats import annotated_vcf, plink2

    vcf = annotated_vcf(example.vcf, tmp_path / "annotated.vcf.gz")
    plink2("--vcf", str(vcf), "--make-pgen", "--out", str(tmp_path / "cohort"))
    panel = gl.pp.gene_windows(example.genes, fasta=example.fasta, width=2048)[:8]
    options = {
        "fasta": example.fasta,
        "genes": panel,
        "panel": example.panel,
        "unphased": "random",
        "filter_pass": True,
        "min_maf": 0.02,
        "progress": False,
    }
    one = gl.pp.personal_sequences(tmp_path / "cohort.pgen", store=tmp_path / "one.zarr",
                                   **options)  # fmt: skip
    two = gl.pp.personal_sequences(tmp_path / "cohort.pgen", store=tmp_path / "two.zarr",
                                   client=client, **options)  # fmt: skip
    assert one.uns["gl"]["counts"]["filtered_not_pass"] > 0
    assert one.uns["gl"]["counts"]["filtered_low_maf"] > 0
    assert two.uns["gl"]["counts"] == one.uns["gl"]["counts"]
    assert two.uns["gl"]["genotypes"]["format"] == "pgen"
    assert_same_store(tmp_path / "one.zarr", tmp_path / "two.zarr")


def test_overlapping_windows_count_each_record_once(example, client, tmp_path):
    # wide windows overlap their neighbours: a record read by two groups is counted once
    panel = gl.pp.gene_windows(example.genes, fasta=example.fasta, width=60_000, off_contig="drop")[
        :10
    ]
    common = {"fasta": example.fasta, "genes": panel, "unphased": "random", "progress": False}
    single = gl.pp.personal_sequences(example.vcf, store=tmp_path / "a.zarr", **common)
    two = gl.pp.personal_sequences(example.vcf, store=tmp_path / "b.zarr", client=client, **common)
    assert two.uns["gl"]["counts"] == single.uns["gl"]["counts"]
    assert_same_store(tmp_path / "a.zarr", tmp_path / "b.zarr")


def test_a_killed_build_resumes_without_redoing_finished_groups(example, built, tmp_path):
    panel, _, single_store = built
    target = tmp_path / "resumed.zarr"
    options = {"fasta": example.fasta, "genes": panel, "panel": example.panel,
               "unphased": "random", "progress": False}  # fmt: skip

    # what a run killed after its first two groups leaves: two whole parts, and the hidden
    # work folder of a part whose process died
    finished = []
    real = cohort_parts.build_part
    kill = [True]

    def killed_after_two(**arguments):
        if kill[0] and len(finished) == 2:
            dead = Path(arguments["path"]).with_name(
                f".{Path(arguments['path']).name}.partial-0badc0de"
            )
            dead.mkdir()
            raise KeyboardInterrupt
        finished.append(real(**arguments))
        return finished[-1]

    class InProcess:
        """A stand-in client that runs tasks here, in order, like one worker would."""

        def nthreads(self):
            return {"a": 1, "b": 1}

    def in_process(client, function, arguments, **_):
        function = killed_after_two if function is real else function
        return [function(**a) for a in arguments]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("genlm_sc._engine.run_tasks", in_process)
        with pytest.raises(KeyboardInterrupt):
            gl.pp.personal_sequences(example.vcf, store=target, client=InProcess(), **options)
    assert not target.exists()  # nothing half-written in place
    folder = cohort_parts.parts_folder(target)
    assert len([p for p in folder.iterdir() if p.name.startswith("part-")]) == 2

    kill[0] = False
    finished.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("genlm_sc._engine.run_tasks", in_process)
        cohort = gl.pp.personal_sequences(example.vcf, store=target, client=InProcess(), **options)
    parts = cohort.uns["gl"]["parts"]
    assert parts["reused"] == 2 and parts["groups"] > 2
    assert sum(not r["reused"] for r in finished) == parts["groups"] - 2  # only the others
    assert_same_store(single_store, target)
    assert not folder.exists()


def test_parts_of_other_inputs_are_not_reused(example, built, tmp_path):
    panel, _, _ = built
    target = tmp_path / "c.zarr"
    obs = panel.obs
    groups = cohort_parts.gene_groups(obs, 4)
    key = cohort_parts.part_key(genes=groups[0], policy="reference")
    other = cohort_parts.part_key(genes=groups[0], policy="random")
    assert key != other
    # a part recorded under another key is built again
    path = cohort_parts.parts_folder(target) / "part-x"
    path.parent.mkdir()
    with gl.io.VariantFile(example.vcf) as reader:
        samples = reader.samples
    result = cohort_parts.build_part(
        path=os.fspath(path), fingerprint=key, genotypes=os.fspath(example.vcf),
        fasta=os.fspath(example.fasta), samples=samples, obs=obs, gene_ids=groups[0],
        counted=[], contig_map={c: c for c in obs["chrom"].unique()},
        policies={"unphased": "random", "missing": "reference", "ref_mismatch": "error",
                  "random_state": 0,
                  "filters": {"filter_pass": False, "min_maf": 0.0, "min_r2": 0.0}},
        bgen_threshold=0.9,
    )  # fmt: skip
    assert not result["reused"]
    assert cohort_parts.finished_part(path, key) is not None
    assert cohort_parts.finished_part(path, other) is None
    assert json.loads(json.dumps(result)) == result  # plain values


def test_embeddings_on_two_workers_equal_one_process(example, built, client, tmp_path):
    panel, _, single_store = built
    model = conv_checkpoint(tmp_path / "m")
    options = {"model": model, "device": "cpu", "precision": "fp32", "max_length": 52,
               "progress": False}  # fmt: skip
    one = gl.read(single_store)
    gl.tl.embed(one, **options)
    two = gl.pp.personal_sequences(
        example.vcf, fasta=example.fasta, genes=panel, unphased="random",
        store=tmp_path / "other" / "two.zarr", progress=False, client=client,
    )  # fmt: skip
    gl.tl.embed(two, client=client, **options)
    expected = gl.get.haplotype_store(one)["X_gl"].values
    got = gl.get.haplotype_store(two)["X_gl"].values
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    record = two.uns["gl"]["embeddings"]["X_gl"]
    assert record["n_forward_chunks"] <= record["n_chunks"]
    # a second call finds every chunk in the shared cache
    gl.tl.embed(two, client=client, **options)
    assert two.uns["gl"]["embeddings"]["X_gl"]["n_forward_chunks"] == 0
    np.testing.assert_allclose(gl.get.haplotype_store(two)["X_gl"].values, got, rtol=1e-6)


def test_a_distributed_build_needs_a_store(example, built):
    panel, _, _ = built
    with pytest.raises(ValueError, match="store"):
        gl.pp.personal_sequences(example.vcf, fasta=example.fasta, genes=panel, n_jobs=2)
    with pytest.raises(ValueError, match="n_jobs"):
        gl.pp.personal_sequences(example.vcf, fasta=example.fasta, genes=panel, n_jobs=0)


def test_expression_fits_on_two_workers_equal_one_process(built, client, tmp_path):
    """PrediXcan and the embedding regressions fitted as gene tasks give one process's
    predictions and scores; the trained methods refuse to run as tasks."""
    _, single, _ = built
    cohort = single.copy()
    gl.datasets.simulate_expression(cohort, n_causal=2, h2=0.4, random_state=1)
    model = conv_checkpoint(tmp_path / "m")
    gl.tl.embed(cohort, model=model, device="cpu", precision="fp32", max_length=52,
                progress=False)  # fmt: skip
    for method in ("predixcan", "elastic_net", "ridge"):
        gl.tl.fit_expression(cohort, method=method, key_added=f"{method}_one")
        gl.tl.fit_expression(cohort, method=method, key_added=f"{method}_two", client=client)
    table = gl.get.expression_results(cohort).set_index(["gene", "method"])
    for method in ("predixcan", "elastic_net", "ridge"):
        one = table.xs(f"{method}_one", level="method").drop(columns="gene_name")
        two = table.xs(f"{method}_two", level="method").drop(columns="gene_name")
        pd.testing.assert_frame_equal(one, two, rtol=1e-5)
        a, b = (np.asarray(cohort.layers[f"gl_pred_{method}_{k}"]) for k in ("one", "two"))
        np.testing.assert_allclose(a, b, rtol=1e-5, equal_nan=True)
    with pytest.raises(ValueError, match="runs in this process"):
        gl.tl.fit_expression(cohort, method="finetune", finetune_options={"model": model},
                             n_jobs=2)  # fmt: skip


@pytest.fixture(scope="module")
def written_example(tmp_path_factory):
    """The example cohort in 200-bp windows on disk, a masked LM and an expression model."""
    from test_finetune import regressor

    root = tmp_path_factory.mktemp("attribution")
    gl.write(gl.datasets.example_cohort(width=200), root / "cohort.zarr")
    folder = conv_checkpoint(root / "mlm")
    regressor(folder, strategy="prune").eval().save_pretrained(root / "expression")
    return gl.read(root / "cohort.zarr"), folder, root / "expression"


def test_attributions_on_two_workers_equal_one_process(written_example, client):
    cohort, _, expression = written_example
    people = list(cohort.obs_names[:60])
    distinct = {g: len(set(gl.get.haplotypes(cohort, g, samples=people).to_numpy().ravel()))
                for g in cohort.var_names}  # fmt: skip
    genes = [g for g, n in distinct.items() if 3 <= n <= 8][:2]
    options = {"gene": genes, "model": expression, "samples": people, "device": "cpu"}
    for method in ("ism", "integrated_gradients"):
        gl.tl.attribute(cohort, method=method, key_added="single", **options)
        gl.tl.attribute(cohort, method=method, key_added="tasks", client=client, **options)
        for gene in genes:
            one = gl.get.attribution(cohort, gene, key="single")
            two = gl.get.attribution(cohort, gene, key="tasks")
            assert one.sizes["sequence"] > 3  # the reference and the people's haplotypes
            for name in one.data_vars:
                assert one[name].dtype == two[name].dtype, name
                if one[name].dtype.kind == "f":
                    np.testing.assert_allclose(two[name], one[name], rtol=1e-5, atol=1e-7)
                else:
                    np.testing.assert_array_equal(two[name], one[name])
            assert {k: v for k, v in two.attrs.items()} == one.attrs


def test_variant_effects_on_two_workers_equal_one_process(written_example, client):
    cohort, mlm, expression = written_example
    genes = list(cohort.var_names[:3])
    options = {"gene": genes, "model": mlm, "expression_model": expression, "device": "cpu"}
    gl.tl.variant_effects(cohort, key_added="single", **options)
    gl.tl.variant_effects(cohort, key_added="tasks", client=client, **options)
    assert list(cohort.uns["tasks"]) == list(cohort.uns["single"]) == genes
    for gene in genes:
        one, two = cohort.uns["single"][gene], cohort.uns["tasks"][gene]
        assert len(one) > 0
        assert np.isfinite(one["delta_expression"]).any()
        assert np.isfinite(one["llr_masked"]).any()
        pd.testing.assert_frame_equal(two, one, rtol=1e-5, atol=1e-7)


def test_distributed_attribution_needs_saved_models(written_example, client):
    cohort, folder, _ = written_example
    from test_finetune import regressor

    model = regressor(folder, strategy="prune").eval()
    gene = cohort.var_names[0]
    with pytest.raises(TypeError, match="path of a saved model folder"):
        gl.tl.attribute(cohort, gene=gene, model=model, client=client)
    with pytest.raises(TypeError, match="path of a saved model folder"):
        gl.tl.variant_effects(cohort, gene=gene, expression_model=model, client=client)
    memory = gl.datasets.example_cohort(width=200)
    with pytest.raises(ValueError, match="store on disk"):
        gl.tl.variant_effects(memory, gene=gene, model=folder, client=client)


def test_attribution_runs_genes_in_groups_that_keep_the_workers_busy(monkeypatch):
    """Genes with few sequences are sent together (at least 4 tasks per worker thread), and
    each gene gets back its own sequences' results, in order."""
    from genlm_sc.tl.attribution import attribute as module

    calls = []

    def run_tasks(client, function, arguments, **_):
        calls.append([a["id"] for a in arguments])
        return [(np.full((4, 4), a["id"], float), np.nan, float(a["id"])) for a in arguments]

    class TwoWorkers:
        def nthreads(self):
            return {"a": 1, "b": 1}

    monkeypatch.setattr(module, "run_tasks", run_tasks)
    window = module.GeneWindow("g", "chr20", 100, 104, "+", "ACGT")
    sizes, first = [3, 2, 4, 9, 1], 0
    genes = []
    for size in sizes:
        ids = list(range(first, first + size))
        first += size
        genes.append(module.GeneTasks(
            window, [f"s{i}" for i in ids], ["ACGT"] * size, [np.arange(4)] * size,
            [0] * size, [{"id": i, "method": "ism"} for i in ids],
        ))  # fmt: skip
    done = list(module._scored_on_workers(genes, TwoWorkers()))
    assert [len(c) for c in calls] == [9, 9, 1]  # 3 + 2 + 4, then 9, then the last gene
    assert [g for g, _ in done] == genes
    for gene, ds in done:
        ids = [t["id"] for t in gene.tasks]
        np.testing.assert_array_equal(ds["score"].values, ids)
        np.testing.assert_array_equal(ds["attribution"].values[:, 0, 0], ids)


def test_local_clusters_start_workers_without_dasks_malloc_trim(monkeypatch):
    """Dask leaves MALLOC_TRIM_THRESHOLD_ in this process's environment after starting any
    cluster; the workers n_jobs= starts get neither its default nor that leftover."""
    from genlm_sc._engine import cluster

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # as an earlier dask cluster left it
    with cluster(None, 1) as client:
        seen = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert list(seen.values()) == [None]
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"  # this process's left as it was
