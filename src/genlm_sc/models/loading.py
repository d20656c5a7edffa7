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

__all__ = ["CheckpointError", "from_local", "local_folder"]


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
    try:
        return loader.from_pretrained(folder, **kwargs)
    except ValueError as err:
        if "trust_remote_code" not in str(err) or kwargs["trust_remote_code"]:
            raise
        raise CheckpointError(
            f"the {what} at {folder} needs code of its own (config.json names it in "
            "auto_map); genlm_sc does not run a checkpoint's code unless you pass "
            "trust_remote_code=True, after reading that code"
        ) from err


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
