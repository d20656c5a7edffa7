"""Masked-LM pretraining of DNA language models with :class:`transformers.Trainer`."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..._devices import resolve_device, resolve_precision, without_denormals
from ..._distributed import main_process_writes
from ..._quiet import quiet_transformers
from ...models.record import RECORD_FILE

__all__ = ["pretrain"]


def pretrain(
    corpus: Any,
    *,
    output_dir: str | os.PathLike,
    eval_corpus: Any = None,
    tokenizer: Any = "char",
    k: int = 6,
    vocab_size: int = 4096,
    model: Any = None,
    sequence_length: int = 512,
    max_steps: int = 400,
    batch_size: int = 16,
    learning_rate: float = 2e-3,
    warmup_steps: int = 100,
    weight_decay: float = 0.01,
    mlm_probability: float = 0.15,
    variant_mlm_probability: float | None = None,
    auxiliary: Mapping[str, float] | None = None,
    eval_steps: int = 100,
    eval_examples: int = 256,
    save_steps: int | None = None,
    random_state: int = 0,
    device: str = "auto",
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto",
    resume: bool = True,
    genome_build: str | None = None,
    progress: bool = True,
) -> Path:
    """Pretrain a masked DNA language model and save it as a Hugging Face checkpoint.

    Parameters
    ----------
    corpus
        A :class:`~genlm_sc.pp.PretrainingCorpus` (reference sequence, and for a
        variant-aware model variant-centred windows and/or real haplotypes), or the path
        of a FASTA whose records are all used.
    output_dir
        Where the model, tokenizer, ``genlm_pretraining.json`` (corpus, variant recipe,
        seeds, metrics) and ``checkpoints/`` go. An existing run there is resumed from its
        last checkpoint when ``resume`` is true.
    eval_corpus
        Held-out sequence (a corpus, e.g. another region and held-out people). Default:
        :meth:`~genlm_sc.pp.PretrainingCorpus.hold_out`, every 20th group of corpus
        sequences that share 200 bases (either strand), so that no held-out sequence
        repeats a stretch of a training one, or the last tenth of each sequence when there
        are fewer than 20 groups. With variant masks it also yields the metrics at variant
        positions (``eval_variants_*``).
    tokenizer
        ``"char"``, ``"kmer"``, ``"nt_kmer"``, ``"bpe"`` (trained on the corpus with
        ``vocab_size``), a tokenizer object, or a directory holding one.
    k, vocab_size
        For k-mer and BPE tokenizers.
    model
        ``None`` (the default :class:`~genlm_sc.models.GenlmConvConfig`: 8 dilated
        convolution blocks of 128 channels, 1.7 M parameters), a ``dict`` of
        ``GenlmConvConfig`` options, any :class:`~transformers.PretrainedConfig` with a
        masked-LM head (e.g. ``BertConfig``), or a checkpoint directory to continue from.
    sequence_length
        Bases per training example (tokens are capped accordingly).
    max_steps, batch_size, learning_rate, warmup_steps, weight_decay
        Optimisation (AdamW, linear warm-up then cosine decay). ``batch_size`` is per
        process: a run of ``N`` processes (``torchrun``) trains on batches of
        ``N * batch_size`` examples.
    mlm_probability, variant_mlm_probability
        Masking rate, and the rate at tokens covering a variant (``None``: the same).
    auxiliary
        Multi-task pretraining (LOGO): label name → loss weight, for labels attached to
        the corpus (:attr:`~genlm_sc.pp.PretrainingCorpus.labels`: per-sequence ones from
        ``add_fasta(labels=...)``, per-base ones from
        :meth:`~genlm_sc.pp.PretrainingCorpus.label_bases`). Each gets a linear head on
        the encoder's last token states (pooled over the sequence for a per-sequence
        label), trained on the same masked input as the masked LM; the loss is the
        masked-LM loss plus the weighted auxiliary losses
        (:class:`~genlm_sc.models.MultiTaskMaskedLM`). The number of classes is the
        largest label + 1. The heads are saved next to the model and ignored when it is
        loaded as a masked LM or for embedding. Held-out metrics add ``mlm_loss`` (the
        masked-LM part of the loss; perplexity and bits are computed from it under the
        names a run without targets uses) and each target's ``<name>_loss`` and
        ``<name>_accuracy``.
    eval_steps, eval_examples
        Evaluate every ``eval_steps`` steps on up to ``eval_examples`` held-out windows.
    save_steps
        Checkpoint interval (default ``eval_steps``); the last two are kept.
    random_state
        Seeds model initialisation, example order and masking.
    device
        ``"auto"`` (CUDA, then Apple MPS, then CPU), ``"cpu"``, ``"cuda"``. Several GPUs,
        CPU processes or nodes: launch the script with ``torchrun --nproc_per_node N``;
        the Trainer runs data-parallel (DDP) and the weights equal those of one process
        with an ``N`` times larger ``batch_size`` (same crops, masks and mean loss over
        the masked tokens of the global batch; see the scaling guide). Only the main
        process writes files; resuming needs as many processes as the checkpoint's run.
    precision
        ``"auto"``: bf16 on GPUs that have it (fp16 on older ones), bf16 on CPUs with AMX
        or AVX-512 BF16, else fp32.
    resume
        Continue from the newest complete checkpoint in ``output_dir/checkpoints``, exactly
        as the uninterrupted run would have gone on (model, optimiser, schedule, data order
        and masks). A run with other settings (corpus, tokenizer, model, schedule, ...) is
        refused, naming what changed; ``resume=False`` starts afresh there.
    genome_build
        Recorded with the data parameters (e.g. ``"GRCh37"``).
    progress
        Show the progress bar and metrics.

    Returns
    -------
    The output directory, loadable with ``AutoModelForMaskedLM.from_pretrained`` (after
    ``import genlm_sc.models``) and by :func:`genlm_sc.tl.embed`. Final held-out metrics
    (loss, perplexity, masked-token accuracy, bits per token; bits per base for
    single-nucleotide tokens) are in ``genlm_pretraining.json``.
    """
    import torch
    from transformers import set_seed

    from ...models.masking import DnaMaskingCollator
    from ...models.multitask import PREFIX, MultiTaskMaskedLM
    from ...pp.corpus import PretrainingCorpus
    from ...pp.examples import CropDataset, tile_sequences
    from ..training import quiet_progress, quiet_trainer, resume_point, training_arguments

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    set_seed(random_state)
    if not isinstance(corpus, PretrainingCorpus):
        corpus = PretrainingCorpus().add_fasta(corpus)
    if eval_corpus is None:
        corpus, eval_corpus = corpus.hold_out()
    tokenizer = _tokenizer(tokenizer, corpus, k=k, vocab_size=vocab_size)
    tokenizer.model_max_length = max(tokenizer.model_max_length or 0, sequence_length + 2)
    mlm = _model(model, tokenizer)
    targets = _auxiliary_targets(auxiliary, corpus, eval_corpus)
    trained = MultiTaskMaskedLM(mlm, targets) if targets else mlm
    max_tokens = sequence_length + 2

    held_out = tile_sequences(eval_corpus, length=sequence_length)
    picks = np.random.default_rng(random_state).permutation(len(held_out))[:eval_examples]
    eval_sets = {"heldout": [held_out[i] for i in np.sort(picks)]}
    with_variants = [t for t in held_out if t["variant"] is not None and t["variant"].any()]
    if with_variants:
        eval_sets["variants"] = with_variants[:eval_examples]
    collator = DnaMaskingCollator(
        tokenizer,
        max_length=max_tokens,
        mlm_probability=mlm_probability,
        variant_mlm_probability=variant_mlm_probability,
        random_state=random_state,
        targets=targets,
    )
    eval_collators = {
        "heldout": DnaMaskingCollator(
            tokenizer, max_length=max_tokens, mlm_probability=mlm_probability,
            random_state=random_state + 1, targets=targets,
        ),
        "variants": DnaMaskingCollator(
            tokenizer, max_length=max_tokens, random_state=random_state + 1, only_variants=True,
            targets=targets,
        ),
    }  # fmt: skip

    resolved = resolve_device(device)
    dtype = resolve_precision(precision, resolved)
    args = training_arguments(
        output_dir / "checkpoints", batch_size=batch_size, eval_batch_size=batch_size,
        learning_rate=learning_rate, random_state=random_state, precision=dtype,
        device=resolved, progress=progress, max_steps=max_steps, weight_decay=weight_decay,
        warmup_steps=warmup_steps, scheduler="cosine", evaluate=True, eval_steps=eval_steps,
        save_steps=save_steps or eval_steps, save_total_limit=2,
        logging_steps=max(min(eval_steps // 5, 50), 1), include_for_metrics=[],
        label_names=["labels", *(PREFIX + t.name for t in targets)],
    )  # fmt: skip
    # ``batch_size`` examples per process and step; item i is the same crop whatever the count
    processes = args.world_size
    train_set = CropDataset(
        corpus, length=sequence_length, n_examples=max_steps * batch_size * processes,
        random_state=random_state,
    )  # fmt: skip
    trainer = _trainer_class()(
        model=trained,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_sets,
        data_collator=collator,
        eval_collators=eval_collators,
        compute_metrics=lambda prediction: _metrics(prediction, targets),
        preprocess_logits_for_metrics=lambda logits, labels: _reduce(logits, targets),
    )
    quiet_progress(trainer, progress)
    settings = {
        "corpus": corpus.description(), "eval_corpus": eval_corpus.description(),
        "tokenizer": _tokenizer_record(tokenizer), "model": mlm.config.to_dict(),
        "sequence_length": sequence_length, "max_steps": max_steps, "batch_size": batch_size,
        "learning_rate": learning_rate, "warmup_steps": warmup_steps,
        "weight_decay": weight_decay, "mlm_probability": mlm_probability,
        "variant_mlm_probability": variant_mlm_probability, "random_state": random_state,
        "eval_steps": eval_steps, "eval_examples": eval_examples, "precision": dtype,
        "auxiliary": [vars(t) for t in targets],
    }  # fmt: skip
    for volatile in ("transformers_version", "_name_or_path"):
        settings["model"].pop(volatile, None)
    checkpoint = resume_point(output_dir / "checkpoints", settings, resume=resume)
    with quiet_transformers(not progress), quiet_trainer():
        without_denormals(  # denormals slow CPU training steps
            lambda: trainer.train(resume_from_checkpoint=checkpoint), device=resolved
        )
        metrics = _final_metrics(trainer.evaluate(), tokenizer, targets)
        trainer.save_model(os.fspath(output_dir))  # by the main process
    record = {
        "genome_build": genome_build,
        "corpus": corpus.description(),
        "eval_corpus": eval_corpus.description(),
        "tokenizer": _tokenizer_record(tokenizer),
        "random_state": random_state,
        "sequence_length": sequence_length,
        "mlm_probability": mlm_probability,
        "variant_mlm_probability": variant_mlm_probability,
        "auxiliary": [vars(t) for t in targets],
        "max_steps": max_steps,
        "batch_size": batch_size,
        "processes": processes,
        "learning_rate": learning_rate,
        "device": resolved,
        "precision": dtype,
        "n_parameters": int(sum(p.numel() for p in mlm.parameters())),
        "torch": torch.__version__,
        "metrics": metrics,
        "resumed_from": checkpoint,
        "log_history": trainer.state.log_history,
    }

    def write() -> None:
        tokenizer.save_pretrained(os.fspath(output_dir))
        (output_dir / RECORD_FILE).write_text(json.dumps(record, indent=2, default=str))

    main_process_writes(write)
    return output_dir


def _trainer_class():
    """A Trainer subclass, defined on first use (importing transformers is slow)."""
    import torch
    from transformers import Trainer

    class DnaTrainer(Trainer):
        """A Trainer with one data collator per evaluation set, which saves and resumes a
        multi-task model as a masked-LM checkpoint plus its auxiliary heads.

        Its losses are sums over scored tokens divided by their number in the global batch
        (every process and accumulation step; for each label key, so that auxiliary targets
        are averaged over their own labels), times the number of processes, whose average
        the gradients are: the mean over the global batch, whatever the masks put on each
        process. The masked-LM loss is computed here from the logits, for any masked LM.
        """

        def _get_num_items_in_batch(self, batch_samples, device):
            if not batch_samples or "labels" not in batch_samples[0]:
                return None
            keys = [k for k in self.label_names if k in batch_samples[0]]
            counts = torch.stack(
                [sum(b[k].ne(-100).sum() for b in batch_samples) for k in keys]
            ).to(device)
            if self.args.average_tokens_across_devices and self.args.world_size > 1:
                counts = self.accelerator.reduce(counts, reduction="sum")
            return dict(zip(keys, counts, strict=True))

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            from ...models.losses import token_loss
            from ...models.multitask import MultiTaskMaskedLM

            counts = num_items_in_batch
            if counts is not None and not isinstance(counts, Mapping):
                counts = {"labels": counts}
            if isinstance(self.accelerator.unwrap_model(model), MultiTaskMaskedLM):
                outputs = model(**inputs, num_items_in_batch=counts)
                loss = outputs["loss"]
            else:
                outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
                count = None if counts is None else counts["labels"]
                loss = token_loss(outputs.logits, inputs["labels"], count)
            if counts is not None and self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes
            return (loss, outputs) if return_outputs else loss

        def _save(self, output_dir=None, state_dict=None):
            from ...models.multitask import MultiTaskMaskedLM

            if not isinstance(self.model, MultiTaskMaskedLM):
                return super()._save(output_dir, state_dict=state_dict)
            output_dir = output_dir or self.args.output_dir
            if self.args.should_save:
                self.model.save_pretrained(output_dir)

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            from ...models.multitask import MultiTaskMaskedLM

            model = model or self.model
            if not isinstance(model, MultiTaskMaskedLM):
                return super()._load_from_checkpoint(resume_from_checkpoint, model=model)
            saved = MultiTaskMaskedLM.from_pretrained(resume_from_checkpoint)
            model.load_state_dict(saved.state_dict())

        def __init__(self, *args, eval_collators: dict[str, Any], **kwargs):
            super().__init__(*args, **kwargs)
            self._eval_collators = eval_collators
            self.model_accepts_loss_kwargs = True  # compute_loss takes the counts

        def get_eval_dataloader(self, eval_dataset=None):
            name = eval_dataset if isinstance(eval_dataset, str) else None
            collator = self._eval_collators.get(name) if name else None
            if collator is None:
                return super().get_eval_dataloader(eval_dataset)
            training_collator = self.data_collator
            self.data_collator = collator
            try:
                return super().get_eval_dataloader(eval_dataset)
            finally:
                self.data_collator = training_collator

    return DnaTrainer


def _tokenizer(tokenizer: Any, corpus, *, k: int, vocab_size: int):
    from ...models import build_tokenizer, load_tokenizer

    if isinstance(tokenizer, str) and tokenizer in ("char", "kmer", "nt_kmer", "bpe"):
        sample = corpus.sequences[:: max(len(corpus) // 2000, 1)]
        return build_tokenizer(tokenizer, k=k, corpus=sample, vocab_size=vocab_size)
    if isinstance(tokenizer, str | os.PathLike):
        return load_tokenizer(tokenizer)
    return tokenizer


def _model(model: Any, tokenizer):
    from transformers import AutoModelForMaskedLM, PretrainedConfig

    from ...models import GenlmConvConfig

    if isinstance(model, str | os.PathLike):
        from ...models.loading import from_local

        return from_local(AutoModelForMaskedLM, model)
    if model is None or isinstance(model, dict):
        options = {"hidden_size": 128, "num_conv_layers": 8, **(model or {})}
        model = GenlmConvConfig(vocab_size=len(tokenizer), **options)
    if not isinstance(model, PretrainedConfig):
        raise TypeError(f"model must be None, a dict, a config or a directory, not {type(model)}")
    if model.vocab_size < len(tokenizer):
        raise ValueError(
            f"the model's vocab_size {model.vocab_size} is smaller than the tokenizer's "
            f"{len(tokenizer)}"
        )
    model.pad_token_id = tokenizer.pad_token_id
    return AutoModelForMaskedLM.from_config(model)


def _auxiliary_targets(auxiliary: Mapping[str, float] | None, corpus, eval_corpus) -> list:
    """The corpus labels named in ``auxiliary`` as targets (level and classes from the data)."""
    from ...models.multitask import AuxiliaryTarget

    if not auxiliary:
        return []
    kinds = corpus.label_kinds()
    targets = []
    for name, weight in auxiliary.items():
        if name not in kinds:
            raise ValueError(
                f"auxiliary target {name!r} is not a label of the training corpus (labels: "
                f"{sorted(kinds) or 'none'}); attach it with add_fasta(labels=...) or "
                "label_bases"
            )
        largest = max(
            int(np.max(labels[name])) for part in (corpus, eval_corpus)
            for labels in part.labels if name in labels and np.size(labels[name])
        )  # fmt: skip
        targets.append(AuxiliaryTarget(name, kinds[name], max(largest + 1, 2), float(weight)))
    return targets


def _reduce(logits: Any, targets: list) -> Any:
    """What evaluation keeps of a batch's outputs: predicted classes and the losses."""
    if not targets:
        return logits.argmax(-1)
    keys = ["logits", "mlm_loss"]
    for target in targets:
        keys += [f"{target.name}_logits", f"{target.name}_loss"]
    named = dict(zip(keys, logits, strict=True))
    return tuple(v.argmax(-1) if k.endswith("logits") else v for k, v in named.items())


def _metrics(prediction, targets: list) -> dict[str, float]:
    """Masked-token accuracy; with targets also the masked-LM loss and each target's
    loss and accuracy."""

    def accuracy(predicted, labels) -> float:
        predicted, labels = np.asarray(predicted), np.asarray(labels)
        scored = labels != -100
        return float((predicted[scored] == labels[scored]).mean()) if scored.any() else 0.0

    if not targets:
        return {"accuracy": accuracy(prediction.predictions, prediction.label_ids)}
    outputs, labels = prediction.predictions, prediction.label_ids
    out = {"accuracy": accuracy(outputs[0], labels[0]), "mlm_loss": float(np.mean(outputs[1]))}
    for i, target in enumerate(targets):
        out[f"{target.name}_accuracy"] = accuracy(outputs[2 + 2 * i], labels[1 + i])
        out[f"{target.name}_loss"] = float(np.mean(outputs[3 + 2 * i]))
    return out


def _final_metrics(raw: dict[str, float], tokenizer, targets: list = ()) -> dict[str, float]:
    from ...models import tokenizer_info

    out = {}
    single_base = tokenizer_info(tokenizer)["kind"] == "char"
    # with targets the Trainer's loss is the total and the masked-LM part is ``mlm_loss``;
    # perplexity and bits come from the masked-LM part under the names of a plain run
    language_model_loss = "_mlm_loss" if targets else "_loss"
    for key, value in raw.items():
        out[key] = value
        if key.endswith(language_model_loss):
            stem = key[: -len(language_model_loss)]
            out[f"{stem}_perplexity"] = math.exp(value)
            out[f"{stem}_bits_per_token"] = value / math.log(2)
            if single_base:
                out[f"{stem}_bits_per_base"] = value / math.log(2)
    return out


def _tokenizer_record(tokenizer) -> dict[str, Any]:
    from ...models import tokenizer_info

    return {**tokenizer_info(tokenizer), "vocab_size": len(tokenizer)}
