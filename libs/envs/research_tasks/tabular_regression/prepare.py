"""scikit-learn's bundled diabetes table (442 patients, 10 standardised features, disease progression
after one year), split 70/30."""

from pathlib import Path

from sklearn.datasets import load_diabetes

from libs.envs.research_tasks import taskkit


def prepare(public_dir: Path, private_dir: Path, seed: int) -> None:
    bunch = load_diabetes()
    taskkit.prepare_table(Path(public_dir), Path(private_dir), bunch.data, bunch.target, bunch.feature_names, seed)
