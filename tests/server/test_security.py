"""Who may use the server: bind address, token, Host names, body size and content type."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from rag_core.cli import cli
from rag_core.errors import RagError
from rag_core.server.security import check_bind, host_name, is_loopback

from tests.server.conftest import assert_error

TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_loopback_needs_no_token(host):
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org"])
def test_any_other_address_needs_a_long_token(host):
    assert not is_loopback(host)
    with pytest.raises(RagError, match="without a token"):
        check_bind(host, None)
    with pytest.raises(RagError, match="too short"):
        check_bind(host, "short")
    check_bind(host, TOKEN)


def test_serve_refuses_a_public_address_without_token_and_says_how_to_fix_it(monkeypatch):
    monkeypatch.delenv("MLX_RAG_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Refusing to listen on 0.0.0.0 without a token" in result.output
    assert "--token" in result.output and "127.0.0.1" in result.output


def test_serve_reports_a_port_in_use(monkeypatch):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = str(taken.getsockname()[1])
        result = CliRunner().invoke(cli, ["serve", "--port", port])
    finally:
        taken.close()
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"Cannot listen on 127.0.0.1:{port}" in result.output


def test_with_a_token_every_endpoint_but_health_and_the_page_needs_it(make_client):
    client = make_client(token=TOKEN)
    assert client.get("/health").json()["auth"] is True
    assert client.get("/").status_code == 200
    assert client.get("/static/app.js").status_code == 200
    for method, path in [("GET", "/v1/models"), ("POST", "/api/search"), ("GET", "/api/jobs"),
                         ("GET", "/api/jobs/abc"), ("GET", "/no/such/route")]:
        response = client.request(method, path)
        error = assert_error(response, 401, "Authorization", "token is missing")
        assert response.headers["www-authenticate"] == "Bearer", error
        wrong = client.request(method, path, headers={"Authorization": "Bearer nope"})
        assert_error(wrong, 401, "Authorization", "token is not valid")
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/api/jobs", headers=good).json() == {"jobs": []}
    assert client.get("/v1/models", headers=good).status_code == 200
    assert_error(client.get("/no/such/route", headers=good), 404, None, "no endpoint")
    assert_error(client.get("/api/jobs", headers={"Authorization": TOKEN}), 401, "Authorization")


def test_without_a_token_health_says_so(client):
    assert client.get("/health").json()["auth"] is False


def test_only_loopback_host_names_are_answered_without_a_token(client, make_client):
    for host in ("127.0.0.1:8321", "localhost", "[::1]:8321"):
        assert client.get("/health", headers={"Host": host}).status_code == 200
    rebound = client.get("/health", headers={"Host": "attacker.example:8321"})
    assert_error(rebound, 400, "Host", "answers only requests for")
    open_server = make_client(token=TOKEN, allowed_hosts=None)
    assert open_server.get("/health", headers={"Host": "server.lan"}).status_code == 200


def test_host_name_parsing():
    assert host_name("localhost:8321") == "localhost"
    assert host_name("[::1]:80") == "::1" and host_name("::1") == "::1"
    assert host_name("example.org") == "example.org"


def test_bodies_over_the_limit_get_413(make_client):
    client = make_client(max_body_bytes=1000)
    big = {"query": "x" * 2000}
    assert_error(client.post("/api/search", json=big), 413, "body", "larger than the limit")

    def chunks():  # no Content-Length: the limit applies while reading
        for _ in range(10):
            yield b" " * 500

    response = client.post("/api/search", content=chunks(),
                           headers={"Content-Type": "application/json"})
    assert_error(response, 413, "body", "1000 bytes")


def test_bodies_must_be_json(client):
    for kind in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": kind} if kind else {}
        response = client.post("/api/search", content=b'{"query": "bread"}', headers=headers)
        assert_error(response, 415, "Content-Type", "application/json")


def test_the_page_is_served_with_a_strict_content_security_policy(client):
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/static/app.js">' in page.text
    for name in ("app.js", "api.js", "ask.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert_error(client.get("/static/../security.py"), 404)
