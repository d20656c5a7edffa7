"""Fine-tuned language models as expression predictors: loss, adapters, pruning, folds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import genlm_sc as gl
from genlm_sc.models import load_encoder
from genlm_sc.models.heads import HaplotypeRegressor
from genlm_sc.tl.expression.features import dosage_source
from genlm_sc.tl.expression.finetune import FinetuneOptions, build_regressor, pairwise_loss
from published_layouts import LAYOUTS
from test_embed import conv_checkpoint, third_party_checkpoint

torch.set_num_threads(1)
PAIRS = [("ACGTACGTAC", "ACGTTCGTAC"), ("GGGTACGTAC", "ACGTACGTAA")]


def regressor(folder, **options) -> HaplotypeRegressor:
    parsed = FinetuneOptions.parse({"model": folder, "device": "cpu", **options})
    pretrained = load_encoder(folder, device="cpu", precision="fp32")
    return build_regressor(pretrained, parsed, y_mean=0.0, y_std=1.0)


def test_pairwise_loss_matches_a_hand_computation():
    pred = torch.tensor([1.0, 2.0, 4.0])
    target = torch.tensor([0.0, 3.0, 3.0])
    mse = (1 + 1 + 1) / 3
    pairwise = ((2**2) + 0**2 + (-2) ** 2) / 3  # pairs (0, 1), (0, 2), (1, 2)
    assert pairwise_loss(pred, target, 0.5).item() == pytest.approx(0.5 * mse + 0.5 * pairwise)
    assert pairwise_loss(pred, target, 0.0).item() == pytest.approx(mse)
    assert pairwise_loss(pred, target, 1.0).item() == pytest.approx(pairwise)
    one = pairwise_loss(pred[:1], target[:1], 0.5)
    assert one.item() == pytest.approx(0.5 * 1.0)  # no pairs in a batch of one


@pytest.mark.parametrize("style", ["conv", "bert"])
def test_lora_trains_only_adapters_and_head(tmp_path, style):
    if style == "conv":
        folder, targets = conv_checkpoint(tmp_path / "m"), ("ffn.0", "ffn.2")
    else:
        folder, targets = third_party_checkpoint(tmp_path / "m", "dnabert")[0], ("query", "value")
    model = regressor(folder, strategy="lora").train()
    model(PAIRS).sum().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert with_grad, "nothing is trained"
    assert all("lora_" in n or n.startswith("head.") for n in with_grad)
    assert {n for n, _ in model.named_parameters()} == with_grad | frozen
    assert any("embeddings" in n for n in frozen)
    for target in targets:  # every target module of this model type got an adapter
        assert any(f".{target}.lora_A" in n for n in with_grad), target


def test_prune_keeps_the_first_blocks_fully_trainable(tmp_path):
    conv = regressor(conv_checkpoint(tmp_path / "c", attention=1), strategy="prune", n_layers=2)
    assert len(conv.encoder.conv_layers) == 2 and len(conv.encoder.attention_layers) == 0
    assert conv.encoder.config.num_hidden_layers == 2
    one = regressor(conv_checkpoint(tmp_path / "c1", attention=1), strategy="prune", n_layers=1)
    assert len(one.encoder.conv_layers) == 1
    bert_folder = third_party_checkpoint(tmp_path / "b", "dnabert")[0]
    bert = regressor(bert_folder, strategy="prune", n_layers=1)
    assert len(bert.encoder.encoder.layer) == 1 and bert.encoder.config.num_hidden_layers == 1
    assert all(p.requires_grad for p in bert.parameters())

    bert.save_pretrained(tmp_path / "saved")  # reloads with exactly n blocks
    again = HaplotypeRegressor.from_pretrained(tmp_path / "saved", device="cpu")
    assert len(again.encoder.encoder.layer) == 1
    with pytest.raises(ValueError, match="n_layers=5"):
        regressor(bert_folder, strategy="prune", n_layers=5)


def test_pool_encodes_each_distinct_sequence_once_with_the_same_values_and_gradients(tmp_path):
    model = regressor(conv_checkpoint(tmp_path / "m"), strategy="prune").train()
    sequences = ["ACGTACGTAC", "GGGTACGTAC", "ACGTACGTAC", "ACGTACGTAC", "TTTTACGT"]
    seen = []
    hook = model.encoder.register_forward_hook(lambda m, i, kw: seen.append(kw))
    try:
        shared = model.pool(sequences)
    finally:
        hook.remove()
    assert seen[0].last_hidden_state.shape[0] == 3  # three distinct sequences, one pass
    one_by_one = torch.cat([model.pool([s]) for s in sequences])
    torch.testing.assert_close(shared, one_by_one)

    weights = torch.randn(shared.shape, generator=torch.Generator().manual_seed(0))
    (shared * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    (one_by_one * weights).sum().backward()
    for name, p in model.named_parameters():
        if name in grads:  # float32 sums in another order: equal up to rounding
            error = torch.linalg.vector_norm(grads[name] - p.grad)
            assert error <= 1e-4 * torch.linalg.vector_norm(p.grad) + 1e-6, name


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Expression = ALT count of one common SNP (+ noise); PrediXcan and LoRA fitted on it."""
    cohort = gl.datasets.example_cohort(width=128)
    dosages = dosage_source(cohort, window=10**6)
    best = (np.inf, None, None)
    for gene in cohort.var_names[:10]:
        x, _ = dosages(gene)
        if x.shape[1]:
            j = np.argmin(np.abs(x.mean(0) / 2 - 0.4))
            best = min(best, (abs(x[:, j].mean() / 2 - 0.4), gene, x[:, j]), key=lambda b: b[0])
    _, gene, dose = best
    expression = np.zeros(cohort.shape, dtype=np.float32)
    noise = np.random.default_rng(0).standard_normal(cohort.n_obs)
    expression[:, cohort.var_names.get_loc(gene)] = dose + 0.3 * noise
    cohort.X = expression

    root = tmp_path_factory.mktemp("finetune")
    gl.tl.fit_expression(cohort, method="predixcan", genes=[gene], n_folds=2)
    folds = cohort.obs["gl_fold"].to_numpy().copy()
    options = {"model": conv_checkpoint(root / "model"), "strategy": "lora", "epochs": 1,
               "batch_size": 16, "learning_rate": 1e-2, "device": "cpu", "random_state": 0,
               "output_dir": root / "fitted", "progress": False}  # fmt: skip
    gl.tl.fit_expression(
        cohort, method="finetune", genes=[gene], n_folds=2, finetune_options=options
    )
    table = gl.get.expression_results(cohort)
    return cohort, gene, folds, table, root / "fitted"


def test_finetune_learns_a_planted_variant_out_of_fold(planted):
    cohort, gene, _, table, _ = planted
    row = table[(table["method"] == "finetune") & (table["gene"] == gene)].iloc[0]
    assert row["r"] > 0.6  # mean - 3 SD over 10 seeds: 0.745 (results/finetune_seeds.csv)
    assert row["n_test"] == cohort.n_obs and row["n_folds"] == 2
    assert row["n_features"] == 32  # two mean-pooled haplotypes of a 16-wide encoder


def test_finetune_outputs_sit_next_to_the_other_methods_on_the_same_folds(planted):
    cohort, gene, folds, table, _ = planted
    np.testing.assert_array_equal(cohort.obs["gl_fold"].to_numpy(), folds)
    assert set(table.loc[table["gene"] == gene, "method"]) == {"predixcan", "finetune"}
    column = cohort.var_names.get_loc(gene)
    for key in ("predixcan", "finetune"):
        assert np.isfinite(cohort.layers[f"gl_pred_{key}"][:, column]).all()
        assert np.isfinite(
            cohort.var.loc[gene, [f"gl_{key}_r", f"gl_{key}_r2"]].astype(float)
        ).all()
    params = cohort.uns["gl_expression"]["params"]["finetune"]
    assert params["finetune"]["strategy"] == "lora" and params["use_rep"] == ""
    with pytest.raises(ValueError, match="finetune_options"):
        gl.tl.fit_expression(cohort, method="finetune", genes=[gene], n_folds=2)


def test_predict_reproduces_the_out_of_fold_predictions(planted):
    cohort, gene, folds, _, fitted = planted
    pairs = gl.get.haplotypes(cohort, gene).reindex(cohort.obs_names)
    layer = cohort.layers["gl_pred_finetune"][:, cohort.var_names.get_loc(gene)]
    for fold in (0, 1):
        people = folds == fold
        scored = gl.tl.predict(fitted / gene / f"fold_{fold}", pairs[people], device="cpu")
        np.testing.assert_allclose(scored, layer[people], rtol=1e-4, atol=1e-4)

    model = HaplotypeRegressor.from_pretrained(fitted / gene / "fold_0", device="cpu")
    sequence = pairs["haplotype_1"].iloc[0]
    single = gl.tl.predict(model, [sequence])
    np.testing.assert_allclose(single, gl.tl.predict(model, [(sequence, sequence)]))
    assert single.shape == (1,) and np.isfinite(single).all()


def test_refit_saves_a_model_fitted_on_everyone(tmp_path):
    cohort = gl.datasets.example_cohort(width=64)
    gene = cohort.var_names[0]
    cohort.X = np.random.default_rng(0).standard_normal(cohort.shape).astype(np.float32)
    options = {"model": conv_checkpoint(tmp_path / "m"), "strategy": "prune", "epochs": 1,
               "device": "cpu", "output_dir": tmp_path / "fitted", "refit": True,
               "progress": False}  # fmt: skip
    gl.tl.fit_expression(
        cohort, method="finetune", genes=[gene], n_folds=2, finetune_options=options
    )
    final = HaplotypeRegressor.from_pretrained(tmp_path / "fitted" / gene / "all", device="cpu")
    y = cohort[:, gene].X.ravel()
    assert final.y_mean == pytest.approx(float(y.mean()), rel=1e-5)  # scaled on everyone
    assert {p.name for p in (tmp_path / "fitted" / gene).iterdir()} == {"fold_0", "fold_1", "all"}
    with pytest.raises(ValueError, match="output_dir"):
        FinetuneOptions.parse({"model": tmp_path / "m", "refit": True})


class Interrupted(Exception):
    """Raised by :class:`StopAfterFirstSave` to simulate a killed run."""


def stop_after_first_save():
    from transformers import TrainerCallback

    class StopAfterFirstSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise Interrupted(f"stopped after the checkpoint of step {state.global_step}")

    return StopAfterFirstSave()


def step_recorder():
    from transformers import TrainerCallback

    class Steps(TrainerCallback):
        def __init__(self):
            self.seen = []

        def on_step_end(self, args, state, control, **kwargs):
            self.seen.append(state.global_step)

    return Steps()


def training_case(tmp_path):
    """A tiny regression task: 48 people, expression = count of a T at one position."""
    generator = np.random.default_rng(0)
    bases = np.array(list("ACGT"))
    pairs, target = [], []
    for _ in range(48):
        pair = tuple("".join(generator.choice(bases, 24)) for _ in range(2))
        pairs.append(pair)
        target.append(sum(h[5] == "T" for h in pair))
    target = np.asarray(target, dtype=np.float64)
    return pairs, (target - target.mean()) / target.std(), conv_checkpoint(tmp_path / "m")


def fitted_predictions(model, pairs):
    model.standardise_inputs(pairs, batch_size=16)
    return gl.tl.predict(model, pairs)


def test_training_resumes_from_its_last_checkpoint_as_if_never_stopped(tmp_path):
    from genlm_sc.tl.expression.finetune import train_regressor

    pairs, target, folder = training_case(tmp_path)
    settings = {"epochs": 3, "batch_size": 8, "learning_rate": 1e-2, "progress": False,
                "validation_fraction": 0.25, "strategy": "prune"}  # fmt: skip
    options = FinetuneOptions.parse({"model": folder, "device": "cpu", **settings})
    whole = train_regressor(regressor(folder, **settings), pairs, target, options,
                            checkpoints=tmp_path / "whole")  # fmt: skip
    expected = fitted_predictions(whole, pairs)

    with pytest.raises(Interrupted, match="step 5"):  # 36 training people: 5 steps an epoch
        stop = [stop_after_first_save()]
        train_regressor(regressor(folder, **settings), pairs, target, options,
                        checkpoints=tmp_path / "killed", callbacks=stop)  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == [
        "checkpoint-5",
        "genlm_run.json",
    ]
    changed = FinetuneOptions.parse({"model": folder, "device": "cpu", **settings,
                                     "learning_rate": 2e-2})  # fmt: skip
    with pytest.raises(ValueError, match=r"learning_rate: 0\.01 -> 0\.02"):
        train_regressor(regressor(folder, **settings), pairs, target, changed,
                        checkpoints=tmp_path / "killed")  # fmt: skip
    steps = step_recorder()
    resumed = train_regressor(regressor(folder, **settings), pairs, target, options,
                              checkpoints=tmp_path / "killed", callbacks=[steps])  # fmt: skip
    assert steps.seen[0] == 6  # it went on from the checkpoint of step 5
    np.testing.assert_allclose(fitted_predictions(resumed, pairs), expected, rtol=1e-5, atol=1e-6)
    fresh = FinetuneOptions.parse({"model": folder, "device": "cpu", **settings, "resume": False})
    restarted = train_regressor(regressor(folder, **settings), pairs, target, fresh,
                                checkpoints=tmp_path / "killed")  # fmt: skip
    np.testing.assert_allclose(fitted_predictions(restarted, pairs), expected, rtol=1e-5, atol=1e-6)


def test_early_stopping_keeps_the_best_validation_epoch(tmp_path):
    from genlm_sc.tl.expression.finetune import train_regressor

    pairs, target, folder = training_case(tmp_path)
    settings = {"epochs": 30, "batch_size": 8, "learning_rate": 5e-2, "progress": False,
                "validation_fraction": 0.25, "patience": 2, "strategy": "prune"}  # fmt: skip
    options = FinetuneOptions.parse({"model": folder, "device": "cpu", **settings})
    history = []

    from transformers import TrainerCallback

    class Record(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            history.append((state.global_step, metrics["eval_loss"]))

        def on_train_end(self, args, state, control, **kwargs):
            history.append(("best", state.best_global_step))

    train_regressor(regressor(folder, **settings), pairs, target, options,
                    checkpoints=tmp_path / "c", callbacks=[Record()])  # fmt: skip
    evaluations = history[:-1]
    assert len(evaluations) < 30  # stopped early
    losses = [loss for _, loss in evaluations]
    best = evaluations[int(np.argmin(losses))][0]
    assert history[-1] == ("best", best)
    assert all(loss >= min(losses) for loss in losses[-2:])  # patience 2: no improvement at the end
    with pytest.raises(ValueError, match="patience"):
        FinetuneOptions.parse({"model": folder, "patience": 2})


def test_fold_checkpoints_are_removed_once_the_fold_model_is_saved(tmp_path):
    cohort = gl.datasets.example_cohort(width=64)
    gene = cohort.var_names[0]
    cohort.X = np.random.default_rng(0).standard_normal(cohort.shape).astype(np.float32)
    options = {"model": conv_checkpoint(tmp_path / "m"), "strategy": "prune", "epochs": 1,
               "device": "cpu", "output_dir": tmp_path / "fitted", "progress": False}  # fmt: skip
    gl.tl.fit_expression(
        cohort, method="finetune", genes=[gene], n_folds=2, finetune_options=options
    )
    assert {p.name for p in (tmp_path / "fitted" / gene).iterdir()} == {"fold_0", "fold_1"}
    record = cohort.uns["gl_expression"]["params"]["finetune"]["finetune"]
    assert record["scheduler"] == "linear" and record["patience"] == -1


@pytest.mark.parametrize("style", sorted(LAYOUTS))
def test_published_layouts_fine_tune_and_predict_through_the_same_path(tmp_path, style):
    cohort = gl.datasets.example_cohort(width=64)
    gene = cohort.var_names[0]
    cohort.X = np.random.default_rng(0).standard_normal(cohort.shape).astype(np.float32)
    strategy = "lora" if style in ("dnabert", "bpe_bert") else "prune"
    options = {"model": LAYOUTS[style](tmp_path / style), "strategy": strategy, "epochs": 1,
               "batch_size": 64, "device": "cpu", "random_state": 0,
               "output_dir": tmp_path / "fitted", "progress": False}  # fmt: skip
    gl.tl.fit_expression(
        cohort, method="finetune", genes=[gene], n_folds=2, finetune_options=options
    )
    layer = cohort.layers["gl_pred_finetune"][:, 0]
    assert np.isfinite(layer).all() and layer.std() > 0
    pairs = gl.get.haplotypes(cohort, gene).reindex(cohort.obs_names)
    people = cohort.obs["gl_fold"].to_numpy() == 1
    scored = gl.tl.predict(tmp_path / "fitted" / gene / "fold_1", pairs[people], device="cpu")
    np.testing.assert_allclose(scored, layer[people], rtol=1e-4, atol=1e-4)
