"""scikit-learn's bundled breast-cancer table (569 tumours, 30 features), split 70/30 stratified."""

from pathlib import Path

from sklearn.datasets import load_breast_cancer

from libs.envs.research_tasks import taskkit


def prepare(public_dir: Path, private_dir: Path, seed: int) -> None:
    bunch = load_breast_cancer()
    taskkit.prepare_table(Path(public_dir), Path(private_dir), bunch.data, bunch.target, bunch.feature_names,
                          seed, stratify=True)
