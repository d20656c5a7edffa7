"""Labels of a sequence panel for classification: classes, codes, splits, a fingerprint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["class_codes", "label_classes", "plain", "random_split", "rows_digest"]

#: Split names read from ``obs[split_key]``.
TRAIN, DEV, TEST = "train", "dev", "test"


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value (JSON-ready)."""
    return value.item() if isinstance(value, np.generic) else value


def label_classes(labels: pd.Series) -> list[Any]:
    if isinstance(labels.dtype, pd.CategoricalDtype):
        present = set(labels.astype(object))
        return [plain(c) for c in labels.cat.categories if c in present]
    return [plain(c) for c in np.unique(labels.to_numpy())]


def class_codes(labels: pd.Series, used: np.ndarray, code: Mapping[Any, int]) -> np.ndarray:
    """Class index of each row (-1 for rows outside train/dev/test)."""
    out = np.full(len(labels), -1, dtype=np.int64)
    values = labels.to_numpy()
    for i in used:
        out[i] = code[plain(values[i])]
    return out


def random_split(labels: pd.Series, random_state: int) -> pd.Categorical:
    """Stratified 80/10/10 train/dev/test split (plain random where a class is too rare)."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    values = labels.astype(str).to_numpy()
    counts = pd.Series(values).value_counts()
    stratify = values if counts.min() >= 10 else None
    train, rest = train_test_split(
        index, test_size=0.2, random_state=random_state, stratify=stratify
    )
    rest_stratify = values[rest] if stratify is not None else None
    dev, test = train_test_split(
        rest, test_size=0.5, random_state=random_state, stratify=rest_stratify
    )
    out = np.empty(len(labels), dtype=object)
    out[train], out[dev], out[test] = TRAIN, DEV, TEST
    return pd.Categorical(out, categories=[TRAIN, DEV, TEST])


def rows_digest(rows: list[dict[str, Any]]) -> str:
    """A fingerprint of the training and dev rows (sequence and class index)."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    for row in rows:
        digest.update(f"{row['sequence']}\t{row['label']}\n".encode())
    return digest.hexdigest()
