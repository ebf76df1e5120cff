"""register_routes: a plugin's endpoints, jobs and page module, served as the docs promise."""

from __future__ import annotations

import sys
import time

import pytest
import rag_core
import rag_core.plugins

from tests.core.fakes import FakePlugins
from tests.server.conftest import assert_error

DEMO = '''
import threading
from pathlib import Path

from rag_core import Endpoint, HTTPError, PageModule, get_jobs, hookimpl
from rag_core.server import Fields, read_json
from rag_core.server.api import job_accepted
from starlette.responses import JSONResponse

GATE = threading.Event()  # the test opens it to let a job go on after its first step
OUT = {}


def make_render(steps, out):
    def render(ctx):
        part = out.with_name(f".{out.name}.part")
        try:
            with part.open("w") as f:
                for i in range(steps):
                    f.write("x")
                    ctx.progress(i + 1, steps)
                    if i == 0:
                        GATE.wait(10)
            part.rename(out)
        finally:
            part.unlink(missing_ok=True)
        return {"path": str(out), "steps": steps}
    return render


async def render(request):
    body = Fields(await read_json(request), allowed=("steps", "name"))
    steps = body.integer("steps", 3, minimum=1, maximum=100)
    out = OUT["dir"] / body.text("name", "track.txt")
    job = get_jobs().submit(make_render(steps, out), kind="demo", key="demo-model",
                            info={"steps": steps})
    return job_accepted(job)


async def item(request):
    name = request.path_params["id"]
    if name == "missing":
        raise HTTPError(404, f"No item '{name}'.", "id")
    if name == "bad":
        raise ValueError("'id' must not be 'bad'.")
    if name == "boom":
        raise RuntimeError("secret internals /home/me/.cache")
    return JSONResponse({"id": name})


@hookimpl
def register_routes(register):
    register(Endpoint("/api/demo/render", render, methods=("POST",)))
    register(Endpoint("/api/demo/items/{id}", item))
    register(PageModule(Path(__file__).with_name("demo_page.js")))
'''


@pytest.fixture
def demo(fake_plugins_root, tmp_path):
    """The demo plugin installed and loaded; its module (GATE, OUT) is returned."""
    plugins, root = fake_plugins_root
    (root / "demo_page.js").write_text("export function mount(page) {}\n")
    module = plugins.add("demo", DEMO)
    out = tmp_path / "out"
    out.mkdir()
    sys.modules.setdefault(module, __import__(module))
    sys.modules[module].OUT["dir"] = out
    yield sys.modules[module]
    sys.modules[module].GATE.set()


@pytest.fixture
def fake_plugins_root(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    plugins = FakePlugins(root, monkeypatch)
    yield plugins, root
    plugins.cleanup()


def wait_for(client, job_id: str, *statuses: str) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached {statuses}: {job}")


def test_health_lists_the_plugin_its_routes_and_page_module(demo, client):
    health = client.get("/health").json()
    assert "demo" in health["features"] and "chat" in health["features"]
    assert health["page_modules"] == ["/plugins/demo/demo_page.js"]
    (plugin,) = health["plugins"]
    assert plugin["name"] == "demo" and plugin["routes"] == [
        "POST /api/demo/render", "GET /api/demo/items/{id}", "page /plugins/demo/demo_page.js"]
    module = client.get("/plugins/demo/demo_page.js")
    assert module.status_code == 200 and "export function mount" in module.text
    assert module.headers["content-type"].startswith("text/javascript")
    assert_error(client.get("/plugins/demo/other.js"), 404)


def test_plugin_endpoints_and_their_errors(demo, make_client):
    client = make_client(raise_server_exceptions=False)
    assert client.get("/api/demo/items/abc").json() == {"id": "abc"}
    assert_error(client.get("/api/demo/items/missing"), 404, "id", "no item")
    assert_error(client.get("/api/demo/items/bad"), 400, None, "must not be 'bad'")
    error = assert_error(client.get("/api/demo/items/boom"), 500, None, "server log")
    assert "secret" not in error["message"]
    assert_error(client.post("/api/demo/items/abc"), 405, None, "not allowed")
    assert_error(client.post("/api/demo/render", json={"steps": 0}), 400, "steps", "at least 1")


def test_plugin_jobs_queue_per_model_and_cancel_without_partial_output(demo, client):
    out = demo.OUT["dir"]
    first = client.post("/api/demo/render", json={"steps": 3, "name": "a.txt"})
    assert first.status_code == 202 and first.headers["location"] == (
        f"/api/jobs/{first.json()['id']}")
    second = client.post("/api/demo/render", json={"steps": 3, "name": "b.txt"}).json()
    third = client.post("/api/demo/render", json={"steps": 2, "name": "c.txt"}).json()
    running = wait_for(client, first.json()["id"], "running")
    assert running["progress"] == pytest.approx(1 / 3, abs=1e-3)
    assert client.get(f"/api/jobs/{second['id']}").json()["status"] == "queued"

    cancel_queued = client.delete(f"/api/jobs/{second['id']}")
    assert cancel_queued.status_code == 200 and cancel_queued.json()["status"] == "cancelled"
    cancel_running = client.delete(f"/api/jobs/{first.json()['id']}")
    assert cancel_running.status_code == 202
    assert cancel_running.json()["cancel_requested"] is True
    demo.GATE.set()
    assert wait_for(client, first.json()["id"], "cancelled", "done")["status"] == "cancelled"
    done = wait_for(client, third["id"], "done", "failed", "cancelled")
    assert done["status"] == "done" and done["result"] == {"path": str(out / "c.txt"),
                                                           "steps": 2}
    assert sorted(p.name for p in out.iterdir()) == ["c.txt"]  # nothing partial

    listed = client.get("/api/jobs", params={"kind": "demo"}).json()["jobs"]
    assert [j["id"] for j in listed] == [third["id"], second["id"], first.json()["id"]]
    assert_error(client.delete(f"/api/jobs/{third['id']}"), 409, None, "already finished")
    assert_error(client.get("/api/jobs/0123456789abcdef"), 404, None, "no job with id")


def test_a_page_module_must_be_a_js_file(fake_plugins_root):
    plugins, _ = fake_plugins_root
    plugins.add("nojs", "from pathlib import Path\nfrom rag_core import PageModule, hookimpl\n"
                        "@hookimpl\ndef register_routes(register):\n"
                        "    register(PageModule(Path('missing.js')))\n")
    record = rag_core.get_host().records["nojs"]
    assert record.status == "broken" and "existing .js file" in record.error


PLUGIN = '''
from rag_core import Endpoint, hookimpl

async def handler(request):
    pass

@hookimpl
def register_routes(register):
    register({item})
'''


@pytest.mark.parametrize(("item", "words"), [
    ('Endpoint("/music", handler)', "must start with /api/"),
    ('Endpoint("/api/../etc", handler)', "must start with /api/"),
    ('Endpoint("/api/jobs/{id}/x", handler)', "belongs to rag_core"),
    ('Endpoint("/api/search", handler, methods=("POST",))', "belongs to rag_core"),
    ('Endpoint("/api/x", handler, methods=("FETCH",))', "use some of GET"),
    ('Endpoint("/api/x", "not callable")', "callable handler"),
    ('("/api/x", handler)', "takes a rag_core.Endpoint or a rag_core.PageModule"),
])  # fmt: skip
def test_bad_registrations_break_only_that_plugin(fake_plugins_root, item, words):
    plugins, _ = fake_plugins_root
    plugins.add("bad", PLUGIN.format(item=item))
    plugins.add("good", PLUGIN.format(item='Endpoint("/api/good", handler)'))
    host = rag_core.get_host()
    assert host.records["bad"].status == "broken" and words in host.records["bad"].error
    assert host.records["good"].status == "enabled"
    assert [e.path for e in host.routes.endpoints()] == ["/api/good"]


def test_two_plugins_cannot_serve_one_endpoint(fake_plugins_root):
    plugins, _ = fake_plugins_root
    plugins.add("alpha", PLUGIN.format(item='Endpoint("/api/x", handler, methods=("GET", "POST"))'))
    plugins.add("beta", PLUGIN.format(item='Endpoint("/api/x", handler, methods=("POST",))'))
    host = rag_core.get_host()
    assert host.records["beta"].status == "broken"
    assert "Endpoint 'POST /api/x' is registered by both plugin 'alpha' and plugin 'beta'" in (
        host.records["beta"].error)
    assert host.records["alpha"].routes == ["GET /api/x", "POST /api/x"]


def test_plugins_list_shows_routes(demo):
    from click.testing import CliRunner
    from rag_core.cli import cli

    result = CliRunner().invoke(cli, ["plugins", "list"])
    assert "  routes: POST /api/demo/render, GET /api/demo/items/{id}, page " in result.output
    rag_core.plugins.reset()
