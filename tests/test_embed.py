"""Embeddings: panels, cohorts (one forward pass per distinct haplotype), third-party models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

import genlm_sc as gl
from genlm_sc.models import (
    Chunker,
    GenlmConvConfig,
    GenlmConvForMaskedLM,
    SequenceEncoder,
    build_tokenizer,
    load_encoder,
)
from published_layouts import LAYOUTS, own_recipe

RNG = np.random.default_rng(7)
SEQUENCES = ["".join(RNG.choice(list("ACGT"), n)) for n in (40, 97, 150, 333)]


def conv_checkpoint(folder, *, attention: int = 0):
    """A tiny untrained genlm_conv masked LM with a char tokenizer, saved to ``folder``."""
    torch.manual_seed(0)
    tokenizer = build_tokenizer("char", model_max_length=128)
    config = GenlmConvConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_conv_layers=2, dilation_cycle=[1, 2],
        num_attention_layers=attention, num_attention_heads=2,
    )  # fmt: skip
    GenlmConvForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def third_party_checkpoint(folder, style: str):
    """A tiny checkpoint in a published model's layout (:mod:`published_layouts`), with the
    model and tokenizer as plain transformers loads them."""
    LAYOUTS[style](folder)
    model = AutoModelForMaskedLM.from_pretrained(folder).eval()
    return folder, model, AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("style", sorted(LAYOUTS))
def test_published_layouts_embed_as_their_own_recipes_do(tmp_path, style):
    folder = LAYOUTS[style](tmp_path / style)
    sequences = {f"s{i}": s for i, s in enumerate(SEQUENCES[:3])}
    panel = gl.pp.sequence_panel(sequences)
    gl.tl.embed(panel, model=folder, batch_size=2, progress=False, device="cpu", precision="fp32")
    assert panel.obsm["X_gl"].shape == (3, 16)
    for i, sequence in enumerate(sequences.values()):
        expected = own_recipe(folder, sequence, k=3 if style == "dnabert" else None)
        got = panel.obsm["X_gl"][i]
        assert got @ expected / np.linalg.norm(got) / np.linalg.norm(expected) > 0.999999
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-5)
    assert panel.uns["gl"]["embeddings"]["X_gl"]["model"] == str(folder)


def test_batching_and_padding_do_not_change_embeddings(tmp_path):
    encoder = load_encoder(
        conv_checkpoint(tmp_path / "m", attention=1), device="cpu", precision="fp32"
    )
    together = encoder.embed(SEQUENCES, batch_size=4)
    alone = np.stack([encoder.embed([s], batch_size=1)[0] for s in SEQUENCES])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_long_windows_are_chunked_and_pooled_over_all_tokens(tmp_path):
    encoder = load_encoder(conv_checkpoint(tmp_path / "m"), device="cpu", max_length=52)
    sequence = SEQUENCES[3]  # 333 bases → chunks of 50 bases
    chunks = encoder.chunk_ids(sequence)
    assert [len(c) for c in chunks] == [52] * 6 + [35]
    pieces = [sequence[i : i + 50] for i in range(0, 333, 50)]
    per_piece = encoder.embed(pieces)
    weights = np.array([len(p) for p in pieces], dtype=float)
    expected = (per_piece * weights[:, None]).sum(0) / weights.sum()
    np.testing.assert_allclose(encoder.embed([sequence])[0], expected, atol=1e-5)
    cls = encoder.embed([sequence], pooling="cls")[0]
    assert not np.allclose(cls, encoder.embed([sequence])[0])


def test_cohort_embeds_each_distinct_haplotype_once(tmp_path):
    encoder = SequenceEncoder(
        *_loaded(conv_checkpoint(tmp_path / "m")), device="cpu", max_length=128
    )
    cohort = gl.datasets.example_cohort(width=256)
    n_haplotypes = gl.get.haplotype_store(cohort).sizes["haplotype"]
    gl.tl.embed(cohort, model=encoder, progress=False)
    record = cohort.uns["gl"]["embeddings"]["X_gl"]
    assert record["n_forward_sequences"] == n_haplotypes < 2 * cohort.n_obs * cohort.n_vars

    gene = cohort.var_names[3]
    view = gl.get.gene_view(cohort, gene)
    assert view.obsm["X_gl"].shape == (cohort.n_obs, 32)
    people = gl.get.haplotypes(cohort, gene, samples=list(cohort.obs_names[:5]))
    direct = encoder.embed(list(people["haplotype_1"]) + list(people["haplotype_2"]))
    np.testing.assert_allclose(view.obsm["X_gl"][:5, :16], direct[:5], atol=1e-5)
    np.testing.assert_allclose(view.obsm["X_gl"][:5, 16:], direct[5:], atol=1e-5)
    mean = gl.get.gene_view(cohort, gene, diploid="mean").obsm["X_gl"]
    np.testing.assert_allclose(mean[:5], (direct[:5] + direct[5:]) / 2, atol=1e-5)

    path = tmp_path / "c.zarr"  # on disk, embeddings are streamed into the store
    gl.write(cohort, path)
    again = gl.read(path)
    gl.tl.embed(again, model=encoder, key_added="X_disk", progress=False)
    stored = gl.get.haplotype_store(gl.read(path))["X_disk"]
    assert stored.dims == ("haplotype", "X_disk_dim")
    np.testing.assert_allclose(stored.values, gl.get.haplotype_store(cohort)["X_gl"].values,
                               atol=1e-5)  # fmt: skip
    with pytest.raises(KeyError, match=r"run gl\.tl\.embed"):
        gl.get.gene_view(cohort, gene, key="X_missing")

    # only some genes: their haplotypes are embedded, the others stay NaN
    gl.tl.embed(cohort, model=encoder, key_added="X_some", genes=[gene], progress=False)
    some = gl.get.haplotype_store(cohort)["X_some"].values
    assert cohort.uns["gl"]["embeddings"]["X_some"]["n_forward_sequences"] == int(
        cohort.var.loc[gene, "n_haplotypes"]
    )
    np.testing.assert_allclose(
        gl.get.gene_view(cohort, gene, key="X_some").obsm["X_some"], view.obsm["X_gl"], atol=1e-5
    )
    assert np.isnan(some).any(axis=1).sum() == n_haplotypes - cohort.var.loc[gene, "n_haplotypes"]


def _loaded(folder):
    from transformers import AutoModel

    from genlm_sc.models import load_tokenizer

    return AutoModel.from_pretrained(folder), load_tokenizer(folder)


def test_each_distinct_chunk_runs_once_and_embeddings_do_not_change(tmp_path):
    encoder = load_encoder(conv_checkpoint(tmp_path / "m"), device="cpu", precision="fp32",
                           max_length=52)  # fmt: skip
    base = SEQUENCES[3]  # 333 bases: 7 chunks of at most 50 bases
    variant = base[:120] + ("A" if base[120] != "A" else "C") + base[121:]  # differs in chunk 3
    sequences = [base, variant, base, variant[:300]]
    together = encoder.embed(sequences, batch_size=3)
    # 7 chunks of the base, 1 more of the variant; the 300-base prefix adds none
    assert encoder.last_counts == {"chunks": 27, "distinct_chunks": 8, "forward_chunks": 8}
    alone = np.stack([encoder.embed([s])[0] for s in sequences])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)
    cache = {}
    encoder.embed(sequences[:2], chunk_cache=cache)
    encoder.embed(sequences[2:], chunk_cache=cache)  # nothing new in these
    assert encoder.last_counts["forward_chunks"] == 0 and len(cache) == 8


def test_cohort_embedding_records_chunks_and_forward_passes(tmp_path):
    cohort = gl.datasets.example_cohort(width=256)
    model = conv_checkpoint(tmp_path / "m")
    gl.tl.embed(cohort, model=model, device="cpu", max_length=52, progress=False)
    record = cohort.uns["gl"]["embeddings"]["X_gl"]
    assert 0 < record["n_forward_chunks"] < record["n_chunks"]
    ds = gl.get.haplotype_store(cohort)
    first = gl.get.unique_haplotypes(cohort, cohort.var_names[0])["sequence"].tolist()
    lo = gl.get.gene_index(cohort, cohort.var_names[0])[1]
    encoder = load_encoder(model, device="cpu", max_length=52)
    alone = np.stack([encoder.embed([s])[0] for s in first])
    np.testing.assert_allclose(ds["X_gl"][lo : lo + len(first)].values, alone, rtol=1e-5, atol=1e-6)


def test_the_chunk_cache_beside_a_store_serves_later_calls(tmp_path, example):
    model = conv_checkpoint(tmp_path / "m")
    panel = gl.pp.gene_windows(example.genes, fasta=example.fasta, width=256)
    genes = list(panel.obs_names[:4])
    store = tmp_path / "stores" / "small.zarr"
    small = gl.pp.personal_sequences(example.vcf, fasta=example.fasta, genes=panel[genes],
                                     store=store,
                                     unphased="random", progress=False)  # fmt: skip
    embed = {"model": model, "device": "cpu", "precision": "fp32", "max_length": 52,
             "progress": False}  # fmt: skip
    gl.tl.embed(small, genes=genes[:2], **embed)  # two genes first
    first = small.uns["gl"]["embeddings"]["X_gl"]
    assert first["n_cached_chunks_before"] == 0 and first["n_forward_chunks"] > 0
    partial = gl.get.haplotype_store(small)["X_gl"].values.copy()
    gl.tl.embed(small, **embed)  # all genes: only the other two genes' chunks are new
    second = small.uns["gl"]["embeddings"]["X_gl"]
    assert second["n_cached_chunks_before"] == first["n_forward_chunks"]
    _, lo, hi = gl.get.gene_index(small, genes[2])
    every = gl.get.haplotype_store(small)["X_gl"].values
    done = np.isfinite(partial[:, 0])
    np.testing.assert_allclose(every[done], partial[done], rtol=1e-6)
    gl.tl.embed(small, **embed)  # nothing new at all
    assert small.uns["gl"]["embeddings"]["X_gl"]["n_forward_chunks"] == 0
    np.testing.assert_allclose(gl.get.haplotype_store(small)["X_gl"].values, every, rtol=1e-6)
    # embedding some genes keeps the others' stored embeddings
    gl.tl.embed(small, genes=genes[:1], **embed)
    np.testing.assert_allclose(gl.get.haplotype_store(small)["X_gl"].values, every, rtol=1e-6)
    # a killed call leaves whole shards; a store of other people in the same folder reuses them
    other = gl.pp.personal_sequences(example.vcf, fasta=example.fasta, genes=panel[genes],
                                     store=tmp_path / "stores" / "again.zarr",
                                     unphased="random", random_state=1, progress=False)  # fmt: skip
    gl.tl.embed(other, **embed)
    reused = other.uns["gl"]["embeddings"]["X_gl"]
    assert reused["n_forward_chunks"] < reused["n_chunks"] / 2
    assert hi > lo


def test_a_killed_embedding_resumes_from_its_cached_chunks(tmp_path, example, monkeypatch):
    from genlm_sc.models.encoder import SequenceEncoder
    from genlm_sc.tl.language_model import embed as embedding

    model = conv_checkpoint(tmp_path / "m")
    panel = gl.pp.gene_windows(example.genes, fasta=example.fasta, width=256)
    cohort = gl.pp.personal_sequences(example.vcf, fasta=example.fasta, genes=panel[:4],
                                      store=tmp_path / "c.zarr", unphased="random",
                                      progress=False)  # fmt: skip
    options = {"model": model, "device": "cpu", "precision": "fp32", "max_length": 52,
               "progress": False}  # fmt: skip
    monkeypatch.setitem(embedding._embed_cohort.__kwdefaults__, "rows_per_block", 4)
    real, calls = SequenceEncoder.embed, []

    def killed_at_the_third_block(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SequenceEncoder, "embed", killed_at_the_third_block)
    with pytest.raises(KeyboardInterrupt):
        gl.tl.embed(cohort, **options)
    monkeypatch.setattr(SequenceEncoder, "embed", real)
    gl.tl.embed(cohort, **options)
    record = cohort.uns["gl"]["embeddings"]["X_gl"]
    assert 0 < record["n_cached_chunks_before"]  # the two finished blocks were kept
    fresh = gl.pp.personal_sequences(example.vcf, fasta=example.fasta, genes=panel[:4],
                                     store=tmp_path / "other" / "c.zarr", unphased="random",
                                     progress=False)  # fmt: skip
    gl.tl.embed(fresh, **options)  # another folder: no cache, everything computed
    assert fresh.uns["gl"]["embeddings"]["X_gl"]["n_cached_chunks_before"] == 0
    np.testing.assert_allclose(gl.get.haplotype_store(cohort)["X_gl"].values,
                               gl.get.haplotype_store(fresh)["X_gl"].values, rtol=1e-5)  # fmt: skip
    total = fresh.uns["gl"]["embeddings"]["X_gl"]["n_forward_chunks"]
    assert record["n_forward_chunks"] == total - record["n_cached_chunks_before"]


def test_a_hundred_more_people_embed_only_their_new_chunks(tmp_path, example):
    from genlm_sc.models.encoder import chunk_digest

    model = conv_checkpoint(tmp_path / "m")
    panel = gl.pp.gene_windows(example.genes, fasta=example.fasta, width=512)[:6]
    base = gl.pp.personal_sequences(example.vcf, fasta=example.fasta, genes=panel[:1],
                                    unphased="random", progress=False)  # fmt: skip
    people = list(base.obs_names)
    options = {"model": model, "device": "cpu", "precision": "fp32", "max_length": 52,
               "progress": False}  # fmt: skip
    stores = {}
    for name, samples in (("first", people[:-100]), ("all", people)):
        stores[name] = gl.pp.personal_sequences(
            example.vcf, fasta=example.fasta, genes=panel, samples=samples,
            store=tmp_path / "stores" / f"{name}.zarr", unphased="random", progress=False,
        )  # fmt: skip
        gl.tl.embed(stores[name], **options)
    encoder = load_encoder(model, device="cpu", max_length=52)

    def chunks(cohort) -> set[bytes]:
        found = set()
        for gene in cohort.var_names:
            for sequence in gl.get.unique_haplotypes(cohort, gene)["sequence"]:
                found |= {chunk_digest(c) for c in encoder.chunk_ids(sequence)}
        return found

    new = chunks(stores["all"]) - chunks(stores["first"])
    assert 0 < len(new) < len(chunks(stores["all"]))
    assert stores["all"].uns["gl"]["embeddings"]["X_gl"]["n_forward_chunks"] == len(new)


@pytest.mark.parametrize("kind", ["char", "kmer3", "kmer6", "dnabert"])
def test_chunks_by_table_lookup_equal_the_tokenizers_own(tmp_path, kind):
    if kind == "dnabert":  # DNABERT's published vocabulary, read through our k-mer class
        tokenizer = load_encoder(LAYOUTS["dnabert"](tmp_path / "d"), device="cpu").tokenizer
    elif kind == "char":
        tokenizer = build_tokenizer("char", model_max_length=64)
    else:
        tokenizer = build_tokenizer("kmer", k=int(kind[-1]), model_max_length=64)
    chunker = Chunker(tokenizer, max_length=64)
    assert chunker._fast is not None
    assert Chunker(build_tokenizer("bpe", corpus=SEQUENCES), max_length=64)._fast is None
    letters = list("ACGTNacgtnRYKMSWBDHVrykmswbdhvXZ")
    sequences = ["".join(RNG.choice(letters, n)) for n in (1, 2, 5, 6, 62, 63, 200, 1000)]
    sequences += ["ACGTACGTTTGA" * 20, "ACGT-NN.acgt", "ACG[MASK]TTA", "ACGT ACGT", ""]
    for sequence, chunks in zip(sequences, chunker.chunk_ids_of(sequences), strict=True):
        expected = tokenizer(sequence, add_special_tokens=False)["input_ids"]
        assert [c[0] for c in chunks] == [tokenizer.cls_token_id] * len(chunks)
        assert [t for c in chunks for t in c[1:-1]] == expected, sequence
        assert chunks == chunker.chunk_ids(sequence)


def test_tokens_a_user_adds_turn_the_table_lookup_off():
    tokenizer = build_tokenizer("char", model_max_length=100)
    chunker = Chunker(tokenizer, max_length=100)
    tokenizer.add_tokens(["ACG"])  # after the chunker was built
    expected = tokenizer("TACGT")["input_ids"]
    assert chunker.chunk_ids_of(["TACGT"])[0] == [expected]
    assert Chunker(tokenizer, max_length=100)._fast is None
