"""The proxy reference costs: costs to any target from a curve, medians over seeds, misses, the per-step
target rule, and which ladder steps FSR can score."""

from libs.envs.speedrun_bench import references


def _run(record, seed, losses, seconds_per_step=0.2):
    curve = [[10 * i, loss, 10 * i * seconds_per_step, 10 * i * 2048] for i, loss in enumerate(losses)]
    return {"record": record, "seed": seed, "curve": curve}


def test_costs_to_a_target_are_the_first_validation_at_or_below_it():
    run = _run("a", 0, [5.0, 3.5, 3.1, 2.9, 2.95])
    assert references.costs_to(run["curve"], 3.0) == {"steps": 30, "tokens": 30 * 2048, "train_time_s": 6.0}
    assert references.costs_to(run["curve"], 3.1) == {"steps": 20, "tokens": 20 * 2048, "train_time_s": 4.0}
    assert references.costs_to(run["curve"], 2.0) is None
    assert references.costs_to([[0, 1.0, 0.0, 0]], 2.0) is None  # the untrained step-0 check does not count


def test_medians_over_seeds_and_a_miss_voids_the_record():
    runs = [_run("gpt2_124m", 0, [5, 4, 3.0]), _run("gpt2_124m", 1, [5, 3.1, 2.9]), _run("gpt2_124m", 2, [5, 4, 3.5, 3.0], 0.5)]
    runs += [_run("record_02", s, [5, 2.9]) for s in range(3)] + [_run("record_03", 0, [5, 2.5]), _run("record_03", 1, [5, 3.3])]
    rows = references.medians(runs, ["gpt2_124m", "record_02", "record_03"], 3.0)
    assert rows[0]["steps"] == 20 and rows[0]["steps_spread"] == [20, 30] and rows[0]["train_time_s"] == 4.0
    assert rows[2]["missed"] == 1 and rows[2]["steps"] is None
    flags = references.step_flags(rows)
    assert flags[0] == {"task": "gpt2_124m -> record_02", "train_time_s": "ok", "steps": "ok", "tokens": "ok"}
    assert flags[1]["steps"] == "a record missed the target"


def test_per_step_target_is_the_worse_worst_seed_best_loss_plus_the_margin():
    runs = [_run("a", s, [5, 3.2, 2.8 + 0.1 * s]) for s in range(3)] + [_run("b", s, [5, 2.5, 2.6]) for s in range(3)]
    assert references.best_loss(runs, "a") == 3.0 and references.step_target(runs, ("a", "b"), 0.02) == 3.02
    target = references.step_target(runs, ("a", "b"), 0.02)
    assert all(row["missed"] == 0 for row in references.medians(runs, ["a", "b"], target))
    assert references.step_target(runs, ("a", "missing"), 0.02) is None


def test_a_step_that_is_not_cheaper_is_flagged_per_measure():
    rows = [{"record": "a", "train_time_s": 40.0, "steps": 200, "tokens": 409600},
            {"record": "b", "train_time_s": 45.0, "steps": 150, "tokens": 307200}]
    step = references.step_flags(rows)[0]
    assert step["steps"] == "ok" and step["train_time_s"] == "no speedup between the references"


def test_a_speedup_within_the_seeds_spread_is_flagged():
    before = {"record": "a", "train_time_s": 40.0, "steps": 280, "tokens": 573440,
              "train_time_s_spread": [39.0, 41.0], "steps_spread": [270, 280], "tokens_spread": [552960, 573440]}
    after = {"record": "b", "train_time_s": 30.0, "steps": 270, "tokens": 552960,
             "train_time_s_spread": [29.0, 31.0], "steps_spread": [260, 280], "tokens_spread": [532480, 573440]}
    flag = references.step_flag(before, after)
    assert flag["train_time_s"] == "ok" and flag["steps"] == references.WITHIN_SPREAD
