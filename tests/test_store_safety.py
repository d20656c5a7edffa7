"""Store safety: nothing but our own stores is written over, caches never serve a replaced
store, interrupted writes leave a readable store, and damage is an error naming what is
damaged.

Each scenario is reproduced on a tiny cohort (8 people x 3 genes, 512-bp windows). The
scenarios that need another process run a short script in a subprocess that imports only
``genlm_sc.store`` (the rest of the package pulls in PyTorch, which takes seconds to load).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import zarr

import genlm_sc as gl
import genlm_sc.store as gl_store
from genlm_sc.store import CorruptStoreError, StoreError, StoreTargetError
from genlm_sc.store.files import owner_tag

SAMPLES = ["HG00096", "HG00097", "HG00099", "HG00100", "HG00101", "HG00102", "HG00103", "NA12878"]
GENES = ["PSMF1", "TMEM74B", "SIRPB2"]
PACKAGE = Path(gl.__file__).parent


# --------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_panel(example) -> ad.AnnData:
    return gl.pp.gene_windows(example.genes, fasta=example.fasta, width=512, genes=GENES)


@pytest.fixture(scope="module")
def tiny(example, tiny_panel) -> ad.AnnData:
    """8 people x 3 genes, in memory."""
    return gl.pp.personal_sequences(
        example.vcf,
        fasta=example.fasta,
        genes=tiny_panel,
        samples=SAMPLES,
        unphased="as_listed",
        progress=False,
    )


@pytest.fixture(scope="module")
def tiny_store(tiny, tmp_path_factory) -> Path:
    """``tiny`` written once; tests copy it before changing anything."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.zarr"
    gl.write(tiny, path)
    return path


@pytest.fixture
def store(tiny_store, tmp_path) -> Path:
    """A private copy of the tiny store."""
    return Path(shutil.copytree(tiny_store, tmp_path / "c.zarr"))


def hidden_siblings(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.glob(f".{target.name}.*"))


def people(adata: ad.AnnData) -> dict[str, pd.DataFrame]:
    return {gene: gl.get.haplotypes(adata, gene) for gene in adata.var_names}


def assert_same_people(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert a.keys() == b.keys()
    for gene in a:
        pd.testing.assert_frame_equal(a[gene].sort_index(), b[gene].sort_index())


def run_store_script(code: str, *args: object) -> subprocess.CompletedProcess:
    """Run ``code`` in a new Python process with ``gs`` = ``genlm_sc.store`` imported."""
    prelude = textwrap.dedent(f"""
        import sys, types
        package = types.ModuleType("genlm_sc")
        package.__path__ = [{os.fspath(PACKAGE)!r}]
        sys.modules["genlm_sc"] = package
        import genlm_sc.store as gs
    """)
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def dead_pid() -> int:
    """The id of a process that has exited."""
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                             capture_output=True, text=True, check=True)  # fmt: skip
    return int(process.stdout)


def chunk_file(store: Path, array: str) -> Path:
    files = sorted(p for p in (store / array / "c").rglob("*") if p.is_file())
    assert files, array
    return files[0]


def assert_names(err: BaseException, store: Path, *words: str) -> None:
    message = str(err)
    assert isinstance(err, StoreError), repr(err)
    assert err.path == os.fspath(store)
    assert message.startswith(os.fspath(store)), message
    for word in words:
        assert word in message, (word, message)


# --------------------------------------------------------------------------------------
# 1. Never destroy what we did not write
# --------------------------------------------------------------------------------------


def test_a_folder_that_is_not_a_store_survives(tiny, example, tiny_panel, tmp_path):
    folder = tmp_path / "thesis"
    (folder / "sub").mkdir(parents=True)
    (folder / "thesis.docx").write_bytes(b"four years")
    (folder / "sub" / "data.csv").write_text("a,b\n1,2\n")
    with pytest.raises(StoreTargetError) as info:
        gl.write(tiny, folder)
    assert_names(info.value, folder, "not a genlm_sc cohort store", "thesis.docx", "new path")
    with pytest.raises(StoreTargetError, match=r"thesis\.docx"):  # refused before any work
        gl.pp.personal_sequences(
            example.vcf, fasta=example.fasta, genes=tiny_panel, samples=SAMPLES[:2],
            unphased="as_listed", store=folder, progress=False,
        )  # fmt: skip
    assert (folder / "thesis.docx").read_bytes() == b"four years"
    assert (folder / "sub" / "data.csv").read_text() == "a,b\n1,2\n"
    assert hidden_siblings(folder) == []


def test_a_file_at_the_path_is_not_replaced(tiny, tmp_path):
    path = tmp_path / "c.zarr"
    path.write_text("not a store")
    with pytest.raises(StoreTargetError) as info:
        gl.write(tiny, path)
    assert_names(info.value, path, "is a file")
    assert path.read_text() == "not a store"


def test_the_working_directory_is_not_replaced(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(StoreTargetError) as info:
        gl.write(tiny, ".")
    assert_names(info.value, tmp_path, "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "keep"
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    with pytest.raises(StoreTargetError, match="working directory"):
        gl.write(tiny, ".")
    with pytest.raises(StoreTargetError, match=r"not a genlm_sc cohort store.*empty, notes\.txt"):
        gl.write(tiny, "..")
    assert (tmp_path / "notes.txt").read_text() == "keep"


def test_an_empty_folder_and_our_own_store_are_replaced(tiny, store, tmp_path):
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    gl.write(tiny, empty)
    assert gl_store.is_cohort_store(empty)
    first = gl.read(store)
    before = people(first)
    first.obs["note"] = "second version"
    gl.write(first, store)
    again = gl.read(store)
    assert (again.obs["note"] == "second version").all()
    assert_same_people(people(again), before)
    assert hidden_siblings(store) == []


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two_renames"])
def test_leftover_work_folders_are_removed_by_the_next_write(tiny, store, monkeypatch, exchange):
    if not exchange:  # the fallback where the system cannot exchange two folders
        monkeypatch.setattr(gl_store.files, "_renameat2", lambda *args: False)
    pid = dead_pid()
    host = owner_tag().split(".")[1]
    dead = [
        f".c.zarr.partial-{pid}.{host}-0123abcd",
        f".c.zarr.previous-{pid}.{host}-4567abcd",
        ".c.zarr.partial-89abcdef",  # named by an earlier genlm_sc
    ]
    alive = f".c.zarr.partial-{owner_tag()}-fedcba98"  # a write of this process, under way
    for name in [*dead, alive]:
        (store.parent / name / "haplotypes").mkdir(parents=True)
    gl.write(gl.read(store), store)
    assert hidden_siblings(store) == [alive]
    assert_same_people(people(gl.read(store)), people(tiny))


def test_a_previous_copy_is_never_read_as_the_store(tiny, store):
    previous = store.with_name(".c.zarr.previous-0123abcd")
    store.rename(previous)  # as a write killed between its two renames leaves it
    with pytest.raises(FileNotFoundError, match="no such cohort store") as info:
        gl.read(store)
    assert str(previous) in str(info.value) and "rename it" in str(info.value)
    with pytest.raises(FileNotFoundError, match="no such cohort store"):
        gl_store.open_haplotypes_at(os.fspath(store))
    gl.write(tiny, store)
    assert hidden_siblings(store) == []
    assert_same_people(people(gl.read(store)), people(tiny))


def test_a_killed_write_leaves_the_store_as_it_was(tiny, store):
    before = people(gl.read(store))
    killed = run_store_script(
        """
        import os
        gs._write_anndata = lambda *args: os._exit(1)  # killed after copying the haplotypes
        adata = gs.read(sys.argv[1])
        adata.obs["note"] = "never written"
        gs.write(adata, sys.argv[1])
        """,
        store,
    )
    assert killed.returncode == 1, killed.stderr
    [leftover] = hidden_siblings(store)
    assert leftover.startswith(".c.zarr.partial-")
    again = gl.read(store)
    assert "note" not in again.obs
    assert_same_people(people(again), before)
    gl.write(again, store)
    assert hidden_siblings(store) == []


# --------------------------------------------------------------------------------------
# 2. Never serve stale data
# --------------------------------------------------------------------------------------


def test_a_store_rebuilt_by_another_process_is_reopened(tiny, store, tmp_path):
    adata = gl.read(store)
    cached = gl.get.haplotype_store(adata)
    before = people(adata)
    order = list(reversed(adata.obs_names))
    reordered = tmp_path / "reordered.zarr"
    gl.write(adata[order].copy(), reordered)
    rebuilt = run_store_script("gs.write(gs.read(sys.argv[1]), sys.argv[2])", reordered, store)
    assert rebuilt.returncode == 0, rebuilt.stderr
    ds = gl.get.haplotype_store(adata)
    assert ds is not cached
    assert list(ds["sample"].values) == order
    after = people(adata)  # each person keeps their own haplotypes
    assert_same_people(after, before)
    assert any(table.nunique().max() > 1 for table in before.values())  # people differ
    # the Dataset opened before the rebuild is not read against the new files
    with pytest.raises(StoreError, match=r"replaced by another write.*gl\.read"):
        cached["sample_haplotype"].load()


def test_a_write_id_is_recorded_at_each_write(tiny, store):
    first = json.loads((store / "zarr.json").read_text())["attributes"]["genlm_sc"]["write_id"]
    gl.write(gl.read(store), store)
    second = json.loads((store / "zarr.json").read_text())["attributes"]["genlm_sc"]["write_id"]
    assert len(first) == len(second) == 32 and first != second


# --------------------------------------------------------------------------------------
# 3. Interrupted work is recoverable
# --------------------------------------------------------------------------------------


def _add(adata: ad.AnnData, name: str, width: int, value: float) -> None:
    n = gl.get.haplotype_store(adata).sizes["haplotype"]
    blocks = (np.full((min(4, n - s), width), value, np.float32) for s in range(0, n, 4))
    gl_store.add_haplotype_array(
        adata, name, blocks, shape=(n, width), dims=("haplotype", f"{name}_dim"), rows_per_chunk=4
    )


def test_a_killed_embedding_leaves_the_store_readable(tiny, store, tmp_path):
    adata = gl.read(store)
    _add(adata, "X_gl", 4, 1.0)
    killed = run_store_script(
        """
        import os
        import numpy as np
        adata = gs.read(sys.argv[1])
        n = gs.open_haplotypes(adata).sizes["haplotype"]

        def blocks():  # another width; killed half-way
            yield np.full((4, 6), 2.0, np.float32)
            os._exit(1)

        gs.add_haplotype_array(adata, "X_gl", blocks(), shape=(n, 6),
                               dims=("haplotype", "X_gl_dim"), rows_per_chunk=4)
        """,
        store,
    )
    assert killed.returncode == 1, killed.stderr
    assert list((store / ".staging").iterdir())  # the half-written array, out of sight
    again = gl.read(store)
    assert_same_people(people(again), people(tiny))
    ds = gl.get.haplotype_store(again)
    assert ds["X_gl"].shape[1] == 4 and (ds["X_gl"].values == 1.0).all()
    assert not [v for v in ds.variables if "partial" in v]
    _add(again, "X_gl", 6, 2.0)  # the re-run completes
    assert list((store / ".staging").iterdir()) == []
    ds = gl.get.haplotype_store(gl.read(store))
    assert ds["X_gl"].shape[1] == 6 and (ds["X_gl"].values == 2.0).all()
    gl.write(gl.read(store), tmp_path / "copy.zarr")
    copy = gl.get.haplotype_store(gl.read(tmp_path / "copy.zarr"))
    assert (copy["X_gl"].values == 2.0).all()
    gl_store.verify(tmp_path / "copy.zarr")


def test_arrays_left_in_the_group_by_earlier_versions_are_ignored(tiny, store, tmp_path):
    """Earlier versions wrote ``haplotypes/_partial_<name>_<id>`` in the group itself."""
    adata = gl.read(store)
    _add(adata, "X_gl", 4, 1.0)
    n = gl.get.haplotype_store(adata).sizes["haplotype"]
    group = zarr.open_group(store / "haplotypes", mode="a", zarr_format=3)
    group.create_array("_partial_X_gl_0123abcd", shape=(n, 6), chunks=(n, 6), dtype="float32",
                       dimension_names=["haplotype", "X_gl_dim"])  # fmt: skip
    gl_store._OPEN_DATASETS.pop(os.fspath(store), None)
    ds = gl.get.haplotype_store(gl.read(store))  # no "conflicting sizes for dimension"
    assert ds["X_gl"].shape[1] == 4 and "_partial_X_gl_0123abcd" not in ds
    gl.write(gl.read(store), tmp_path / "copy.zarr")
    assert not (tmp_path / "copy.zarr" / "haplotypes" / "_partial_X_gl_0123abcd").exists()
    _add(gl.read(store), "X_gl", 6, 2.0)
    assert not (store / "haplotypes" / "_partial_X_gl_0123abcd").exists()


def test_an_interrupted_embed_through_tl_embed(tiny, store, tmp_path):
    import torch

    from genlm_sc.models import (
        GenlmConvConfig,
        GenlmConvForMaskedLM,
        SequenceEncoder,
        build_tokenizer,
    )

    def encoder(hidden: int) -> SequenceEncoder:
        torch.manual_seed(0)
        tokenizer = build_tokenizer("char", model_max_length=128)
        config = GenlmConvConfig(vocab_size=len(tokenizer), hidden_size=hidden,
                                 num_conv_layers=1, dilation_cycle=[1],
                                 num_attention_layers=0)  # fmt: skip
        return SequenceEncoder(
            GenlmConvForMaskedLM(config), tokenizer, device="cpu", max_length=128
        )

    adata = gl.read(store)
    gl.tl.embed(adata, model=encoder(8), progress=False)
    first = gl.get.haplotype_store(adata)["X_gl"].values
    wider = encoder(12)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    real, wider.embed = wider.embed, interrupted
    with pytest.raises(KeyboardInterrupt):
        gl.tl.embed(adata, model=wider, progress=False)
    again = gl.read(store)
    np.testing.assert_array_equal(gl.get.haplotype_store(again)["X_gl"].values, first)
    assert_same_people(people(again), people(tiny))
    wider.embed = real
    gl.tl.embed(again, model=wider, progress=False)
    assert gl.get.haplotype_store(gl.read(store))["X_gl"].shape[1] == 12
    gl.write(gl.read(store), tmp_path / "copy.zarr")
    assert gl.get.haplotype_store(gl.read(tmp_path / "copy.zarr"))["X_gl"].shape[1] == 12


# --------------------------------------------------------------------------------------
# 4. Integrity
# --------------------------------------------------------------------------------------


def test_chunks_carry_checksums(store):
    for array in ("sequence", "sample_haplotype", "haplotype_length", "variant_id"):
        meta = json.loads((store / "haplotypes" / array / "zarr.json").read_text())
        zstd = [c for c in meta["codecs"] if c["name"] == "zstd"]
        assert zstd and zstd[0]["configuration"]["checksum"] is True, array
        assert (store / "haplotypes" / array / "manifest.json").exists()
    assert (store / "anndata" / "obs" / "_index" / "manifest.json").exists()
    gl_store.verify(store)


def _delete(path: Path) -> None:
    path.unlink()


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-3])


@pytest.mark.parametrize("damage", [_delete, _flip, _truncate], ids=["deleted", "flipped", "cut"])
@pytest.mark.parametrize("array", ["haplotypes/sequence", "haplotypes/sample_haplotype"])
def test_a_damaged_chunk_is_an_error_naming_the_array(tiny, store, tmp_path, damage, array):
    adata = gl.read(store)
    damage(chunk_file(store, array))
    with pytest.raises(CorruptStoreError) as info:
        people(adata)
    assert_names(info.value, store, f"array {array}, chunk c/0")
    with pytest.raises(CorruptStoreError, match=array):  # the damage is not copied on
        gl.write(adata, tmp_path / "copy.zarr")
    assert not (tmp_path / "copy.zarr").exists() and hidden_siblings(tmp_path / "copy.zarr") == []
    with pytest.raises(CorruptStoreError, match=array):
        gl_store.verify(store)


def test_damage_to_the_anndata_and_to_array_metadata(store):
    _flip(chunk_file(store, "anndata/obs/_index"))
    with pytest.raises(CorruptStoreError) as info:
        gl.read(store)
    assert_names(info.value, store, "array anndata/obs/_index")


def test_edited_array_metadata_and_missing_manifest(store):
    meta_path = store / "haplotypes" / "haplotype_length" / "zarr.json"
    original = meta_path.read_text()
    meta = json.loads(original)
    meta["codecs"][-1]["configuration"]["checksum"] = False
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CorruptStoreError) as info:
        gl.get.haplotype_store(gl.read(store))
    assert_names(info.value, store, "array haplotypes/haplotype_length", "zarr.json differs")
    meta_path.write_text(original)
    (store / "haplotypes" / "sequence" / "manifest.json").unlink()
    with pytest.raises(CorruptStoreError, match=r"array haplotypes/sequence.*manifest"):
        gl_store.verify(store)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (0, "format version 0 is not a genlm_sc format version"),
        (-7, "format version -7 is not"),
        (1.9, "must be an integer, got 1.9 (float)"),
        ("1.5", "must be an integer, got '1.5' (str)"),
        (None, "must be an integer, got None (NoneType)"),
        (True, "must be an integer, got True (bool)"),
        (99, "newer than this genlm_sc reads (2); upgrade genlm_sc"),
        ("missing", "is missing"),
    ],
)
@pytest.mark.parametrize("group", ["root", "haplotypes"])
def test_format_version_is_checked_strictly(store, tmp_path, value, words, group):
    adata = gl.read(store)
    opened = gl.read(store)
    opened.uns["gl"]["store"] = f"{store.parent}/./{store.name}"
    gl.get.haplotype_store(opened)  # cached under another spelling of the path
    meta_path = store / ("zarr.json" if group == "root" else "haplotypes/zarr.json")
    document = json.loads(meta_path.read_text())
    attrs = document["attributes"]["genlm_sc"]
    if value == "missing":
        del attrs["format_version"]
    else:
        attrs["format_version"] = value
    meta_path.write_text(json.dumps(document))
    where = "root group" if group == "root" else "haplotypes group"
    attempts = [lambda: gl.read(store), lambda: gl.get.haplotype_store(adata)]
    if group == "root":  # also when the Dataset was opened before the edit
        attempts.append(lambda: gl.get.haplotype_store(opened))
    for attempt in attempts:
        with pytest.raises(StoreError) as info:
            attempt()
        assert_names(info.value, store, f"attribute genlm_sc.format_version of the {where}", words)


def test_a_version_1_store_is_read_with_a_warning(tiny, store, tmp_path):
    for meta_path in (store / "zarr.json", store / "haplotypes" / "zarr.json"):
        document = json.loads(meta_path.read_text())
        document["attributes"]["genlm_sc"]["format_version"] = 1
        document["attributes"]["genlm_sc"].pop("write_id", None)
        meta_path.write_text(json.dumps(document))
    for manifest in store.rglob("manifest.json"):
        manifest.unlink()
    with pytest.warns(UserWarning, match="format version 1, without chunk checksums"):
        adata = gl.read(store)
    assert_same_people(people(adata), people(tiny))
    gl.write(adata, tmp_path / "upgraded.zarr")
    assert gl_store.check_format(tmp_path / "upgraded.zarr")["format_version"] == 2
    gl_store.verify(tmp_path / "upgraded.zarr")


def test_results_are_sealed_and_checked(store, tmp_path):
    import xarray as xr

    adata = gl.read(store)
    result = xr.Dataset({"score": (("haplotype", "position"), np.arange(12.0).reshape(3, 4))})
    gl_store.write_result(adata, "gl_test", "PSMF1", result)
    gl_store.write_result(adata, "gl_test", "PSMF1", result * 2)  # replaces the first
    folder = store / "results" / "gl_test"
    assert sorted(p.name for p in folder.iterdir()) == ["PSMF1"]
    back = gl_store.read_result(gl.read(store), "gl_test", "PSMF1")
    np.testing.assert_array_equal(back["score"].values, result["score"].values * 2)
    gl.write(gl.read(store), tmp_path / "copy.zarr")
    copied = gl_store.read_result(gl.read(tmp_path / "copy.zarr"), "gl_test", "PSMF1")
    np.testing.assert_array_equal(copied["score"].values, back["score"].values)
    _flip(chunk_file(store, "results/gl_test/PSMF1/score"))
    with pytest.raises(CorruptStoreError) as info:
        gl_store.read_result(gl.read(store), "gl_test", "PSMF1")
    assert_names(info.value, store, "array results/gl_test/PSMF1/score, chunk c/0/0")


# --- inputs recorded are inputs checked ------------------------------------------------


def test_a_replaced_fasta_is_not_used_in_silence(example, tmp_path):
    fasta = tmp_path / "ref.fa.gz"
    for suffix in ("", ".fai", ".gzi"):
        shutil.copy(str(example.fasta) + suffix, str(fasta) + suffix)
    panel = gl.pp.gene_windows(example.genes, fasta=fasta, width=256, genes=GENES)
    before = gl.get.sequences(panel)
    shutil.copy(tmp_path / "ref.fa.gz", tmp_path / "kept.fa.gz")
    with open(fasta, "r+b") as handle:  # same size, other bytes at the start
        head = handle.read(64)
        handle.seek(0)
        handle.write(bytes(b ^ 0xFF for b in head))
    with pytest.raises(ValueError, match=r"recorded FASTA .*ref\.fa\.gz has changed"):
        gl.get.sequences(panel)
    fasta.unlink()
    with pytest.raises(FileNotFoundError, match="is gone; pass the file explicitly"):
        gl.get.sequences(panel)
    pd.testing.assert_series_equal(gl.get.sequences(panel, fasta=tmp_path / "kept.fa.gz"), before)


def test_a_store_of_another_cohort_is_not_read(tiny, store):
    other = gl.read(store)
    other.obs_names = [f"stranger{i}" for i in range(other.n_obs)]  # an .h5ad of other people
    with pytest.raises(StoreError, match=r"does not hold 8 of its people .*stranger0"):
        gl.get.haplotypes(other, other.var_names[0])
    assert_same_people(people(gl.read(store)), people(tiny))  # the store itself is fine
