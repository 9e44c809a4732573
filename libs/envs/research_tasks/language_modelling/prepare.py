"""Byte-level shards of the embedded corpus (this interpreter's standard-library sources).

The files are ordered by a seeded hash and dealt out whole: first the private test split, then the public
validation split, then the public training split, each up to its byte budget, so no file is in two splits.
"""

import hashlib
import sysconfig
from pathlib import Path

from libs.train import corpus, shards, tokenizers

PREFIX = "lm"
BUDGETS = (("test", 160_000), ("val", 80_000), ("train", 3_000_000))  # bytes of source per split


def prepare(public_dir: Path, private_dir: Path, seed: int) -> None:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(corpus.stdlib_files(root), key=lambda f: hashlib.sha1(f"{seed}:{f}".encode()).hexdigest())
    tokenizer = tokenizers.get_tokenizer("bytes")
    position = 0
    for split, budget in BUDGETS:
        chosen, size = [], 0
        while position < len(files) and size < budget:
            size += (root / files[position]).stat().st_size
            chosen.append(files[position])
            position += 1
        out_dir = Path(private_dir if split == "test" else public_dir)
        writer = shards.ShardWriter(out_dir, PREFIX, split, shard_tokens=10_000_000, first_index=int(split == "train"))
        corpus.write_documents(root, chosen, tokenizer, writer, split)
        writer.close()
