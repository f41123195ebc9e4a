"""The Docker files at the root build and wire what the README promises.

No Docker engine runs here, so this checks what can be checked without one:
every path a `COPY` names exists in the build context and is not excluded by
`.dockerignore`; the image runs unprivileged with a health check and keeps its
state on a volume; the compose files parse, and their ports, environment
variables and mounted files match the README, the image and each other.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.dockerfile import IgnoreRules
from tests.deploy.dockerfile import instructions as parse_dockerfile

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
EXAMPLE_COMPOSE = ROOT / "examples" / "docker-compose.yml"
PROMETHEUS = ROOT / "examples" / "prometheus.yml"
README = (ROOT / "README.md").read_text()


def instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    return [f"{i.keyword} {i.arguments}" for i in parse_dockerfile(DOCKERFILE.read_text())]


def dockerignore_keeps(path: str) -> bool:
    """Whether `.dockerignore` sends `path` (or, for a directory, anything below it)."""
    rules = IgnoreRules((ROOT / ".dockerignore").read_text())
    return not rules.excluded(path) or rules.may_send_below(path)


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), path
    return document


def test_every_copied_path_exists_and_reaches_the_build_context() -> None:
    copies = [line.split()[1:-1] for line in instructions() if line.startswith("COPY ")]
    assert copies, "the Dockerfile copies nothing"
    for sources in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such path"
            assert dockerignore_keeps(source), f"COPY {source}: excluded by .dockerignore"


def test_image_runs_the_registry_unprivileged_with_a_healthcheck_and_a_state_volume() -> None:
    lines = instructions()
    assert lines[0].startswith("FROM python:3")
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    assert "EXPOSE 3004" in lines
    healthchecks = [line for line in lines if line.startswith("HEALTHCHECK")]
    assert healthchecks and "/health" in healthchecks[-1]
    assert "SERVICE_DISCOVERY_PORT" in healthchecks[-1], "the health check ignores the port setting"
    assert lines[-1] == 'CMD ["service-discovery", "serve"]'
    env = " ".join(line for line in lines if line.startswith("ENV "))
    state_file = re.search(r"SERVICE_DISCOVERY_STATE_FILE=(\S+)", env)
    assert state_file is not None, "the image keeps no state file"
    volumes = [line for line in lines if line.startswith("VOLUME ")]
    assert any(str(Path(state_file.group(1)).parent) in line for line in volumes), volumes
    for name in re.findall(r"(SERVICE_DISCOVERY_\w+)=", env):
        assert f"`{name}`" in README, f"{name} is set by the image but not in the README"


def test_root_compose_runs_registry_example_and_prometheus() -> None:
    compose = load(COMPOSE)
    services = compose["services"]
    assert {"service-discovery", "prometheus"} <= set(services)
    assert any(name.endswith("-example") for name in services), "no example service"
    registry = services["service-discovery"]
    assert registry["build"] == "."
    assert "3004:3004" in registry["ports"]
    for name in registry["environment"]:
        assert f"`{name}`" in README, f"compose sets {name}, which the README does not document"
    volume = registry["volumes"][0].split(":")
    assert volume[0] in compose["volumes"]
    assert volume[1] == "/var/lib/service-discovery"
    for service in services.values():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"compose mounts {source}: no such file"


def test_example_compose_includes_the_root_one_and_builds_the_same_image() -> None:
    example = load(EXAMPLE_COMPOSE)
    included = [(EXAMPLE_COMPOSE.parent / path).resolve() for path in example["include"]]
    assert COMPOSE.resolve() in included
    for service in example["services"].values():
        assert (EXAMPLE_COMPOSE.parent / service["build"]).resolve() == ROOT
        assert service["image"] == load(COMPOSE)["services"]["service-discovery"]["image"]


def test_prometheus_reads_the_registry_with_the_read_token() -> None:
    prometheus = load(PROMETHEUS)
    registry_env = load(COMPOSE)["services"]["service-discovery"]["environment"]
    sd_jobs = [job for job in prometheus["scrape_configs"] if "http_sd_configs" in job]
    assert sd_jobs, "no http_sd job"
    for job in sd_jobs:
        for config in job["http_sd_configs"]:
            assert config["url"] == "http://service-discovery:3004/v1/discovery/prometheus"
            credentials = config["authorization"]["credentials"]
            assert credentials == registry_env["SERVICE_DISCOVERY_READ_TOKEN"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-cluster.yml"])
def test_promtool_accepts_the_prometheus_config(config: str) -> None:
    check = subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(ROOT / "examples" / config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr


CLUSTER_COMPOSE = ROOT / "docker-compose.cluster.yml"


def test_cluster_compose_runs_three_etcd_members_and_three_nodes_of_both_frontends() -> None:
    services = load(CLUSTER_COMPOSE)["services"]
    members = {name: s for name, s in services.items() if name.startswith("etcd-")}
    nodes = {name: s for name, s in services.items() if name.startswith("registry-")}
    assert len(members) == 3 and len(nodes) == 3
    initial = {m["environment"]["ETCD_INITIAL_CLUSTER"] for m in members.values()}
    assert len(initial) == 1, "members disagree on the initial cluster"
    peers = dict(entry.split("=", 1) for entry in initial.pop().split(","))
    for name, member in members.items():
        assert member["environment"]["ETCD_NAME"] == name
        assert peers[name] == member["environment"]["ETCD_INITIAL_ADVERTISE_PEER_URLS"]
    client_urls = {m["environment"]["ETCD_ADVERTISE_CLIENT_URLS"] for m in members.values()}
    frontends = set()
    for node in nodes.values():
        env = node["environment"]
        assert set(env["SERVICE_DISCOVERY_ETCD_ENDPOINTS"].split(",")) == client_urls
        assert node["build"] == "."
        frontends.add(node["command"][node["command"].index("--frontend") + 1])
        for name in env:
            assert f"`{name}`" in README, f"the cluster compose sets {name}, undocumented"
    assert frontends == {"quart", "trio"}
    watch_timeouts = {
        float(n["environment"]["SERVICE_DISCOVERY_ETCD_WATCH_TIMEOUT_SECONDS"])
        for n in nodes.values()
    }
    assert watch_timeouts == {30.0}, "set above the members' progress-notify interval"
    node_ids = {n["environment"]["SERVICE_DISCOVERY_NODE_ID"] for n in nodes.values()}
    assert len(node_ids) == 3
    published = [n["ports"][0].split(":")[0] for n in nodes.values()]
    assert len(set(published)) == 3


def test_cluster_prometheus_scrapes_every_node() -> None:
    compose = load(CLUSTER_COMPOSE)
    mount = compose["services"]["prometheus"]["volumes"][0].split(":")[0]
    config = load(ROOT / mount)
    own = next(job for job in config["scrape_configs"] if job["job_name"] == "service-discovery")
    targets = set(own["static_configs"][0]["targets"])
    nodes = {name for name in compose["services"] if name.startswith("registry-")}
    assert targets == {f"{name}:3004" for name in nodes}


def test_cluster_etcd_members_keep_their_data_on_the_volume_and_notify_progress() -> None:
    """etcd's default data directory (`<name>.etcd`) is not the mounted one: a member's
    data would live in the container and go with it. The progress notifications let a
    node tell a quiet watch from a dead one within its watch timeout (docs/cluster.md)."""
    services = load(CLUSTER_COMPOSE)["services"]
    members = {name: s for name, s in services.items() if name.startswith("etcd-")}
    for name, member in members.items():
        env = member["environment"]
        mounted = {mount.split(":")[1] for mount in member["volumes"]}
        assert env["ETCD_DATA_DIR"] in mounted, f"{name}: its data directory is not a volume"
        assert env["ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL"] == "5s", name
    assert "--experimental-watch-progress-notify-interval=5s" in README


def test_the_readme_cluster_recipe_copied_literally_gives_every_node_one_secret() -> None:
    """Run the recipe in bash with `etcd` and `service-discovery` as stubs that say
    which secret a node would start with."""
    section = README[README.index("### Running a cluster") :]
    start = section.index("```\n") + 4
    recipe = section[start : section.index("\n```", start)]
    stubs = 'etcd() { :; }\nservice-discovery() { echo "node:$SERVICE_DISCOVERY_SECRET"; }\n'
    run = subprocess.run(
        ["bash", "-c", stubs + recipe + "\nwait\n"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    secrets = [line.removeprefix("node:") for line in run.stdout.splitlines() if "node:" in line]
    assert len(secrets) == recipe.count("service-discovery serve") >= 2, run.stdout
    assert len(set(secrets)) == 1 and len(secrets[0]) >= 32, secrets
