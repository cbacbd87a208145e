"""The real OpenAI and Vertex AI client libraries against the local stand-in server."""
import json

import pytest

from axiom_dagster.ai.prompts import SYSTEM, answer_schema, parse_answers, user_message
from axiom_dagster.ai.providers import AIProviderError, make_client
from axiom_dagster.config.ai import OpenAIProvider, VertexProvider
from tests.ai.server import ModelServer

VOCAB = ["Head CT", "Chest CT"]


@pytest.fixture
def server():
    s = ModelServer().start()
    yield s
    s.stop()


def test_openai_chat_completions_with_json_schema(server, monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-local")
    client = make_client("oa", OpenAIProvider(model="gpt-test", base_url=server.url + "/v1", api_key_env="TEST_OPENAI_KEY"))
    done = client.complete(SYSTEM, user_message("StudyDescription", VOCAB, None, ["CT HEAD", "xray"]), answer_schema(VOCAB))
    assert parse_answers(done.text, ["CT HEAD", "xray"], VOCAB) == {"CT HEAD": "Head CT", "xray": None}
    assert done.tokens == 120
    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-local"
    assert req["body"]["model"] == "gpt-test"
    assert req["body"]["response_format"]["type"] == "json_schema"


def test_openai_without_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(AIProviderError, match="NO_SUCH_KEY_VAR is not set"):
        make_client("oa", OpenAIProvider(api_key_env="NO_SUCH_KEY_VAR"))


def test_vertex_generate_content_with_response_schema(server):
    client = make_client("vx", VertexProvider(project="proj", location="europe-west4", model="gemini-test",
                                              api_endpoint=server.url, credentials="anonymous"))
    done = client.complete(SYSTEM, user_message("StudyDescription", VOCAB, None, ["chest ct"]), answer_schema(VOCAB))
    assert parse_answers(done.text, ["chest ct"], VOCAB) == {"chest ct": "Chest CT"}
    assert done.tokens == 120
    (req,) = server.requests
    assert req["path"].endswith("/projects/proj/locations/europe-west4/publishers/google/models/gemini-test:generateContent")
    config = req["body"]["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"]["properties"]["results"]["items"]["properties"]["output"]["nullable"] is True
    assert SYSTEM in json.dumps(req["body"]["systemInstruction"])


def test_unreachable_provider_names_provider_not_values(monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-local")
    client = make_client("oa", OpenAIProvider(base_url="http://127.0.0.1:9/v1", api_key_env="TEST_OPENAI_KEY", timeout_seconds=2))
    with pytest.raises(AIProviderError, match="ai.providers.oa: chat completion failed") as info:
        client.complete(SYSTEM, user_message("StudyDescription", VOCAB, None, ["SECRET VALUE"]), answer_schema(VOCAB))
    assert "SECRET" not in str(info.value)
