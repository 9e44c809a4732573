"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, pixel values 0-16), split 70/30 stratified."""

from pathlib import Path

from sklearn.datasets import load_digits

from libs.envs.research_tasks import taskkit


def prepare(public_dir: Path, private_dir: Path, seed: int) -> None:
    bunch = load_digits()
    taskkit.prepare_table(Path(public_dir), Path(private_dir), bunch.data.astype(int), bunch.target,
                          bunch.feature_names, seed, stratify=True)
