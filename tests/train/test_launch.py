"""Strict config parsing and the one-line errors of a binary."""

import os

import gin
import pytest

from libs.train import launch
from tests.conftest import REPO_ROOT, run_binary

SMOKE = "configs/speedrun/smoke.gin"


@pytest.mark.parametrize(
    "files, bindings, expected",
    [
        (["configs/speedrun/nope.gin"], [], "gin file not found: configs/speedrun/nope.gin"),
        ([SMOKE], ["GPTConfig.num_layerz = 3"], "num_layerz"),
        ([SMOKE], ["GPTConfg.num_layers = 3"], "GPTConfg"),
        ([SMOKE], ["train.total_steps = 'many'"], "train.total_steps = 'many': expected int, got str"),
        ([SMOKE], ["GPTConfig.qk_norm = 1"], "GPTConfig.qk_norm = 1: expected bool"),
        ([SMOKE], ["make_optimizer.adam_lr = 'fast'"], "make_optimizer.adam_lr"),
        ([SMOKE], ["train.total_steps = "], "train.total_steps"),
        ([SMOKE], ["train.total_steps = ("], "train.total_steps = (': unbalanced brackets"),
        (["tests/train/data/missing_include.gin"], [], "includes configs/speedrun/not_there.gin, which does not exist"),
    ],
)
def test_bad_config_is_a_config_error(files, bindings, expected, clean_gin):
    with pytest.raises(launch.ConfigError) as info:
        launch.parse_config(files, bindings)
    message = str(info.value)
    assert expected in message and "\n" not in message


def test_good_config_types_pass(clean_gin):
    launch.parse_config([SMOKE], ["make_optimizer.adam_lr = 1", "GPTConfig.logit_softcap = 15"])
    assert gin.query_parameter("make_optimizer.adam_lr") == 1


def test_effective_config_saved(tmp_path, clean_gin):
    launch.parse_config([SMOKE], ["train.total_steps = 7"])
    path = launch.save_config(str(tmp_path))
    text = open(path).read()
    assert "train.total_steps = 7" in text and "GPTConfig.num_layers = 2" in text


@pytest.mark.parametrize(
    "args, culprit",
    [
        (["--gin_file=configs/speedrun/missing.gin"], "missing.gin"),
        (["--gin_file=" + SMOKE, "--gin_bindings=GPTConfig.num_layerz = 3"], "num_layerz"),
        (["--gin_file=" + SMOKE, "--gin_bindings=train.total_steps = 2.5"], "train.total_steps"),
        (["--gin_file=" + SMOKE, "--gin_bindings=train.log_every = 0"], "train.log_every = 0: must be positive"),
        (["--gin_file=" + SMOKE, "--gin_bindings=Checkpointer.every_steps = -5"], "every_steps = -5: must be >= 0"),
        (["--gin_file=" + SMOKE, "--gin_bindings=train.total_steps = [1,"], "unbalanced brackets"),
        (["--gin_file=tests/train/data/missing_include.gin"], "not_there.gin"),
    ],
)
def test_binary_exits_2_with_one_line(args, culprit, tmp_path):
    proc = run_binary("experiments.speedrun", *args, f"--workdir={tmp_path}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and culprit in last
    assert not os.path.exists(os.path.join(REPO_ROOT, "runs", "missing"))


@pytest.mark.parametrize("binding, culprit", [
    ("GPTConfig.dtype = 'fp8'", "GPTConfig.dtype='fp8'"),
    ("GPTConfig.num_heads = 5", "GPTConfig.num_heads=5"),
    ("GPTConfig.residual_dtype = 'float64'", "GPTConfig.residual_dtype"),
    ("make_optimizer.kind = 'sgd'", "make_optimizer.kind"),
    ("lr_schedule.warmup_fraction = 1.5", "lr_schedule.warmup_fraction"),
])
def test_value_checks_inside_configurables_are_one_line(binding, culprit, tmp_path):
    proc = run_binary("experiments.speedrun", "--gin_file=" + SMOKE, f"--gin_bindings={binding}",
                      f"--workdir={tmp_path}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and culprit in last
