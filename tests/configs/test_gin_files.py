"""Every gin file under configs/ parses strictly and builds its model and optimizer."""

import glob
import os

import gin
import jax
import pytest

from libs.train import launch, trainer
from tests.conftest import REPO_ROOT

ALL_CONFIGS = sorted(glob.glob(os.path.join(REPO_ROOT, "configs", "**", "*.gin"), recursive=True))
CONFIGS = [p for p in ALL_CONFIGS if os.sep + "speedrun" + os.sep in p]
LFS_CONFIGS = [p for p in ALL_CONFIGS if os.sep + "lfs" + os.sep in p]
LLAMA_CONFIGS = [p for p in ALL_CONFIGS if os.sep + "llama" + os.sep in p]
RESEARCH_CONFIGS = [p for p in ALL_CONFIGS if os.sep + "research_agent" + os.sep in p]
SPEEDRUN_BENCH_CONFIGS = [p for p in ALL_CONFIGS if os.sep + "speedrun_bench" + os.sep in p]
MAESTROMOTIF_CONFIGS = [p for p in ALL_CONFIGS if os.sep + "maestromotif" + os.sep in p]
DREAMCRAFT_CONFIGS = [p for p in ALL_CONFIGS if os.sep + "dreamcraft" + os.sep in p]
SOURCE2SYNTH_CONFIGS = [p for p in ALL_CONFIGS if os.sep + "source2synth" + os.sep in p]
STRATEGIC_CONFIGS = [p for p in ALL_CONFIGS if os.sep + "strategic_games" + os.sep in p]
IMF_CONFIGS = [p for p in ALL_CONFIGS if os.sep + "imf" + os.sep in p]
MAESTROMOTIF_OVERLAYS = {"local_annotator.gin"}  # composed after another maestromotif file
RESEARCH_OVERLAYS = {"mcts.gin", "evolutionary.gin"}  # policies, composed with an operator set's file
BASE = os.path.join(REPO_ROOT, "configs", "speedrun", "gpt2_124m.gin")
PACKED_RECORDS = [f"record_{i}" for i in range(12, 22)]
# Overlays are parsed on top of a record: the baseline, or the last record of the packed ladder.
OVERLAYS = {"cpu_scale.gin": BASE, "cpu_scale_packed.gin": BASE.replace("gpt2_124m", PACKED_RECORDS[-1])}
LFS_BASE = os.path.join(REPO_ROOT, "configs", "lfs", "base.gin")


def test_every_config_is_covered():
    covered = (set(CONFIGS) | set(LFS_CONFIGS) | set(LLAMA_CONFIGS) | set(RESEARCH_CONFIGS) | set(SPEEDRUN_BENCH_CONFIGS)
               | set(MAESTROMOTIF_CONFIGS) | set(DREAMCRAFT_CONFIGS) | set(SOURCE2SYNTH_CONFIGS)
               | set(STRATEGIC_CONFIGS) | set(IMF_CONFIGS))
    assert set(ALL_CONFIGS) == covered, \
        "a new configs/ folder needs a test here"


def _files(path):
    base = OVERLAYS.get(os.path.basename(path))
    return [base, path] if base else [path]


def test_configs_found():
    names = {os.path.basename(p) for p in CONFIGS}
    for rec in ("gpt2_124m", "record_02", "record_03", "record_05", "record_08", "record_09", "record_11"):
        assert f"{rec}.gin" in names


@pytest.mark.parametrize("record", PACKED_RECORDS)
def test_packed_records_build_at_proxy_scale(record, clean_gin):
    config_dir = os.path.join(REPO_ROOT, "configs", "speedrun")
    launch.parse_config([os.path.join(config_dir, f"{record}.gin"), os.path.join(config_dir, "cpu_scale_packed.gin")],
                        ["make_mesh.data = 1"])
    q = lambda name: gin.query_parameter(f"train.{name}")
    assert (q("seq_len"), q("global_batch_size"), q("val_seq_len")) == (1024, 2, 0)
    exp = trainer.build(q("total_steps"), q("seq_len"), q("global_batch_size"), q("microbatches"))
    assert exp.cfg.num_layers == 12 and exp.cfg.vocab_size == 320 and exp.cfg.doc_eot_id == 256


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_parses_and_builds(path, clean_gin):
    launch.parse_config(_files(path), ["make_mesh.data = 1"])
    q = lambda name: gin.query_parameter(f"train.{name}")
    exp = trainer.build(q("total_steps"), q("seq_len"), q("global_batch_size"), q("microbatches"))
    with exp.context():
        abstract = exp.abstract_state()  # Shapes only: nothing is allocated.
    tables = sum(x.size for name, table in abstract["params"].items() if name.startswith("value_embed_")
                 for x in jax.tree_util.tree_leaves(table))  # value embeddings: lookups, no matmul
    assert exp.n_params > 0 and exp.flops_per_token > 6 * (exp.n_params - tables) * 0.5
    leaves = jax.tree_util.tree_leaves(abstract["params"])
    assert sum(x.size for x in leaves) == exp.n_params


def test_baseline_is_gpt2_small(clean_gin):
    launch.parse_config([BASE], ["make_mesh.data = 1"])
    exp = trainer.build(10, 1024, 512, 8)
    # 124.5M with the 50304-row table (llm.c reports 124,475,904 with its padding).
    assert 124.0e6 < exp.n_params < 124.6e6, exp.n_params
    assert exp.cfg.num_layers == 12 and exp.cfg.model_dim == 768 and exp.cfg.num_heads == 12


def test_records_chain_each_includes_the_previous():
    chain = ["gpt2_124m", "record_02", "record_03", "record_04", "record_05", "record_08", "record_09",
             "record_10", "record_11"]
    for prev, cur in zip(chain, chain[1:]):
        text = open(os.path.join(REPO_ROOT, "configs", "speedrun", f"{cur}.gin")).read()
        assert f'include "configs/speedrun/{prev}.gin"' in text, cur
        assert text.startswith("# Record"), f"{cur}.gin must open with a comment naming its change"


@pytest.mark.parametrize("path", LFS_CONFIGS, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_lfs_configs_parse_with_known_tasks_and_policies(path, clean_gin):
    from libs.agents import lfs_experiment  # pylint: disable=import-outside-toplevel

    files = [path] if "include" in open(path).read() or path == LFS_BASE else [LFS_BASE, path]
    launch.parse_config(files, [])
    bound = lambda name: gin.query_parameter(name) if name in gin.config_str() else ()  # noqa: E731
    assert set(bound("run.tasks")) <= set(lfs_experiment.TASKS)
    assert set(bound("run.policies")) <= set(lfs_experiment.POLICIES)


@pytest.mark.parametrize("path", LLAMA_CONFIGS, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_llama_configs_bind_the_architecture_only(path, clean_gin):
    """configs/llama/ files select the family and bind LlamaConfig; the trainer builds them abstractly
    (tests/models/test_llama.py checks each parameter count against the published one)."""
    launch.parse_config([path], ["make_mesh.data = 1"])
    for line in open(path):
        line = line.split("#")[0].strip()
        if "=" in line:
            assert line.startswith(("LlamaConfig.", "make_model.family")), (path, line)
    exp = trainer.build(10, 2048, 8, 1)
    assert type(exp.cfg).__name__ == "LlamaConfig" and exp.n_params > 1e8


@pytest.mark.parametrize("path", RESEARCH_CONFIGS, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_research_agent_configs_parse_with_known_tasks_policies_and_operators(path, clean_gin):
    from libs.agents.research import experiment  # pylint: disable=import-outside-toplevel
    from libs.envs import research_tasks  # pylint: disable=import-outside-toplevel

    base = os.path.join(REPO_ROOT, "configs", "research_agent", "offline.gin")
    launch.parse_config([base, path] if os.path.basename(path) in RESEARCH_OVERLAYS else [path], [])
    assert set(gin.query_parameter("research_agent.tasks")) <= set(research_tasks.list_tasks()) | {"all"}
    assert gin.query_parameter("research_agent.policy") in experiment.POLICIES
    assert gin.query_parameter("research_agent.operators") in experiment.OPERATOR_SETS


@pytest.mark.parametrize("path", SPEEDRUN_BENCH_CONFIGS, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_speedrun_bench_configs_parse_with_known_agents_steps_and_scaffolds(path, clean_gin):
    from libs.agents.research import experiment, speedrun_bench  # pylint: disable=import-outside-toplevel
    from libs.envs.speedrun_bench import hints, proxy  # pylint: disable=import-outside-toplevel

    launch.parse_config([path], [])
    try:
        agent = gin.query_parameter("speedrun_bench.agent")
    except ValueError:  # proxy.gin, shared by every agent, leaves it to them
        agent = "oracle"
    assert agent in speedrun_bench.AGENTS
    steps = gin.query_parameter("speedrun_bench.steps")
    assert steps == ["all"] or set(steps) <= {hints.step_name(s) for s in hints.LADDER_STEPS}
    assert set(gin.query_parameter("speedrun_bench.hints")) <= set(hints.COMBINATIONS)
    assert proxy.Proxy().target > 0
    if agent == "research_agent":
        assert gin.query_parameter("research_agent.policy") in experiment.POLICIES
        assert gin.query_parameter("research_agent.operators") in experiment.OPERATOR_SETS
        assert gin.query_parameter("research_agent.steps") == 20  # the reference's node budget


@pytest.mark.parametrize("path", MAESTROMOTIF_CONFIGS, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_maestromotif_configs_parse_and_build_their_settings(path, clean_gin):
    from libs.agents.maestromotif import collect, experiment, training  # pylint: disable=import-outside-toplevel
    from libs.llm import gateway  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import  (LLMConfig, as the binary)
    from libs.models import motif  # pylint: disable=import-outside-toplevel
    from libs.rl import ppo  # pylint: disable=import-outside-toplevel

    base = os.path.join(REPO_ROOT, "configs", "maestromotif", "descender.gin")
    launch.parse_config([base, path] if os.path.basename(path) in MAESTROMOTIF_OVERLAYS else [path], [])
    assert set(gin.query_parameter("maestromotif.phases")) <= set(experiment.PHASES)
    assert gin.query_parameter("maestromotif.annotator") in experiment.ANNOTATORS
    collect.CollectConfig(), training.SkillTrainingConfig(), motif.RewardModelConfig()  # each checks its values
    assert ppo.PPOConfig().num_updates >= 1


@pytest.mark.parametrize("path", [p for p in DREAMCRAFT_CONFIGS if not p.endswith("constraints.gin")], ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_dreamcraft_configs_build_their_parts(path, clean_gin):
    """(constraints.gin is checked through house.gin, which includes it.)"""
    from libs.dreamcraft import experiment  # noqa: F401  (registers the configurables, as the binary does)
    from libs.envs.voxels import constraints
    from libs.envs.voxels.palette import load_palette
    from libs.envs.voxels.structures import reference_structure
    from libs.models.voxel_field import FieldConfig

    launch.parse_config([path], [])
    palette = load_palette()
    refs = gin.query_parameter("dreamcraft.constraints")  # references, as gin passes them (`@Adjacency`)
    built = constraints.build(palette, [r.scoped_configurable_fn for r in refs])
    assert built and all(c.weight > 0 for c in built)
    grid = FieldConfig().grid
    if gin.query_parameter("dreamcraft.guidance") != "text_image":
        reference = reference_structure(palette)
        assert reference.shape[0] % grid[0] == 0 and (reference > 0).any()
        assert constraints.evaluate(built, reference)["constraints/satisfied"] > 0


@pytest.mark.parametrize("path", SOURCE2SYNTH_CONFIGS, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_source2synth_configs_name_real_sources(path, clean_gin):
    from libs.source2synth import experiment, pipelines  # noqa: F401  (registers the configurables)

    overlay = os.path.basename(path) == "evaluate.gin"  # composed after a model's file
    launch.parse_config([os.path.join(REPO_ROOT, "configs/source2synth/llm.gin"), path] if overlay else [path], [])
    if overlay:
        assert gin.query_parameter("source2synth.mode") == "evaluate"
        return
    assert set(gin.query_parameter("source2synth.pipelines")) <= set(pipelines.PIPELINES)
    assert gin.query_parameter("source2synth.generator") in experiment.MODELS
    for folder in (*gin.query_parameter("source2synth.tables"), *gin.query_parameter("source2synth.documents")):
        assert os.listdir(os.path.join(REPO_ROOT, folder))


@pytest.mark.parametrize("path", STRATEGIC_CONFIGS, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_strategic_games_configs_build_their_grid(path, clean_gin):
    from libs.agents.strategic import prompts  # noqa: F401  (the binary's imports)
    from libs.envs import matrix_games

    launch.parse_config([path], [])
    games = matrix_games.all_games(gin.query_parameter("strategic_games.games"))
    for labels in gin.query_parameter("strategic_games.labels"):
        for fmt in gin.query_parameter("strategic_games.answer_formats"):
            prompts.Condition(labels, answer_format=fmt)
    assert len(prompts.configurations(games)) == 16 * len(gin.query_parameter("strategic_games.games"))
    assert gin.query_parameter("strategic_games.llm") or gin.query_parameter("strategic_games.standins")


@pytest.mark.parametrize("path", IMF_CONFIGS, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_imf_configs_name_known_models_and_a_valid_truth(path, clean_gin):
    from libs.astro import experiment, imf

    launch.parse_config([path], [])
    models = imf.make_models(gin.query_parameter("imf.m_min"), gin.query_parameter("imf.m_max"))
    assert set(gin.query_parameter("imf.models")) <= set(models)
    truth_model = models[gin.query_parameter("imf.truth_model")]
    truth = gin.query_parameter("imf.truth")
    assert len(truth) == truth_model.dim and all(lo <= t <= hi for t, (lo, hi) in zip(truth, truth_model.bounds))
    experiment.make_completeness()
