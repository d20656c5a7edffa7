"""Every Hugging Face load of the package goes through here: local folders only, no code.

Models and tokenizers are never downloaded: a name that is not a folder fails at once with
an error that says so, rather than after transformers has tried the hub for a minute.
Checkpoints may come from strangers, so code that a checkpoint names in ``config.json``
(``auto_map``) runs only when the user passes ``trust_remote_code=True``; transformers is
always given an explicit answer, so it never asks on a terminal.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = [
    "CheckpointError",
    "check_tokenizer",
    "check_vocabulary",
    "from_local",
    "local_folder",
    "register_package_architecture",
    "require_tokenizer",
]


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as given: not a local folder, or needing code."""


def local_folder(path: str | os.PathLike, *, what: str = "model") -> str:
    """``path`` as a string when it is an existing folder; else a :class:`CheckpointError`.

    Parameters
    ----------
    path
        The folder a checkpoint was saved to (``save_pretrained``).
    what
        What the folder should hold, for the message.
    """
    text = os.fspath(path)
    if Path(text).is_dir():
        return text
    if Path(text).exists():
        problem = "is a file, not a checkpoint folder"
    else:
        problem = "does not exist"
    hint = ""
    if "/" in text.strip("/") and not text.startswith((".", "/", "~")) and text.count("/") == 1:
        hint = (
            f" ({text!r} looks like a model hub name: genlm_sc downloads nothing; download the "
            "checkpoint yourself, e.g. with `huggingface-cli download`, and pass its folder)"
        )
    raise CheckpointError(f"the {what} path {text} {problem}{hint}")


def from_local(loader: Any, path: str | os.PathLike, *, what: str = "model", **kwargs: Any) -> Any:
    """``loader.from_pretrained(path, ...)`` for a local folder, offline and without code.

    Parameters
    ----------
    loader
        A class with ``from_pretrained`` (``AutoModel``, ``AutoTokenizer``, ...).
    path
        The checkpoint folder.
    what
        What the folder should hold, for messages.
    **kwargs
        Passed to ``from_pretrained``; ``trust_remote_code`` defaults to ``False``.
    """
    folder = local_folder(path, what=what)
    register_package_architecture(folder, what=what)
    kwargs["local_files_only"] = True
    kwargs.setdefault("trust_remote_code", False)
    if not kwargs["trust_remote_code"]:
        named = _code_named_in(Path(folder))
        if named:
            raise CheckpointError(
                f"the {what} at {folder} needs code of its own ({named}); genlm_sc does not "
                "run a checkpoint's code unless you pass trust_remote_code=True, after "
                "reading that code"
            )
    strict = kwargs.pop("strict", False)
    if strict:
        kwargs["output_loading_info"] = True
    try:
        loaded = loader.from_pretrained(folder, **kwargs)
    except ValueError as err:
        if "trust_remote_code" not in str(err) or kwargs["trust_remote_code"]:
            raise
        raise CheckpointError(
            f"the {what} at {folder} needs code of its own (config.json names it in "
            "auto_map); genlm_sc does not run a checkpoint's code unless you pass "
            "trust_remote_code=True, after reading that code"
        ) from err
    if not strict:
        return loaded
    model, info = loaded
    missing = [k for k in info.get("missing_keys", []) if not k.startswith(UNUSED_PREFIXES)]
    mismatched = [str(k[0]) if isinstance(k, tuple) else str(k)
                  for k in info.get("mismatched_keys", [])]  # fmt: skip
    if missing or mismatched:
        problems = []
        if missing:
            problems.append(f"{len(missing)} parameter(s) missing from its weights "
                            f"(e.g. {', '.join(missing[:3])})")  # fmt: skip
        if mismatched:
            problems.append(
                f"{len(mismatched)} of another shape (e.g. {', '.join(mismatched[:3])})"
            )
        raise CheckpointError(
            f"the {what} at {folder} would load half-initialised: {'; '.join(problems)} would "
            f"be drawn at random. Is the folder a checkpoint of this architecture "
            f"({type(model).__name__}), and complete?"
        )
    return model


#: Model types that an installed package registers with transformers' auto classes
#: (no code from the checkpoint runs): model_type -> (package, what to call it).
PACKAGE_ARCHITECTURES = {
    "GPN": ("gpn", "GPN"), "ConvNet": ("gpn", "GPN"), "GPNRoFormer": ("gpn", "GPN"),
    "GPNStar": ("gpn", "GPN-Star"),
}  # fmt: skip


def register_package_architecture(folder: str | os.PathLike, *, what: str = "model") -> None:
    """Register the architecture of a checkpoint whose ``model_type`` belongs to an
    installed package rather than to transformers (GPN's ``gpn`` package, from PyPI).

    The package's own code is imported, as any installed library is; nothing in the
    checkpoint folder runs. A checkpoint of such a type without its package is a
    :class:`CheckpointError` saying which package to install.
    """
    import importlib
    import json

    from transformers import CONFIG_MAPPING

    try:
        model_type = json.loads((Path(folder) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return
    if model_type not in PACKAGE_ARCHITECTURES or model_type in CONFIG_MAPPING:
        return
    package, name = PACKAGE_ARCHITECTURES[model_type]
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        raise CheckpointError(
            f"the {what} at {os.fspath(folder)} is a {name} checkpoint (config.json model_type "
            f"{model_type!r}); its architecture comes with the {package!r} package: "
            f"pip install {package}"
        ) from err
    register = getattr(module, "register_auto_classes", None)
    if callable(register):  # gpn >= 0.9 registers on request
        register()
    else:  # earlier releases register when their model module is imported
        importlib.import_module(f"{package}.model")


#: Parameters a checkpoint may lack because embedding never uses them (BERT's pooler).
UNUSED_PREFIXES = ("pooler.", "bert.pooler.")
#: A DNA sequence every DNA tokenizer must read without unknown tokens.
PROBE = "ACGTTGCAAGCTTCGACCGGTTAACATGCGTA" * 8
#: Largest share of the probe's tokens that may be the unknown token.
MAX_UNKNOWN = 0.01


def check_tokenizer(tokenizer: Any, folder: str | os.PathLike) -> None:
    """Refuse a tokenizer that turns DNA into unknown tokens (more than 1 % of the tokens of
    an ``ACGT`` probe), e.g. a k-mer vocabulary read by a tokenizer that does not cut k-mers.
    """
    unknown = getattr(tokenizer, "unk_token_id", None)
    if unknown is None:
        return
    ids = tokenizer(PROBE, add_special_tokens=False, verbose=False)["input_ids"]
    share = sum(i == unknown for i in ids) / max(len(ids), 1)
    if share > MAX_UNKNOWN:
        raise CheckpointError(
            f"the tokenizer at {os.fspath(folder)} turns {share:.0%} of an ACGT sequence into "
            f"its unknown token {tokenizer.unk_token!r} ({type(tokenizer).__name__}); "
            "embeddings would not depend on the sequence. A DNABERT-style k-mer vocabulary "
            "needs its sequences cut into k-mers: rebuild the tokenizer with "
            "genlm_sc.models.build_tokenizer or load it with genlm_sc.models.load_tokenizer"
        )


def _code_named_in(folder: Path) -> str:
    """Where the folder's ``config.json`` or ``tokenizer_config.json`` names code to run
    (``auto_map``), e.g. ``"config.json auto_map: AutoModel -> modeling.Model"``; ``""``
    when neither does."""
    import json

    for name in ("config.json", "tokenizer_config.json"):
        try:
            settings = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        mapping = settings.get("auto_map") if isinstance(settings, dict) else None
        if mapping:
            first = next(iter(mapping.items())) if isinstance(mapping, dict) else mapping
            return (
                f"{name} auto_map: {first[0]} -> {first[1]}"
                if isinstance(first, tuple)
                else f"{name} auto_map: {first}"
            )
    return ""


#: Files of which a saved tokenizer has at least one.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")


def check_vocabulary(model: Any, tokenizer: Any, folder: str | os.PathLike) -> None:
    """Refuse a tokenizer whose ids (special tokens included) the model has no embedding
    for: a vocabulary that does not match the embedding matrix."""
    try:
        embeddings = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):  # an architecture that does not say
        return
    rows = getattr(getattr(embeddings, "weight", None), "shape", [None])[0]
    if rows is None:
        return
    largest = max(tokenizer.get_vocab().values(), default=-1)
    specials = {t: i for t, i in zip(tokenizer.all_special_tokens, tokenizer.all_special_ids,
                                     strict=False) if i is not None and i >= rows}  # fmt: skip
    if largest >= rows or specials:
        raise CheckpointError(
            f"the tokenizer at {os.fspath(folder)} has token ids up to {largest} (special "
            f"tokens beyond the model: {specials or 'none'}), but the model embeds only "
            f"{rows} tokens: the tokenizer and the weights do not belong together"
        )


def require_tokenizer(folder: str | os.PathLike) -> None:
    """A model folder must hold its tokenizer (we never guess one)."""
    path = Path(folder)
    if path.is_dir() and not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(
            f"no tokenizer in {path} (none of {', '.join(TOKENIZER_FILES)}): save the "
            "tokenizer the model was trained with next to it (tokenizer.save_pretrained)"
        )
