"""deploy/ agrees with the code: every file parses, and names, roles, paths and ports match.

The three profiles in ``deploy/`` (Docker Compose, Kubernetes, the systemd edge
box) are turned into the medhub processes they start: the arguments given to
the ``medhub`` command and the environment it gets (compose interpolation from
``.env.example``, Kubernetes ConfigMap generators and Secret keys from
``secrets.env.example``, systemd ``EnvironmentFile``\\ s). Those processes must
parse with :func:`medhub.cli.parser`, build a valid :class:`medhub.config.Settings`,
and agree with each other. Every ``MEDHUB_*`` name anywhere in ``deploy/`` must be
one the code reads: pydantic-settings ignores unknown ones (``extra="ignore"``),
so a misspelt setting would otherwise be silently without effect.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from fastapi.testclient import TestClient

from medhub.api.app import create_app, create_ops_app
from medhub.api.deps import ApiContext
from medhub.cli import parser
from medhub.config import HttpSettings, MllpSettings
from medhub.fhir.sql_store import SqlResourceStore
from medhub.serve import parse_roles
from medhub.wiring import ROLES
from medhub.wiring_security import signing_secret
from tests.deploy_profiles import (
    DEPLOY,
    PROBE_PATHS,
    ROOT,
    Process,
    check_syntax,
    compose,
    deploy_files,
    edge_processes,
    edge_unit,
    kubernetes_documents,
    load_yaml,
    processes,
    read_dockerfile,
    read_lines,
    read_mosquitto_conf,
    roles_of,
    serving,
    settings_from,
    shared_settings,
    written_paths,
)
from tests.setting_names import known_names, unknown_names

# -- the names the code knows ---------------------------------------------------------


def test_known_names_come_from_the_settings_and_the_environment_reads() -> None:
    known = known_names()
    for name in (
        "MEDHUB_DATABASE_URL",
        "MEDHUB_JWT_SECRET",
        "MEDHUB_HTTP_PORT",
        "MEDHUB_HTTP__PORT",
        "MEDHUB_MQTT__CLIENT_ID",
        "MEDHUB_HL7_DESTINATIONS",
        "MEDHUB_CONFIG_FILE",
    ):
        assert name in known
    assert "MEDHUB_HL7_DESTINATIONS__NAME" not in known  # a list is JSON in one variable


def test_an_unknown_name_is_reported() -> None:
    text = "MEDHUB_MQTT__CLIENT_ID=a\nMEDHUB_NOPE=1\n# MEDHUB_MQTT__NOPE too\n"
    assert unknown_names(text, known_names()) == {"MEDHUB_NOPE", "MEDHUB_MQTT__NOPE"}


def test_derived_names_are_the_ones_pydantic_settings_reads() -> None:
    settings = settings_from(
        {
            "MEDHUB_MQTT__CLIENT_ID": "medhub-devices-7",
            "MEDHUB_HTTP_PORT": "9090",
            "MEDHUB_JWT_SECRET": "x" * 32,
            "MEDHUB_HL7_DESTINATIONS": '[{"name": "lis", "host": "h", "port": 1}]',
        }
    )
    assert settings.mqtt.client_id == "medhub-devices-7"
    assert settings.http.port == 9090
    assert settings.jwt_secret is not None
    assert [d.name for d in settings.hl7_destinations] == ["lis"]


def test_every_medhub_name_in_deploy_is_a_setting_the_code_knows() -> None:
    unknown = {
        str(path.relative_to(ROOT)): sorted(unknown_names(path.read_text(), known_names()))
        for path in deploy_files()
    }
    assert {path: names for path, names in unknown.items() if names} == {}


@pytest.mark.parametrize("path", deploy_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_file_parses(path: Path) -> None:
    check_syntax(path)


def test_real_secret_files_are_ignored_by_git() -> None:
    ignored = set(read_lines(DEPLOY / ".gitignore"))
    examples = [p for p in deploy_files() if p.name.endswith(".example")]
    assert examples
    for example in examples:
        real = example.with_name(example.name.removesuffix(".example"))
        assert str(PurePosixPath(real.relative_to(DEPLOY))) in ignored, real


# -- the processes agree with the code and with each other ------------------------------


def test_each_profile_runs_every_role_and_a_migration() -> None:
    for profile in ("compose", "kubernetes", "edge"):
        roles: set[str] = set()
        for process in serving(profile):
            roles |= roles_of(process)
        assert roles == set(ROLES), profile
        assert any(p.command == "migrate" for p in processes() if p.profile == profile), profile


@pytest.mark.parametrize("process", processes(), ids=str)
def test_the_command_line_is_one_medhub_accepts(process: Process) -> None:
    try:
        args = parser().parse_args(process.args)
    except SystemExit:
        pytest.fail(f"{process}: medhub rejects {process.args}")
    assert args.command in ("serve", "migrate"), process
    if args.command == "serve":
        parse_roles(args.role)  # raises on an unknown role


@pytest.mark.parametrize("process", processes(), ids=str)
def test_the_environment_builds_valid_settings(process: Process) -> None:
    settings = settings_from(process.env)
    assert "MEDHUB_DATABASE_URL" in process.env, process
    database = settings.database_url.get_secret_value()
    # Samples in PostgreSQL everywhere: compose and Kubernetes, and the edge box's
    # central store (a SQLite default would keep them in the container or on the box).
    assert settings.sample_store_url().startswith("postgresql"), process
    if process.profile != "edge":
        assert not database.startswith("sqlite"), f"{process}: a server database"
    if process.command == "serve":
        assert settings.auto_migrate is False, f"{process}: migrations run once, before"
        if not database.startswith("sqlite"):
            assert "MEDHUB_JWT_SECRET" in process.env, f"{process}: every replica signs alike"
            signing_secret(settings)  # long enough


@pytest.mark.parametrize("profile", ["compose", "kubernetes", "edge"])
def test_all_processes_of_a_profile_share_databases_secret_broker_and_partners(
    profile: str,
) -> None:
    roles = serving(profile)
    first = shared_settings(settings_from(roles[0].env))
    for process in roles[1:]:
        assert shared_settings(settings_from(process.env)) == first, (
            f"{process} differs from {roles[0]}"
        )
    for process in (p for p in processes() if p.profile == profile and p.command == "migrate"):
        settings = settings_from(process.env)
        assert settings.database_url.get_secret_value() == first["database_url"], process
        assert settings.sample_store_url() == first["sample_store"], process


def test_device_consumers_have_their_own_session_and_a_persistent_spool() -> None:
    for profile in ("compose", "kubernetes", "edge"):
        consumers = [p for p in serving(profile) if "devices" in roles_of(p)]
        client_ids = [settings_from(p.env).mqtt.client_id for p in consumers]
        assert len(set(client_ids)) == len(client_ids), profile
        for process in consumers:
            settings = settings_from(process.env)
            if len(consumers) > 1 or process.replicas > 1:
                assert settings.mqtt.shared_group, f"{process}: replicas split one stream"
            if process.replicas > 1:
                # One id per replica, stable across restarts: the pod name of a StatefulSet.
                assert process.raw["kind"] == "StatefulSet", process
                assert process.env["MEDHUB_MQTT__CLIENT_ID"] == f"{process.name}-0", process
            spool = settings.devices.spool_path
            assert spool is not None and spool.is_absolute(), process
            assert any(spool.is_relative_to(d) for d in process.persistent), (
                f"{process}: the spool holds acknowledged samples; it must outlive the process"
            )


@pytest.mark.parametrize("process", processes(), ids=str)
def test_every_file_a_process_writes_is_on_a_writable_mount(process: Process) -> None:
    for path in written_paths(process):
        assert any(path.is_relative_to(d) for d in process.writable), (
            f"{process}: {path} is on the read-only root filesystem"
        )


def test_probes_are_paths_every_role_serves_on_its_http_port(
    sqlite_store: SqlResourceStore,
) -> None:
    context = ApiContext(store=sqlite_store)
    for app in (create_app(context), create_ops_app(context)):  # api role, the other roles
        with TestClient(app) as client:
            for path in PROBE_PATHS:
                assert client.get(path).status_code == 200, path
    for process in serving():
        settings = settings_from(process.env)
        assert process.probes or process.profile == "edge", f"{process}: no probe"
        for path, port in process.probes:
            assert path in PROBE_PATHS, f"{process}: {path} is not a probe path"
            number = process.ports[port] if isinstance(port, str) else port
            assert number == settings.http.port, f"{process}: probes {number}"


def test_published_ports_are_the_configured_ones() -> None:
    for process in processes():
        settings = settings_from(process.env)
        expected = {"http": settings.http.port, "mllp": settings.mllp.port}
        for name, number in process.ports.items():
            if process.profile == "kubernetes":
                assert number == expected[name], f"{process}: port {name}"
            else:
                assert number in expected.values(), f"{process}: port {number}"
        if process.profile == "compose" and roles_of(process) & {"api", "mllp"}:
            assert process.ports, f"{process}: publishes nothing"


def test_kubernetes_workloads_are_probed_sized_and_autoscaled() -> None:
    documents = kubernetes_documents()
    scaled = {
        d["spec"]["scaleTargetRef"]["name"]
        for d in documents
        if d["kind"] == "HorizontalPodAutoscaler" and d["apiVersion"] == "autoscaling/v2"
    }
    stateless = {"api", "mllp", "worker"}
    for process in serving("kubernetes"):
        container = process.raw["container"]
        for probe in ("livenessProbe", "readinessProbe"):
            assert probe in container, f"{process}: {probe}"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), process
        assert "memory" in resources["limits"], process
        roles = roles_of(process)
        assert (process.name in scaled) == (roles <= stateless), f"{process}: autoscaling"
        assert process.raw["kind"] == ("Deployment" if roles <= stateless else "StatefulSet")


def test_kubernetes_services_reach_declared_container_ports() -> None:
    documents = kubernetes_documents()
    pods = [
        (p.raw["pod"]["metadata"]["labels"], p) for p in processes() if p.profile == "kubernetes"
    ]
    for service in (d for d in documents if d["kind"] == "Service"):
        selector = service["spec"]["selector"]
        targets = [p for labels, p in pods if selector.items() <= labels.items()]
        assert targets, f"Service {service['metadata']['name']} selects no medhub pod"
        for port in service["spec"]["ports"]:
            for process in targets:
                number = process.ports[port["targetPort"]]
                assert port["port"] == number, f"{service['metadata']['name']}: port {port}"


def test_kustomizations_apply_every_manifest() -> None:
    for path in (DEPLOY / "kubernetes").rglob("kustomization.yaml"):
        [kustomization] = load_yaml(path)
        manifests = {p.name for p in path.parent.glob("*.yaml")} - {"kustomization.yaml"}
        assert set(kustomization["resources"]) == manifests, path
        assert {i["name"] for i in kustomization["images"]} == {"medhub"}, path
    tags = {
        (i["newName"], i["newTag"])
        for path in (DEPLOY / "kubernetes").rglob("kustomization.yaml")
        for i in load_yaml(path)[0]["images"]
    }
    assert len(tags) == 1, f"the migration and the roles run different images: {tags}"


def test_compose_dependencies_wait_for_health_and_the_migration() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for target, condition in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            else:
                assert condition["condition"] == "service_completed_successfully"
                assert services[target].get("restart") == "no", target
    for process in serving("compose"):
        assert process.raw["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_mosquitto_is_configured_as_medhub_expects() -> None:
    conf = read_mosquitto_conf(DEPLOY / "mosquitto.conf")
    assert conf["set_tcp_nodelay"] == ["true"]  # bench/RESULTS.md section 9
    assert conf["listener"] == ["1883"]
    mosquitto = compose()["services"]["mosquitto"]
    mounts = [str(v).split(":")[1] for v in mosquitto["volumes"]]
    assert "/mosquitto/config/mosquitto.conf" in mounts
    [password_file] = conf["password_file"]
    assert any(password_file.startswith(m + "/") for m in mounts), password_file
    assert any(str(p).endswith(":1883") for p in mosquitto["ports"])
    for process in serving("compose"):
        url = settings_from(process.env).mqtt_url
        assert url is not None and url.get_secret_value().endswith(":1883"), process


def test_the_image_runs_medhub_on_the_default_ports() -> None:
    instructions = read_dockerfile(DEPLOY / "Dockerfile")
    assert instructions[0] == ("FROM", "python:3.11-slim AS build")
    [expose] = [rest for word, rest in instructions if word == "EXPOSE"]
    assert {int(p) for p in expose.split()} == {HttpSettings().port, MllpSettings().port}
    assert ("ENTRYPOINT", '["medhub"]') in instructions
    assert any(word == "USER" for word, _ in instructions), "run as a non-root user"


def test_the_edge_unit_is_hardened_and_writes_only_its_state() -> None:
    unit = edge_unit()
    service = unit["Service"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    expected = {
        "Restart": "on-failure",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "User": "medhub",
    }
    assert {key: service[key][-1] for key in expected} == expected
    # numba compiles the detector at run time: W^X memory would kill the process.
    assert service.get("MemoryDenyWriteExecute", ["no"])[-1] != "yes"
    [process] = [p for p in edge_processes() if p.command == "serve"]
    settings = settings_from(process.env)
    database = settings.database_url.get_secret_value()
    assert database.startswith("sqlite:////")
    files = [Path(database.removeprefix("sqlite:///")), settings.auth.secret_file]
    if settings.devices.spool_path is not None:
        files.append(settings.devices.spool_path)
    for path in files:
        assert any(path.is_relative_to(d) for d in process.persistent), path
    assert service["WorkingDirectory"][-1] in process.persistent


def test_the_process_collection_sees_every_role_definition() -> None:
    """Guard the collector itself: each workload file yields processes, with arguments."""
    sources = {(p.profile, p.name) for p in processes()}
    assert ("compose", "migrate") in sources
    assert ("kubernetes", "medhub-migrate") in sources
    assert ("edge", "ExecStart") in sources
    assert all(p.args for p in processes())
