"""A tiny tensorflow-datasets builder over local text files, prepared without TensorFlow.

It lives in an importable module (not a test file or a script) because tfds locates a builder's
module when it writes `dataset_info.json`. `prepare()` reads `<src>/<split>/*.txt` (one document per
file, the split names being the folder names) and writes the dataset into `data_dir` as array_record,
the format that `tfds.data_source` reads without TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

NAME = "local_text"
VERSION = "1.0.0"


class LocalText(tfds.core.GeneratorBasedBuilder):
    """One example per text file: its text, its file name (text too) and its index (an int)."""

    VERSION = tfds.core.Version(VERSION)
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="plain"), tfds.core.BuilderConfig(name="other")]
    # No download checksums. tfds would look for a checksums file beside a builder defined in a package,
    # which imports the undeclared `importlib_resources`.
    url_infos = None
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put <split>/*.txt files in the manual_dir."

    def _info(self) -> tfds.core.DatasetInfo:
        features = tfds.features.FeaturesDict({
            "text": tfds.features.Text(),
            "title": tfds.features.Text(),
            "index": tfds.features.Scalar(dtype=np.int32),
        })
        return tfds.core.DatasetInfo(builder=self, features=features)  # not dataset_info_from_configs

    def _split_generators(self, dl_manager):
        src = Path(dl_manager.manual_dir)
        return {d.name: self._generate_examples(d) for d in sorted(src.iterdir()) if d.is_dir()}

    def _generate_examples(self, folder: Path):
        for i, path in enumerate(sorted(folder.glob("*.txt"))):
            yield path.name, {"text": path.read_text(encoding="utf-8"), "title": path.stem, "index": i}


def write_texts(src: Path, splits: dict[str, list[str]]) -> Path:
    """Writes `<src>/<split>/doc_NNNN.txt` per document; returns `src`."""
    for split, texts in splits.items():
        (src / split).mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(texts):
            (src / split / f"doc_{i:04d}.txt").write_text(text, encoding="utf-8")
    return src


def prepare(data_dir: Path, src: Path, config: str = "plain") -> Path:
    """Prepares `local_text/<config>` from `src` into `data_dir` as array_record; returns its version dir."""
    tfds.disable_progress_bar()
    builder = LocalText(data_dir=str(data_dir), config=config)
    builder.download_and_prepare(
        file_format="array_record", download_config=tfds.download.DownloadConfig(manual_dir=str(src))
    )
    return Path(builder.data_dir)
