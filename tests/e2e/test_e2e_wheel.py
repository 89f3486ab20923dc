"""The wheel is the product. Built from this tree as ``python -m build`` builds it (the sdist,
then the wheel from the sdist), it is installed in fresh virtualenvs outside the repository:
without extras ``serve`` says which extra to install while the examples are there already; with
``[all]`` ``serve`` (with a token made by ``backpackflow tokens create``) seeds the demo
workflows from the installed examples and runs them, and the main job runs from a copied
example. The sdist holds what its own tests need."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import time
import venv
import zipfile
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("agent", "csv-report", "flowtrace", "research")
#: The research example's nodes, in the order they run.
STEPS = ["research", "summarize", "decide", "deep"]


def fresh_env(home: Path) -> dict[str, str]:
    """As on a new machine: no API keys, no backpackflow settings, nothing of this checkout."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith("_API_KEY")
        and not key.startswith(("BACKPACKFLOW_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(HOME=str(home), NO_COLOR="1", PYTHONIOENCODING="utf-8")
    return env


def sh(*command: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=fresh_env(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    built = sh(sys.executable, "-m", "build", "--outdir", out, ROOT, cwd=out)
    assert built.returncode == 0, built.stdout + built.stderr
    (sdist,) = out.glob("backpackflow-*.tar.gz")
    (wheel,) = out.glob("backpackflow-*.whl")
    return {"sdist": sdist, "wheel": wheel}


def install(folder: Path, requirement: str) -> Path:
    """A new virtualenv in ``folder`` with ``requirement`` installed; its bin directory."""
    venv.create(folder / "venv", with_pip=True)
    bin_dir = folder / "venv" / "bin"
    done = sh(bin_dir / "python", "-m", "pip", "install", "--quiet", requirement, cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    return bin_dir


def test_the_sdist_holds_what_its_tests_need(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for needed in (
        "LICENSE",
        "tox.ini",
        "tools/sdist_tree.py",
        ".pre-commit-hooks.yaml",
        "tests/conftest.py",
        "tests/e2e/test_e2e_wheel.py",
        "schemas/flow/2.0.0.json",
        "examples/research/notes.md",
        "docs/service.md",
        "bench/service_load.py",
        "contrib/backpackflow-example-nodes/pyproject.toml",
    ):
        assert needed in names, needed
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)


def test_the_wheel_ships_the_examples_the_schemas_and_the_license(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
    for folder in (ROOT / "examples").iterdir():
        for path in folder.rglob("*") if folder.is_dir() and folder.name in EXAMPLES else ():
            if path.is_file():
                assert f"backpackflow_examples/{path.relative_to(ROOT / 'examples')}" in names
    assert "backpackflow_examples/plugin.py" in names
    assert "backpackflow/schemas/flow/2.0.0.json" in names
    assert "backpackflow_server/static/index.html" in names
    # the web UI's bundle: every asset the page loads (Python users never need Node)
    page = (ROOT / "plugins" / "backpackflow_server" / "static" / "index.html").read_text()
    assets = re.findall(r'"/assets/([^"]+)"', page)
    assert assets
    for asset in assets:
        assert f"backpackflow_server/static/assets/{asset}" in names
    assert not any("/ui/" in name or "node_modules" in name for name in names)
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert not any("__pycache__" in name for name in names)


def test_a_bare_install_has_the_examples_and_says_which_extra_serve_needs(
    dist: dict[str, Path], tmp_path: Path
) -> None:
    bin_dir = install(tmp_path, str(dist["wheel"]))
    listed = sh(bin_dir / "backpackflow", "examples", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == list(EXAMPLES)
    serve = sh(bin_dir / "backpackflow", "serve", cwd=tmp_path)
    assert serve.returncode == 2
    assert "unknown command 'serve'" in serve.stderr
    assert "server (pip install 'backpackflow[server]')" in serve.stderr
    assert "Traceback" not in serve.stderr


@pytest.fixture(scope="module")
def full(dist: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``backpackflow[all]`` from the wheel, in a virtualenv of its own; its bin directory."""
    return install(tmp_path_factory.mktemp("full"), f"backpackflow[all] @ {dist['wheel'].as_uri()}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_from_the_wheel_seeds_the_demo_workflows_and_runs_them(
    full: Path, tmp_path: Path
) -> None:
    made = sh(full / "backpackflow", "tokens", "create", "--role", "runner", "--json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["token"]
    port = free_port()
    process = subprocess.Popen(
        [str(full / "backpackflow"), "serve", "--port", str(port), "--log-level", "warning"],
        cwd=tmp_path,
        env=fresh_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None and time.monotonic() < deadline, "no service"
                time.sleep(0.2)
            workflows = {w["name"]: w for w in client.get("/api/workflows").json()}
            assert sorted(workflows) == sorted(EXAMPLES)
            run = client.post(
                f"/api/workflows/{workflows['research']['id']}/runs", json={"input_vars": {}}
            ).json()
            while run["status"] in ("queued", "running"):
                assert time.monotonic() < deadline + 60, run
                time.sleep(0.2)
                run = client.get(f"/api/runs/{run['id']}").json()
            # it read notes.md from the installed example's folder and summarized it
            assert run["status"] == "succeeded", run
            assert [step["node_id"] for step in run["steps"]] == STEPS
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert "Traceback" not in output, output


def test_the_main_job_runs_from_a_copied_example(full: Path, tmp_path: Path) -> None:
    copied = sh(full / "backpackflow", "examples", "copy", "research", "job", cwd=tmp_path)
    assert copied.returncode == 0, copied.stderr
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == ["flow.json", "notes.md"]
    for attempt in ("first", "cached"):
        done = sh(full / "backpackflow", "run", "job/flow.json", "--json", cwd=tmp_path)
        assert done.returncode == 0, (attempt, done.stderr)
        summary = json.loads(done.stdout)
        assert summary["status"] == "succeeded"
        assert [s["node_id"] for s in summary["steps"]] == STEPS
    assert summary["totals"]["cost"] == "0"  # the second run: every LLM step from the cache
