"""The CartPole policy the evaluator calls: a linear rule over the observation with the weights that
train.py wrote to weights.json (push right when w . observation + b > 0)."""

import json
from pathlib import Path

import numpy as np

_WEIGHTS = np.array(json.loads((Path(__file__).parent / "weights.json").read_text()))


def act(observation):
    """observation: cart position, cart velocity, pole angle, pole angular velocity. Returns 0 or 1."""
    return int(observation @ _WEIGHTS[:4] + _WEIGHTS[4] > 0)
