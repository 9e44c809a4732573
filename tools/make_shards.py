"""Turns text files into FineWeb-format token shards.

Examples:
  python -m tools.make_shards --input 'books/*.txt' --out_dir data/books
  python -m tools.make_shards --input corpus_dir/ --tokenizer gpt2 --prefix mine
  python -m tools.make_shards --stdlib            # the embedded stdlib corpus
  python -m tools.make_shards --tfds=wiki40b/en --tokenizer gpt2 --data_dir ~/tensorflow_datasets

Each input file is one document, prefixed with the end-of-text token. Files go
to the validation split by a hash of their path (see corpus.split_keys).
Output: <out_dir>/<prefix>_val_000000.bin, <prefix>_train_000001.bin, ... and
<out_dir>/<prefix>_manifest.json.

--tfds converts a prepared tensorflow-datasets dataset (array_record, no TensorFlow) exactly as training from
`train.train_data = "tfds:..."` would, into the same cache under the data dir, so a later run reuses it
(libs/train/tfds_source.py): the training stream (--split, default `train`) and the validation stream
(--val_split, default `validation`, else `test`, else a held-out slice of `train`).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import json
import os
import sys
from pathlib import Path

from absl import logging

from libs.train import corpus
from libs.train import shards
from libs.train import tfds_source
from libs.train import tokenizers
from libs.train.errors import UserError


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.make_shards",
        description="Tokenize text files into FineWeb-format .bin shards.",
    )
    parser.add_argument(
        "--input", action="append", default=[],
        help="file, glob or directory (repeatable); directories are searched with --dir_glob",
    )
    parser.add_argument("--dir_glob", default="**/*", help="glob used inside directories")
    parser.add_argument("--out_dir", default=None, help="output dir (default: data dir)")
    parser.add_argument("--tokenizer", choices=tokenizers.TOKENIZER_NAMES, default="bytes")
    parser.add_argument("--val_fraction", type=float, default=0.05)
    parser.add_argument("--shard_tokens", type=int, default=10_000_000)
    parser.add_argument("--prefix", default="text", help="shard file name prefix")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing shards with the same prefix")
    parser.add_argument("--stdlib", action="store_true",
                        help="build the embedded Python-stdlib corpus instead of --input")
    parser.add_argument("--max_files", type=int, default=None,
                        help="with --stdlib: only the first N files")
    parser.add_argument("--tfds", default=None, metavar="NAME[/CONFIG][:VERSION]",
                        help="convert a prepared tensorflow-datasets dataset (tfds:... sources of the trainer)")
    parser.add_argument("--split", default=None, help="with --tfds: the training split (default train)")
    parser.add_argument("--val_split", default=None,
                        help="with --tfds: the validation split (default validation, else test, else held out)")
    parser.add_argument("--feature", default=None, help="with --tfds: the text feature (default text)")
    parser.add_argument("--data_dir", default=None,
                        help="with --tfds: the tfds data_dir (default $TFDS_DATA_DIR, else ~/tensorflow_datasets)")
    args = parser.parse_args(argv)
    if sum((bool(args.input), args.stdlib, args.tfds is not None)) != 1:
        parser.error("give one of --input (files, globs or directories), --stdlib or --tfds")
    if not 0.0 <= args.val_fraction < 1.0:
        parser.error(f"--val_fraction must be in [0, 1), got {args.val_fraction}")
    if args.shard_tokens <= 0:
        parser.error(f"--shard_tokens must be positive, got {args.shard_tokens}")
    return args


def collect_inputs(inputs: list[str], dir_glob: str) -> list[tuple[str, Path]]:
    """Returns sorted unique (split key, path) pairs for files, globs and dirs."""
    found: dict[Path, str] = {}
    for spec in inputs:
        spec_path = Path(os.path.expanduser(spec))
        if spec_path.is_dir():
            matches = [p for p in spec_path.glob(dir_glob) if p.is_file()]
            for p in matches:
                if not any(part.startswith(".") for part in p.relative_to(spec_path).parts):
                    found.setdefault(p.resolve(), p.relative_to(spec_path).as_posix())
        elif spec_path.is_file():
            found.setdefault(spec_path.resolve(), spec_path.name)
        else:
            matches = [Path(p) for p in glob.glob(str(spec_path), recursive=True)]
            matches = [p for p in matches if p.is_file()]
            if not matches:
                raise FileNotFoundError(f"--input {spec!r} matches no files")
            for p in matches:
                found.setdefault(p.resolve(), p.name)
    if not found:
        raise FileNotFoundError(f"--input {inputs} matched no files")
    return sorted(((key, path) for path, key in found.items()), key=lambda kv: (kv[0], str(kv[1])))


def make_shards(args: argparse.Namespace) -> dict:
    """Writes the shards and manifest; returns the manifest."""
    tok = tokenizers.get_tokenizer(args.tokenizer)
    out_dir = Path(args.out_dir) if args.out_dir else corpus.default_data_dir() / tok.name
    existing = sorted(out_dir.glob(f"{args.prefix}_*_*.bin"))
    if existing and not args.overwrite:
        raise FileExistsError(
            f"{existing[0]}: shards with prefix {args.prefix!r} already exist in "
            f"{out_dir}; pass --overwrite or another --prefix"
        )
    entries = collect_inputs(args.input, args.dir_glob)
    for path in existing:
        path.unlink()
    # Keys can repeat (same name in two globs); disambiguate with the full path.
    key_counts = collections.Counter(key for key, _ in entries)
    keys = [f"{key}\0{path}" if key_counts[key] > 1 else key for key, path in entries]
    by_key = {k: path for k, (_, path) in zip(keys, entries)}
    train_keys, val_keys = corpus.split_keys(keys, args.val_fraction)

    manifest = {
        "tokenizer": tok.name, "vocab_size": tok.vocab_size, "eot_id": tok.eot_id,
        "val_fraction": args.val_fraction, "shard_tokens": args.shard_tokens,
    }
    for split, split_keys, first in (("val", val_keys, 0), ("train", train_keys, 1)):
        writer = shards.ShardWriter(out_dir, args.prefix, split, args.shard_tokens, first)
        n_files = 0
        for key in split_keys:
            text = corpus.read_text(by_key[key])
            if text is None:
                continue
            writer.add([tok.eot_id])
            writer.add(tok.encode_array(text))
            n_files += 1
        names = [p.name for p in writer.close()]
        manifest.update({f"{split}_files": n_files, f"{split}_tokens": writer.total_tokens,
                         f"{split}_shards": names})
    manifest_path = out_dir / f"{args.prefix}_manifest.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    manifest["out_dir"] = str(out_dir)
    return manifest


def _tfds_shards(args: argparse.Namespace) -> int:
    """Converts both streams of a tfds dataset (reusing earlier conversions) and prints where they are."""
    spec = tfds_source.parse_spec(args.tfds)
    spec = dataclasses.replace(spec, feature=args.feature or spec.feature)
    splits = {"train": args.split or spec.split, "val": args.val_split}
    lines = []
    for role, split in splits.items():
        stream = tfds_source.build_shards(
            dataclasses.replace(spec, split=split), role, args.tokenizer, args.data_dir, args.out_dir,
            args.val_fraction, args.shard_tokens, force=args.overwrite,
        )
        manifest = json.loads(Path(stream.manifest).read_text())
        part = "" if manifest["part"] == "all" else f" ({manifest['part']})"
        lines.append(f"{role}: split {manifest['split']}{part}, {manifest[f'{role}_documents']} documents, "
                     f"{manifest[f'{role}_tokens']} tokens, {len(manifest[f'{role}_shards'])} shards: "
                     f"{stream.pattern}")
    print(f"{tfds_source.SCHEME}{spec.dataset} (feature {spec.feature}), tokenizer {manifest['tokenizer']} "
          f"(vocab {manifest['vocab_size']})")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.set_verbosity(logging.INFO)
    try:
        if args.tfds is not None:
            return _tfds_shards(args)
        if args.stdlib:
            paths = corpus.build_stdlib_corpus(
                args.out_dir, tokenizer=args.tokenizer, val_fraction=args.val_fraction,
                max_files=args.max_files, shard_tokens=args.shard_tokens,
            )
            manifest = json.loads(Path(paths.manifest).read_text())
            manifest["out_dir"] = str(Path(paths.manifest).parent)
        else:
            manifest = make_shards(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError, tokenizers.TokenizerUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"tokenizer {manifest['tokenizer']} (vocab {manifest['vocab_size']}), "
          f"output in {manifest['out_dir']}")
    for split in ("train", "val"):
        print(f"{split}: {manifest[f'{split}_files']} files, "
              f"{manifest[f'{split}_tokens']} tokens, "
              f"{len(manifest[f'{split}_shards'])} shards")
    return 0


if __name__ == "__main__":
    sys.exit(main())
