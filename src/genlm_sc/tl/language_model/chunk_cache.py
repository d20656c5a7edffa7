"""A content-addressed cache of chunk embeddings, kept on disk beside cohort stores.

Every distinct chunk of token ids runs through a model once (``SequenceEncoder.embed``);
this cache keeps the pooled sums of those chunks between calls and between stores. It
lives in ``<folder of the store>/genlm_sc_embedding_cache/<model key>/``, one folder per
model and embedding setting, so embedding more genes, more people (a new store of a larger
cohort in the same folder) or re-running a killed call computes only the chunks not seen
before. The model key is a fingerprint of everything that changes a vector: the
checkpoint's files (configuration, tokenizer, and the size and edges of its weights), the
layer, the pooling, the precision and the chunk length.

Entries are written in shards (``shard-*.npz``: chunk digests, summed states, token
counts), each renamed into place once complete, so a killed run leaves only whole shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ChunkCache", "model_key"]

#: Folder, next to a store, holding one cache per model key.
CACHE_FOLDER = "genlm_sc_embedding_cache"


def model_key(encoder: Any, *, pooling: str, layer: int) -> str:
    """A fingerprint of an encoder and of the settings that change its chunk vectors."""
    from ..._provenance import file_record

    digest = hashlib.blake2b(digest_size=16)
    settings = {"pooling": pooling, "layer": layer, "precision": encoder.precision,
                "max_length": encoder.max_length}  # fmt: skip
    digest.update(json.dumps(settings, sort_keys=True).encode())
    source = encoder.source
    if source and Path(source).is_dir():
        for path in sorted(Path(source).iterdir()):
            if path.suffix in (".safetensors", ".bin", ".pt"):
                digest.update(json.dumps(file_record(path)["sha256_edges"]).encode())
            elif path.is_file() and path.suffix in (".json", ".txt", ".model"):
                digest.update(path.name.encode() + path.read_bytes())
    else:
        for name, tensor in sorted(encoder.model.state_dict().items()):
            digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
        digest.update(json.dumps(sorted(encoder.tokenizer.get_vocab().items())).encode())
    return digest.hexdigest()


class ChunkCache(dict):
    """Chunk digest → (summed states, token count), loaded from and saved to a folder.

    Parameters
    ----------
    folder
        The cache folder of one model key (created when needed).
    """

    def __init__(self, folder: str | os.PathLike):
        super().__init__()
        self.folder = Path(folder)
        self._saved: set[bytes] = set()
        for shard in sorted(self.folder.glob("shard-*.npz")):
            with np.load(shard) as data:
                for key, vector, count in zip(
                    data["keys"], data["vectors"], data["counts"], strict=True
                ):
                    self[key.tobytes()] = (vector, float(count))
        self._saved.update(self.keys())
        self.loaded = len(self)

    @classmethod
    def beside(cls, store: str | os.PathLike, encoder: Any, *, pooling: str, layer: int):
        """The cache of ``encoder`` next to a store on disk."""
        key = model_key(encoder, pooling=pooling, layer=layer)
        return cls(Path(store).parent / CACHE_FOLDER / key)

    def save(self) -> int:
        """Write the entries added since the last save as one shard; returns how many."""
        new = [k for k in self if k not in self._saved]
        if not new:
            return 0
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = np.frombuffer(b"".join(new), dtype=np.uint8).reshape(len(new), -1)
        vectors = np.stack([self[k][0] for k in new])
        counts = np.array([self[k][1] for k in new])
        name = f"shard-{uuid.uuid4().hex}"
        partial = self.folder / f".{name}.partial.npz"
        np.savez(partial, keys=keys, vectors=vectors, counts=counts)
        os.replace(partial, self.folder / f"{name}.npz")
        self._saved.update(new)
        return len(new)
