"""Pretraining corpora, masking and masked-LM pretraining with tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForMaskedLM, BertConfig

import genlm_sc as gl
from conftest import pretrain_killed_at, write_fasta, write_vcf
from genlm_sc.io import InputFileError
from genlm_sc.models import DnaMaskingCollator, build_tokenizer, load_tokenizer
from genlm_sc.pp import PretrainingCorpus, parse_region
from genlm_sc.pp.examples import CropDataset

TINY = {"hidden_size": 16, "num_conv_layers": 2, "dilation_cycle": [1, 2]}


@pytest.fixture
def small_genome(tmp_path):
    """A 3 kb random contig and a VCF with an SNV, an insertion, a deletion and a symbolic."""
    rng = np.random.default_rng(3)
    contig = "".join(rng.choice(list("ACGT"), 3000))
    fasta = write_fasta(tmp_path / "ref.fa", {"c1": contig}, width=60)
    records = [  # (0-based position, ref, alt)
        (999, contig[999], "G" if contig[999] != "G" else "T"),
        (1499, contig[1499], contig[1499] + "TTA"),
        (1999, contig[1999:2002], contig[1999]),
        (2499, contig[2499], "<DEL>"),
    ]
    rows = [("c1", p, f"v{i}", r, a, ["0|1", "1|1"], "PASS") for i, (p, r, a) in enumerate(records)]
    vcf = write_vcf(tmp_path / "calls.vcf.gz", rows, samples=["s1", "s2"], contigs={"c1": 3000})
    return {"fasta": fasta, "vcf": vcf, "contig": contig, "records": records, "tmp": tmp_path}


def test_parse_region():
    assert parse_region("20:1,000,001-1,000,010") == ("20", 1_000_000, 1_000_010)
    assert parse_region("c1", lengths={"c1": 50}) == ("c1", 0, 50)
    with pytest.raises(ValueError, match="start <= end"):
        parse_region("20:10-5")


def test_reference_corpus_reads_regions_and_records(small_genome, tmp_path):
    corpus = PretrainingCorpus().add_fasta(small_genome["fasta"], regions=["c1:101-600"])
    assert corpus.sequences[0].tobytes().decode() == small_genome["contig"][100:600]
    multi = tmp_path / "multi.fa"
    multi.write_text(">a\nacgtnnACGT\nAC\n>b\n" + "A" * 80 + "\n")
    corpus = PretrainingCorpus().add_fasta(multi, min_length=5)
    assert [s.tobytes().decode() for s in corpus.sequences] == ["ACGTNNACGTAC", "A" * 80]
    assert corpus.sources[0]["n_bases"] == 92


def test_variant_windows_write_the_allele_in_the_centre(small_genome):
    corpus = PretrainingCorpus().add_variant_windows(
        small_genome["vcf"], fasta=small_genome["fasta"], regions=["c1"], width=100
    )
    contig = small_genome["contig"]
    assert len(corpus) == 3 and corpus.sources[0]["symbolic_skipped"] == 1
    records = small_genome["records"]
    (snv_pos, _, snv_alt), (ins_pos, _, ins_alt), (del_pos, _, del_alt) = records[:3]
    snv, insertion, deletion = (s.tobytes().decode() for s in corpus.sequences)
    assert snv == contig[snv_pos - 50 : snv_pos] + snv_alt + contig[snv_pos + 1 : snv_pos + 50]
    assert insertion == (contig[ins_pos - 50 : ins_pos] + ins_alt + contig[ins_pos + 1 :])[:100]
    assert deletion == (contig[del_pos - 50 : del_pos] + del_alt + contig[del_pos + 3 :])[:100]
    assert np.flatnonzero(corpus.variant_masks[0]).tolist() == [50]
    assert np.flatnonzero(corpus.variant_masks[1]).tolist() == [51, 52, 53]  # inserted TTA
    assert np.flatnonzero(corpus.variant_masks[2]).tolist() == [50, 51]  # the joined bases


def test_variant_windows_check_ref(small_genome, tmp_path):
    fasta = write_fasta(tmp_path / "other.fa", {"c1": "A" * 3000})
    with pytest.raises(InputFileError, match=r"REF .* does not match") as err:
        PretrainingCorpus().add_variant_windows(
            small_genome["vcf"], fasta=fasta, regions=["c1"], width=100
        )
    assert "calls.vcf.gz" in str(err.value) and "v" in str(err.value.record)


def test_haplotype_corpus_is_the_cohort_haplotypes(example):
    corpus = PretrainingCorpus().add_haplotypes(
        example.vcf, fasta=example.fasta, regions=["20:1200001-1208192"], n_samples=40,
        window=4096, random_state=1,
    )  # fmt: skip
    reference = PretrainingCorpus().add_fasta(example.fasta, regions=["20:1200001-1208192"])
    ref = reference.sequences[0]
    assert corpus.sources[0]["n_samples"] == 40
    assert corpus.sources[0]["n_bases"] == corpus.n_bases
    assert repr(corpus).splitlines() == [
        f"PretrainingCorpus: {len(corpus):,} sequences, {corpus.n_bases:,} bases",
        f"    haplotypes of 40 people: {len(corpus):,} sequences, {corpus.n_bases:,} bases "
        "(20:1200001-1208192)",
    ]
    # each tile's weights add up to the 80 person-haplotypes
    assert sum(corpus.weights) == pytest.approx(2 * 80)
    with_variants = [m for m in corpus.variant_masks if m is not None]
    assert with_variants, "40 people carry some variant in 8 kb"
    for codes, mask in zip(corpus.sequences, corpus.variant_masks, strict=True):
        if mask is None:  # identical to one of the two reference tiles
            text = codes.tobytes()
            assert text in (ref[:4096].tobytes(), ref[4096:].tobytes())
        elif len(codes) == 4096:  # SNVs only: the mask marks exactly the differing bases
            tile = ref[:4096] if (codes[:100] == ref[:100]).mean() > 0.9 else ref[4096:]
            if (codes != tile).sum() == mask.sum():
                assert np.array_equal(codes != tile, mask)


def test_crops_are_drawn_from_every_sequence_by_weight_and_length():
    rng = np.random.default_rng(1)
    texts = ["".join(rng.choice(list("ACGT"), 100)) for _ in range(300)]
    corpus = PretrainingCorpus()
    for i, text in enumerate(texts):  # more sequences than examples
        corpus._add(np.frombuffer(text.encode(), np.uint8), None, 3.0 if i >= 150 else 1.0)
    dataset = CropDataset(corpus, length=100, n_examples=250, random_state=0)
    assert dataset[7] == dataset[7]  # a pure function of (seed, index)
    source = {text: i for i, text in enumerate(texts)}
    drawn = np.array([source[dataset[i]["sequence"]] for i in range(len(dataset))])
    assert len(set(drawn)) > 150 and drawn.max() >= 250  # spread over the whole corpus
    assert 0.65 < (drawn >= 150).mean() < 0.85  # the heavier half carries 3/4 of the mass


def test_span_masking_for_kmers_and_variant_rate():
    tokenizer = build_tokenizer("kmer", k=3)
    collator = DnaMaskingCollator(tokenizer, max_length=600, mlm_probability=0.15, random_state=0)
    rng = np.random.default_rng(0)
    sequence = "".join(rng.choice(list("ACGT"), 500))
    batch = collator([{"sequence": sequence, "variant": None}] * 8)
    scored = (batch["labels"] != -100).numpy()
    assert 0.08 < scored.mean() < 0.22
    for row in scored:  # masked tokens come in runs of at least k (clipped at the end)
        tokens = row[1:-1].astype(int)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], tokens, [0]])))
        starts, ends = edges[::2], edges[1::2]
        assert ((ends - starts >= 3) | (ends == len(tokens))).all()
    variant = np.zeros(500, bool)
    variant[[100, 300]] = True
    boosted = DnaMaskingCollator(
        build_tokenizer("char"), max_length=600, mlm_probability=0.0, variant_mlm_probability=1.0
    )([{"sequence": sequence, "variant": variant}])
    assert np.flatnonzero(boosted["labels"][0] != -100).tolist() == [101, 301]  # after [CLS]


def test_pretrain_learns_saves_and_resumes(tmp_path):
    rng = np.random.default_rng(0)
    motif = "".join(rng.choice(list("ACGT"), 7))
    train = PretrainingCorpus()
    train._add(np.frombuffer((motif * 400).encode(), np.uint8), None, 1.0)
    held = PretrainingCorpus()
    held._add(np.frombuffer((motif * 40).encode(), np.uint8), None, 1.0)
    out = gl.tl.pretrain(
        train, eval_corpus=held, output_dir=tmp_path / "m", model=TINY, sequence_length=64,
        max_steps=40, batch_size=8, learning_rate=5e-3, warmup_steps=5, eval_steps=20,
        device="cpu", progress=False, precision="fp32",
    )  # fmt: skip
    record = json.loads((out / "genlm_pretraining.json").read_text())
    assert record["metrics"]["eval_heldout_accuracy"] > 0.9  # a period-7 sequence is learnable
    assert record["metrics"]["eval_heldout_bits_per_base"] < 1.5  # 2 for guessing
    assert record["tokenizer"]["kind"] == "char" and record["device"] == "cpu"
    model = AutoModelForMaskedLM.from_pretrained(out)
    tokenizer = load_tokenizer(out)
    ids = tokenizer(motif * 3, return_tensors="pt")
    ids["input_ids"][0, 8] = tokenizer.mask_token_id
    with torch.inference_mode():
        predicted = model(**ids).logits[0, 8].argmax().item()
    assert tokenizer.convert_ids_to_tokens(predicted) == (motif * 3)[7]
    # a run with other settings does not continue the old one: it names what changed
    with pytest.raises(ValueError, match=r"learning_rate: 0\.005 -> 0\.002; max_steps: 40 -> 50"):
        gl.tl.pretrain(
            train, eval_corpus=held, output_dir=out, model=TINY, sequence_length=64,
            max_steps=50, batch_size=8, eval_steps=20, warmup_steps=5, device="cpu",
            progress=False, precision="fp32",
        )  # fmt: skip
    # resuming with the same settings continues from the last checkpoint
    gl.tl.pretrain(
        train, eval_corpus=held, output_dir=out, model=TINY, sequence_length=64, max_steps=40,
        batch_size=8, learning_rate=5e-3, warmup_steps=5, eval_steps=20, device="cpu",
        progress=False, precision="fp32",
    )  # fmt: skip
    record = json.loads((out / "genlm_pretraining.json").read_text())
    assert record["resumed_from"].endswith("checkpoint-40")


def test_resumed_pretraining_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    motif = "ACGTTGCA"
    train = PretrainingCorpus()
    train._add(np.frombuffer(("ACGTTGCAGT" * 300 + motif * 100).encode(), np.uint8), None, 1.0)
    held = PretrainingCorpus()
    held._add(np.frombuffer((motif * 40).encode(), np.uint8), None, 1.0)
    settings = {"eval_corpus": held, "model": TINY, "sequence_length": 64, "max_steps": 30,
                "batch_size": 8, "learning_rate": 5e-3, "warmup_steps": 5, "eval_steps": 10,
                "device": "cpu", "progress": False, "precision": "fp32"}  # fmt: skip
    whole = gl.tl.pretrain(train, output_dir=tmp_path / "whole", **settings)

    pretrain_killed_at(15, train, tmp_path / "killed", settings, monkeypatch)
    half = tmp_path / "killed" / "checkpoints" / "checkpoint-20"  # a save killed half-way
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"")
    with pytest.warns(UserWarning, match="checkpoint-20 is incomplete"):
        resumed = gl.tl.pretrain(train, output_dir=tmp_path / "killed", **settings)
    record = json.loads((resumed / "genlm_pretraining.json").read_text())
    assert record["resumed_from"].endswith("checkpoint-10")
    a = AutoModelForMaskedLM.from_pretrained(whole).state_dict()
    b = AutoModelForMaskedLM.from_pretrained(resumed).state_dict()
    for name, value in a.items():
        torch.testing.assert_close(b[name], value, rtol=1e-6, atol=1e-7, msg=name)


def test_pretrain_kmer_bert_with_variants(example, tmp_path):
    region = ["20:1500001-1520000"]
    corpus = PretrainingCorpus().add_fasta(example.fasta, regions=region)
    corpus.add_variant_windows(example.vcf, fasta=example.fasta, regions=region, width=64)
    held = PretrainingCorpus().add_variant_windows(
        example.vcf, fasta=example.fasta, regions=["20:1600001-1610000"], width=64
    )
    config = BertConfig(
        vocab_size=4**3 + 5, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=128,
    )  # fmt: skip
    out = gl.tl.pretrain(
        corpus, eval_corpus=held, output_dir=tmp_path / "bert", tokenizer="kmer", k=3,
        model=config, sequence_length=64, max_steps=4, batch_size=4, eval_steps=4,
        variant_mlm_probability=0.5, device="cpu", progress=False, genome_build="GRCh37",
    )  # fmt: skip
    record = json.loads((out / "genlm_pretraining.json").read_text())
    assert {s["kind"] for s in record["corpus"]} == {"reference", "variant_windows"}
    assert "eval_variants_accuracy" in record["metrics"]
    assert record["genome_build"] == "GRCh37" and record["variant_mlm_probability"] == 0.5
    assert type(AutoModelForMaskedLM.from_pretrained(out)).__name__ == "BertForMaskedLM"
    assert load_tokenizer(out).tokenize("ACGTA") == ["ACG", "CGT", "GTA"]
