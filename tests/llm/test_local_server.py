"""Starting or reusing the project's own model server: the address must be on this machine, a server of
the expected model is reused, and anything else listening there is a clear error."""

import http.server
import json
import threading

import pytest

from libs.llm import local_server
from libs.llm.gateway import LLMConfig
from libs.train.errors import ConfigError


class _Health(http.server.BaseHTTPRequestHandler):
    model = "SmolLM2-135M-Instruct"

    def do_GET(self):  # noqa: N802
        body = json.dumps({"status": "ok", "model": self.model}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_a_running_server_of_the_model_is_reused(health_server):
    assert local_server.ensure(health_server, "openai/SmolLM2-135M-Instruct", "embedded") is None


def test_another_server_at_the_address_is_a_clear_error(health_server):
    with pytest.raises(local_server.LocalServerError, match="does not serve 'other-model'"):
        local_server.ensure(health_server, "openai/other-model", "embedded")


@pytest.mark.parametrize("api_base", ["http://example.com:8421/v1", "https://127.0.0.1:8421/v1",
                                      "http://127.0.0.1/v1", None])
def test_the_server_must_be_on_this_machine(api_base):
    with pytest.raises(ConfigError, match="on this machine"):
        local_server.ensure(api_base, "openai/x", "embedded")


def test_a_source_that_cannot_be_served_fails_with_the_server_log(tmp_path):
    import socket  # pylint: disable=import-outside-toplevel

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(local_server.LocalServerError, match="exited with code 2: error: model source"):
        local_server.ensure(f"http://127.0.0.1:{port}/v1", "openai/x", str(tmp_path / "missing.gguf"),
                            log_dir=str(tmp_path))


def test_local_model_needs_an_api_base():
    with pytest.raises(ConfigError, match="local_model"):
        LLMConfig(model="openai/x", local_model="embedded")
