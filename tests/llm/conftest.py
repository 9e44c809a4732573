"""Fixtures for the LLM gateway tests: a scripted local OpenAI-compatible server and a test key."""

import dataclasses

import pytest

import libs.llm  # noqa: F401  (before litellm: use its bundled cost map, fetch nothing)
from libs.llm.gateway import LLMConfig
from libs.llm.testing import LocalOpenAIServer

KEY_ENV = "TEST_LLM_KEY"
SECRET = "sk-test-SECRET-123"


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


@pytest.fixture
def server():
    with LocalOpenAIServer() as srv:
        yield srv


@pytest.fixture
def make_config(server, api_key):
    """LLMConfig for the local server with tiny backoffs; keyword arguments override fields."""

    def make(**overrides) -> LLMConfig:
        base = LLMConfig(model="openai/test-model", api_base=server.base_url, api_key_env=KEY_ENV,
                         timeout_s=5.0, max_retries=3, backoff_initial_s=0.01, backoff_max_s=0.05)
        return dataclasses.replace(base, **overrides)

    return make
