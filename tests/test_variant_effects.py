"""Variant effects: zero-shot likelihood ratios, predicted expression changes, eQTL join."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

import genlm_sc as gl
from genlm_sc._dna import BASES
from genlm_sc.tl.attribution.scorer_loading import load_scorer
from published_layouts import LAYOUTS
from test_embed import conv_checkpoint, third_party_checkpoint
from test_finetune import regressor

torch.set_num_threads(1)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
EQTL = SHARED / "eqtl" / "GTEx_v8_Cells_EBV-transformed_lymphocytes.v8.egenes.txt.gz"
SEQUENCE = "".join(np.random.default_rng(1).choice(list(BASES), 40))
COMPLEMENT = str.maketrans("ACGT", "TGCA")


def log_probs(network, tokenizer, ids):
    with torch.inference_mode():
        logits = network(input_ids=torch.tensor([ids])).logits[0]
    return torch.log_softmax(logits.double(), -1).numpy()


@pytest.mark.parametrize("style", ["conv", "dnabert"])
def test_masked_and_one_pass_llr_equal_a_plain_forward_pass(tmp_path, style):
    if style == "conv":
        folder = conv_checkpoint(tmp_path / "m")
    else:
        folder = third_party_checkpoint(tmp_path / "m", style)[0]
    scorer = load_scorer(folder, target="mlm", device="cpu")
    network, tokenizer = scorer.network, scorer.tokenizer
    k = 1 if style == "conv" else 3
    ids = tokenizer(SEQUENCE)["input_ids"]
    head = int(tokenizer.cls_token_id is not None)
    vocab = tokenizer.get_vocab()
    one_pass = scorer.one_pass_llr(SEQUENCE)
    masked = scorer.masked_llr(SEQUENCE, [0, 17, 39])
    plain = log_probs(network, tokenizer, ids)
    for row, position in enumerate([0, 17, 39]):
        tokens = [t for t in range(len(SEQUENCE) - k + 1) if t <= position < t + k]
        hidden = list(ids)
        for t in tokens:
            hidden[head + t] = tokenizer.mask_token_id
        blind = log_probs(network, tokenizer, hidden)
        for b, letter in enumerate(BASES):
            mutant = SEQUENCE[:position] + letter + SEQUENCE[position + 1 :]
            gain_masked = gain_plain = 0.0
            for t in tokens:
                new, old = vocab[mutant[t : t + k]], vocab[SEQUENCE[t : t + k]]
                gain_masked += blind[head + t, new] - blind[head + t, old]
                gain_plain += plain[head + t, new] - plain[head + t, old]
            assert masked[row, b] == pytest.approx(gain_masked, abs=1e-4)
            assert one_pass[position, b] == pytest.approx(gain_plain, abs=1e-4)


@pytest.fixture(scope="module")
def effects(tmp_path_factory):
    root = tmp_path_factory.mktemp("effects")
    cohort = gl.datasets.example_cohort(width=200)
    folder = conv_checkpoint(root / "m")
    model = regressor(folder, strategy="prune").eval()
    ds = gl.get.haplotype_store(cohort)
    per_gene = np.bincount(ds["variant_gene"].values, minlength=cohort.n_vars)
    strands = cohort.var["strand"].to_numpy()
    genes = {}
    for strand in "+-":  # the gene of each strand with most variants
        picks = np.flatnonzero(strands == strand)
        genes[strand] = cohort.var_names[picks[np.argmax(per_gene[picks])]]
    tables = {}
    for strand, gene in genes.items():
        gl.tl.variant_effects(cohort, gene=gene, model=folder, expression_model=model, device="cpu")
        tables[strand] = gl.get.variant_effects(cohort, gene)
    return cohort, folder, model, genes, tables


def test_every_variant_allele_gets_a_row_with_its_frequency(effects):
    cohort, _, _, genes, tables = effects
    ds = gl.get.haplotype_store(cohort)
    for strand, gene in genes.items():
        table = tables[strand]
        g = list(ds["gene"].values).index(gene)
        rows = np.flatnonzero(ds["variant_gene"].values == g)
        n_alleles = sum(len(str(a).split(",")) for a in ds["variant_alt"].values[rows])
        assert len(table) == n_alleles > 0
        first = table.iloc[0]
        j = rows[0]
        calls = ds["genotype"].values[:, j, :]
        assert first["alt_frequency"] == pytest.approx((calls == 1).sum() / (calls >= 0).sum())
        assert first["n_carriers"] == int((calls == 1).any(axis=1).sum())
        snv = table["kind"] == "snv"
        assert np.isfinite(table.loc[snv, ["llr_masked", "llr_one_pass"]]).all().all()
        assert table.loc[~snv, "llr_masked"].isna().all()
        assert np.isfinite(table[["embedding_shift", "delta_expression"]]).all().all()
        assert cohort.uns["gl_variant_effects"][gene] is table


def test_expression_changes_equal_predictions_of_edited_windows(effects):
    cohort, _, model, genes, tables = effects
    for strand, gene in genes.items():
        table = tables[strand]
        row = table[table["kind"] == "snv"].iloc[0]
        window = cohort.var.loc[gene]
        reference = gl.get.sequences(cohort[:, [gene]])[gene]
        forward = reference if strand == "+" else reference.translate(COMPLEMENT)[::-1]
        at = row["position"] - window["start"]
        assert forward[at] == row["ref"]
        edited = forward[:at] + row["alt"] + forward[at + 1 :]
        if strand == "-":
            edited = edited.translate(COMPLEMENT)[::-1]
        before, after = gl.tl.predict(model, [reference, edited])
        assert row["delta_expression"] == pytest.approx((after - before) / 2, rel=1e-3, abs=1e-6)

        # carriers' own haplotypes: turn the ALT base back into REF and predict both
        haplotypes = gl.get.unique_haplotypes(cohort, gene)
        coords = gl.get.reference_positions(cohort, gene).values
        alt = row["alt"] if strand == "+" else row["alt"].translate(COMPLEMENT)
        ref = row["ref"] if strand == "+" else row["ref"].translate(COMPLEMENT)
        effects_, weights = [], []
        for i, (_, entry) in enumerate(haplotypes.iterrows()):
            hit = np.flatnonzero(coords[i, : entry["length"]] == row["position"])
            if len(hit) and entry["sequence"][hit[0]] == alt:
                restored = entry["sequence"][: hit[0]] + ref + entry["sequence"][hit[0] + 1 :]
                mine, theirs = gl.tl.predict(model, [entry["sequence"], restored])
                effects_.append((mine - theirs) / 2)
                weights.append(entry["count"])
        expected = np.average(effects_, weights=weights)
        assert row["delta_expression_carriers"] == pytest.approx(expected, rel=1e-3, abs=1e-6)


def test_llr_is_averaged_over_both_strands(effects):
    cohort, folder, _, genes, tables = effects
    gene = genes["+"]
    row = tables["+"][tables["+"]["kind"] == "snv"].iloc[0]
    reference = gl.get.sequences(cohort[:, [gene]])[gene]
    at = row["position"] - cohort.var.loc[gene, "start"]
    scorer = load_scorer(folder, target="mlm", device="cpu")
    plus = scorer.one_pass_llr(reference)[at, BASES.index(row["alt"])]
    flipped = reference.translate(COMPLEMENT)[::-1]
    minus = scorer.one_pass_llr(flipped)[len(reference) - 1 - at,
                                         BASES.index(row["alt"].translate(COMPLEMENT))]  # fmt: skip
    assert row["llr_one_pass"] == pytest.approx((plus + minus) / 2, abs=1e-6)


def test_eqtls_join_by_rsid_with_alleles_turned_to_ours(effects):
    cohort, _, model, genes, tables = effects
    gene = genes["+"]
    table = tables["+"]
    first, second = table.iloc[0], table.iloc[1]
    name = cohort.var.loc[gene, "gene_name"]
    eqtl = pd.DataFrame(
        {
            "rsid": [first["variant_id"], second["variant_id"], "rs0"],
            "gene_id": ["ENSGX", gene.split(".")[0] + ".99", "ENSGY"],
            "gene_name": [name, "other", "x"],
            "chrom": ["chr20"] * 3,
            "position": [0, 0, 0],
            "ref": [first["ref"], second["alt"], "A"],
            "alt": [first["alt"], second["ref"], "C"],
            "slope": [0.5, 0.5, 1.0],
            "qval": [0.01, 0.02, 0.5],
        }
    )
    gl.tl.variant_effects(cohort, gene=gene, expression_model=model, eqtl=eqtl,
                                   device="cpu")  # fmt: skip
    joined = gl.get.variant_effects(cohort, gene)
    assert joined["eqtl_slope"].iloc[0] == 0.5 and joined["eqtl_slope"].iloc[1] == -0.5
    assert joined["eqtl_slope"].iloc[2:].isna().all()
    for i in (0, 1):  # matched by gene name, then by unversioned gene id
        expected = np.sign(joined["delta_expression"].iloc[i]) == np.sign(
            joined["eqtl_slope"].iloc[i]
        )
        assert joined["sign_agreement"].iloc[i] == expected
    assert joined["sign_agreement"].iloc[2:].isna().all()
    assert "llr_masked" not in joined  # no masked LM given


def test_a_window_without_variants_gives_an_empty_table_with_every_column(effects):
    cohort, folder, model, _, tables = effects
    per_gene = np.bincount(gl.get.haplotype_store(cohort)["variant_gene"].values,
                           minlength=cohort.n_vars)  # fmt: skip
    empty = cohort.var_names[np.flatnonzero(per_gene == 0)[0]]
    key = "effects_without_variants"
    eqtl = EQTL if EQTL.exists() else None
    gl.tl.variant_effects(cohort, gene=empty, model=folder, expression_model=model, eqtl=eqtl,
                          device="cpu", key_added=key)  # fmt: skip
    table = gl.get.variant_effects(cohort, empty, key=key)
    assert len(table) == 0
    columns = list(tables["+"].columns)
    if EQTL.exists():
        columns += ["eqtl_gene", "eqtl_slope", "eqtl_qval", "eqtl_other_genes", "sign_agreement"]
    assert list(table.columns) == columns


def test_variant_effects_needs_a_model(effects):
    cohort, *_ = effects
    with pytest.raises(ValueError, match="model"):
        gl.tl.variant_effects(cohort, gene=cohort.var_names[0])


def test_read_eqtl_refuses_a_table_without_slopes(tmp_path):
    path = tmp_path / "eqtl.txt"
    path.write_text("rsid\tref\talt\nrs1\tA\tC\n")
    with pytest.raises(gl.io.InputFileError, match=r"eqtl.txt.*slope"):
        gl.io.read_eqtl(path)
    path.write_text("rsid\tref\talt\tslope\nrs1\tA\tC\tbig\n")
    with pytest.raises(gl.io.InputFileError, match=r"rs1.*not a number"):
        gl.io.read_eqtl(path)


@pytest.mark.shared_data
@pytest.mark.skipif(not EQTL.exists(), reason="../shared/data is absent")
def test_read_eqtl_reads_gtex_egenes():
    table = gl.io.read_eqtl(EQTL)
    assert len(table) > 20_000
    assert table["rsid"].str.startswith("rs").all()
    row = table[table["gene_name"] == "C20orf96"].iloc[0]
    assert (row["rsid"], row["position"], row["ref"], row["alt"]) == ("rs6082066", 284723, "A", "G")
    assert row["slope"] == pytest.approx(0.40704)


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """The example cohort in 4,096-bp windows (neighbouring windows share variants)."""
    folder = conv_checkpoint(tmp_path_factory.mktemp("wide") / "m")
    return gl.datasets.example_cohort(width=4096), folder


def test_a_variant_that_is_an_eqtl_of_two_genes_keeps_each_genes_slope(wide):
    cohort, folder = wide
    ds = gl.get.haplotype_store(cohort)
    genes = ds["gene"].values[ds["variant_gene"].values]
    ids = pd.Series(genes).groupby(ds["variant_id"].values).agg(set)
    shared = ids[ids.map(len) == 2].index[0]  # in the windows of two neighbouring genes
    first, second = sorted(ids[shared])
    v = int(np.flatnonzero(ds["variant_id"].values == shared)[0])
    ref, alt = str(ds["variant_ref"].values[v]), str(ds["variant_alt"].values[v])
    name = cohort.var["gene_name"]
    eqtl = pd.DataFrame(
        {
            "rsid": [shared] * 4,
            "gene_id": [second.split(".")[0] + ".9", first, first, "ENSG00000000001.1"],
            "gene_name": [name[second], name[first], name[first], "ELSEWHERE"],
            "chrom": ["chr20"] * 4,
            "position": [0] * 4,
            "ref": [alt, ref, ref, ref],  # the second gene's row has REF and ALT swapped
            "alt": [ref, alt, alt, alt],
            "slope": [-0.7, 0.3, 9.0, 5.0],
            "qval": [0.01, 0.02, 0.4, 0.001],  # the first gene's 9.0 is its weaker row
        }
    )
    slopes = {}
    for gene in (first, second):
        gl.tl.variant_effects(cohort, gene=gene, model=folder, eqtl=eqtl, device="cpu")
        table = gl.get.variant_effects(cohort, gene).set_index("variant_id")
        row = table.loc[shared]
        slopes[gene] = row["eqtl_slope"]
        assert row["eqtl_gene"] == name[gene]
        others = {name[first], name[second], "ELSEWHERE"} - {name[gene]}
        assert set(row["eqtl_other_genes"].split(",")) == others
        assert table.drop(index=shared)["eqtl_slope"].isna().all()
    assert slopes == {first: 0.3, second: 0.7}


@pytest.mark.shared_data
@pytest.mark.skipif(not EQTL.exists(), reason="../shared/data is absent")
def test_real_gtex_eqtls_join_the_example_variants(wide):
    cohort, folder = wide
    for gene in ("ENSG00000229728.1", "ENSG00000125775.10"):  # RP11-314N13.3, SDCBP2
        gl.tl.variant_effects(cohort, gene=gene, model=folder, eqtl=EQTL, device="cpu")
    # rs6078809 is SDCBP2-AS1's lead variant, in the window of RP11-314N13.3
    table = gl.get.variant_effects(cohort, "ENSG00000229728.1")
    assert table["eqtl_slope"].isna().all()  # this gene's own lead variant is far away
    named = table[table["eqtl_other_genes"].notna()]
    assert named["variant_id"].tolist() == ["rs6078809"]
    assert named["eqtl_other_genes"].item() == "SDCBP2-AS1"
    # SDCBP2's lead, rs912118 (A>G, slope -0.231), is 4,161 bp from its TSS: not in the
    # 4,096-bp window, so the table holds no SDCBP2 eQTL either
    assert gl.get.variant_effects(cohort, "ENSG00000125775.10")["eqtl_slope"].isna().all()


@pytest.mark.parametrize("style", sorted(LAYOUTS))
def test_published_layouts_score_variants_through_the_same_path(tmp_path, style):
    cohort = gl.datasets.example_cohort(width=64)
    ds = gl.get.haplotype_store(cohort)
    counts = np.bincount(ds["variant_gene"].values, minlength=cohort.n_vars)
    gene = cohort.var_names[int(np.argmax(counts))]
    folder = LAYOUTS[style](tmp_path / style)
    gl.tl.variant_effects(cohort, gene=gene, model=folder, device="cpu")
    table = gl.get.variant_effects(cohort, gene)
    snv = table["kind"] == "snv"
    assert snv.sum() > 0
    assert np.isfinite(table["embedding_shift"]).all() and (table["embedding_shift"] > 0).all()
    llr = table.loc[snv, ["llr_masked", "llr_one_pass"]].to_numpy()
    if style == "bpe_bert":  # a substitution can move BPE token boundaries: not defined
        assert np.isnan(llr).all()
    else:
        assert np.isfinite(llr).all() and (np.abs(llr) > 0).all()


def test_gpn_zero_shot_llr_equals_gpns_own_recipe(tmp_path):
    """GPN's ``run_vep``: the variant masked at the centre of a window on each strand,
    logit(ALT) - logit(REF) there, averaged over the two strands."""
    folder = LAYOUTS["gpn"](tmp_path / "gpn")
    rng = np.random.default_rng(5)
    window = "".join(rng.choice(list(BASES), 101))
    at = 50
    tokenizer = AutoTokenizer.from_pretrained(folder)
    network = AutoModelForMaskedLM.from_pretrained(folder).eval()
    scorer = load_scorer(folder, target="mlm", device="cpu")
    complement = str.maketrans("ACGT", "TGCA")
    flipped = window.translate(complement)[::-1]
    for alt in sorted(set(BASES) - {window[at]}):
        llrs = []
        for seq, ref, new in ((window, window[at], alt),
                              (flipped, window[at].translate(complement),
                               alt.translate(complement))):  # fmt: skip
            masked = seq[:at] + tokenizer.mask_token + seq[at + 1 :]
            ids = torch.tensor([tokenizer(masked)["input_ids"]])
            with torch.inference_mode():
                logits = network(input_ids=ids).logits[0, at]
            vocab = tokenizer.get_vocab()
            llrs.append(float(logits[vocab[new.lower()]] - logits[vocab[ref.lower()]]))
        ours = (
            scorer.masked_llr(window, [at])[0, BASES.index(alt)]
            + scorer.masked_llr(flipped, [at])[0, BASES.index(alt.translate(complement))]
        )
        assert ours / 2 == pytest.approx(np.mean(llrs), abs=1e-5)  # fmt: skip
