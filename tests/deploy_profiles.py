"""The files in ``deploy/`` read, and the medhub processes each profile starts.

``tests/test_deploy.py`` checks that ``deploy/`` agrees with the code; this
module holds what those checks stand on, so the tests read as statements about
the deployment rather than as parsing code:

* readers, one per kind of file there (``KEY=VALUE`` env files, systemd units,
  ``mosquitto.conf``, the Dockerfile, YAML), each asserting its syntax as it
  goes, and :func:`check_syntax`, which picks the reader for a path;
* :class:`Process` and its collectors, which turn each profile (Docker
  Compose, Kubernetes, the systemd edge box) into the ``medhub`` commands it
  runs: their arguments and the environment they get (compose interpolation
  from ``.env.example``, Kubernetes ConfigMap generators and Secret keys from
  ``secrets.env.example``, systemd ``EnvironmentFile``\\ s), with the
  directories they may write and the ports they probe and publish;
* what follows from a process's environment: the :class:`medhub.config.Settings`
  it builds, its roles, the settings all its siblings must share, the paths it
  writes.

The collectors read the repository's own files and cache what they read:
pytest calls :func:`processes` and :func:`deploy_files` at collection time to
parametrize the tests.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from medhub.cli import parser
from medhub.config import Settings
from medhub.serve import parse_roles

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PROBE_PATHS = frozenset({"/health", "/ready", "/metrics"})
_ENV_LINE = re.compile(r"(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)")
_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}"
)


# -- reading the files --------------------------------------------------------------


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file())


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (compose ``.env``, kustomize ``envs``, systemd ``EnvironmentFile``)."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.fullmatch(line)
        assert match, f"{path}:{number}: not KEY=VALUE: {line!r}"
        key, value = match["key"], match["value"]
        assert key not in values, f"{path}:{number}: {key} set twice"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit: section -> key -> values in order (keys like DeviceAllow repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip()[0] in "#;":
            continue
        assert not line.endswith("\\"), f"{path}:{number}: keep directives on one line"
        if header := re.fullmatch(r"\[([A-Za-z]+)\]", line):
            current = sections.setdefault(header[1], {})
            continue
        key, equals, value = line.partition("=")
        assert current is not None and equals and re.fullmatch(r"[A-Za-z]+", key), (
            f"{path}:{number}: not Key=Value inside a section: {line!r}"
        )
        current.setdefault(key, []).append(value)
    return sections


def read_mosquitto_conf(path: Path) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        assert re.fullmatch(r"[a-z_]+ \S.*", line), f"{path}:{number}: not 'directive value'"
        name, value = line.split(" ", 1)
        directives.setdefault(name, []).append(value)
    return directives


_DOCKER_INSTRUCTIONS = frozenset(
    "FROM RUN CMD LABEL EXPOSE ENV ADD COPY ENTRYPOINT VOLUME USER WORKDIR ARG ONBUILD "
    "STOPSIGNAL HEALTHCHECK SHELL".split()
)


def read_dockerfile(path: Path) -> list[tuple[str, str]]:
    instructions: list[tuple[str, str]] = []
    pending = ""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not pending and (not line.strip() or line.startswith("#")):
            continue
        pending = f"{pending} {line.strip()}" if pending else line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        word, _, rest = pending.partition(" ")
        assert word in _DOCKER_INSTRUCTIONS, f"{path}:{number}: unknown instruction {word!r}"
        instructions.append((word, rest.strip()))
        pending = ""
    assert not pending, f"{path}: ends inside a continued line"
    return instructions


def load_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def check_syntax(path: Path) -> None:
    """Parse ``path`` by its kind; a kind with no reader here fails."""
    name = path.name
    if name.endswith((".yaml", ".yml")):
        assert load_yaml(path), f"{path}: empty"
    elif name.endswith((".env", ".env.example")):
        read_env_file(path)
    elif name.endswith(".service"):
        read_unit(path)
    elif name == "mosquitto.conf":
        read_mosquitto_conf(path)
    elif name == "Dockerfile":
        read_dockerfile(path)
    elif name in (".gitignore", "Dockerfile.dockerignore", "README.md"):
        assert path.read_text().strip()
    else:
        pytest.fail(f"{path}: no syntax check for this kind of file; add one here")


def read_lines(path: Path) -> list[str]:
    return [s for s in (line.strip() for line in path.read_text().splitlines()) if s[:1] != "#"]


# -- the processes each profile starts --------------------------------------------------


@dataclass
class Process:
    """One ``medhub`` command a profile runs: where, its arguments and its environment."""

    profile: str
    name: str
    args: list[str]
    env: dict[str, str]
    replicas: int = 1
    #: Directories the process may write that outlive it (volumes, StateDirectory).
    persistent: list[str] = field(default_factory=list)
    #: Directories it may write at all (those, tmpfs, emptyDir): the root is read-only.
    writable: list[str] = field(default_factory=list)
    #: Where relative paths (the ``var/`` defaults) resolve.
    workdir: str = "/"
    #: HTTP paths and ports probed or scraped, and ports published (name or number).
    probes: list[tuple[str, Any]] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def command(self) -> str:
        return self.args[0] if self.args else ""

    def __str__(self) -> str:
        return f"{self.profile}:{self.name}"


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``."""

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, op, arg = match["name"], match["op"] or "", match["arg"]
        current = variables.get(name)
        if op.endswith("-"):
            return current if current or (op == "-" and current is not None) else arg
        assert current is not None, f"${{{name}}} is not set in deploy/.env.example"
        return current

    return _INTERPOLATION.sub(replace, value)


def _interpolated(node: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [_interpolated(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: _interpolated(item, variables) for key, item in node.items()}
    return node


@cache
def compose() -> dict[str, Any]:
    [document] = load_yaml(DEPLOY / "compose.yaml")
    variables = read_env_file(DEPLOY / ".env.example")
    result: dict[str, Any] = _interpolated(document, variables)
    return result


def _compose_env(service: Mapping[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    assert "env_file" not in service, "keep environments in compose.yaml, where this test sees them"
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def _is_medhub_image(image: str) -> bool:
    return image.rsplit("/", 1)[-1].split(":")[0].split("@")[0] == "medhub"


@cache
def image() -> tuple[dict[str, str], str]:
    """The environment (ENV) and working directory (WORKDIR) of the runtime image."""
    env: dict[str, str] = {}
    workdir = "/"
    for word, rest in read_dockerfile(DEPLOY / "Dockerfile"):
        if word == "FROM":
            env, workdir = {}, "/"  # a new stage
        elif word == "ENV":
            env.update(pair.partition("=")[::2] for pair in shlex.split(rest))
        elif word == "WORKDIR":
            workdir = rest
    return env, workdir


def compose_processes() -> Iterator[Process]:
    image_env, workdir = image()
    document = compose()
    volumes = set(document.get("volumes") or {})
    for name, service in document["services"].items():
        if not _is_medhub_image(service.get("image", "")):
            continue
        command = service.get("command", ["serve"])
        args = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        mounts = [str(v).split(":") for v in service.get("volumes", [])]
        test = service.get("healthcheck", {}).get("test", [])
        probes = [
            (m[1], int(m[0]))
            for m in re.findall(r"https?://[^/:]+:(\d+)(/[\w/]*)", " ".join(map(str, test)))
        ]
        ports = {}
        for spec in service.get("ports", []):
            *_, target = str(spec).split(":")
            ports[target] = int(target)
        yield Process(
            "compose",
            name,
            args,
            {**image_env, **_compose_env(service)},
            replicas=int(service.get("deploy", {}).get("replicas", 1)),
            persistent=[m[1] for m in mounts if m[0] in volumes],
            writable=[m[1] for m in mounts] + [str(t).split(":")[0] for t in service["tmpfs"]],
            probes=probes,
            ports=ports,
            workdir=service.get("working_dir", workdir),
            raw=service,
        )


@cache
def kubernetes_documents() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "kubernetes").rglob("*.yaml")):
        if path.name != "kustomization.yaml":
            documents.extend(load_yaml(path))
    return documents


@cache
def config_maps() -> dict[str, dict[str, str]]:
    """ConfigMap data by name, from the kustomizations' generators."""
    maps: dict[str, dict[str, str]] = {}
    for path in (DEPLOY / "kubernetes").rglob("kustomization.yaml"):
        [kustomization] = load_yaml(path)
        for generator in kustomization.get("configMapGenerator", []):
            data = maps.setdefault(generator["name"], {})
            for env_file in generator.get("envs", []):
                data.update(read_env_file(path.parent / env_file))
            data.update(item.split("=", 1) for item in generator.get("literals", []))
    return maps


def _container_env(container: Mapping[str, Any], pod_name: str) -> dict[str, str]:
    secrets = read_env_file(DEPLOY / "kubernetes" / "secrets.env.example")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_maps()[source["configMapRef"]["name"]])
        else:
            env.update(secrets)
    for item in container.get("env", []):
        reference = item.get("valueFrom", {})
        if "secretKeyRef" in reference:
            key = reference["secretKeyRef"]["key"]
            assert key in secrets, f"secret key {key} is not in secrets.env.example"
            env[item["name"]] = secrets[key]
        elif "fieldRef" in reference:
            assert reference["fieldRef"]["fieldPath"] == "metadata.name", item
            env[item["name"]] = pod_name
        else:
            env[item["name"]] = str(item.get("value", ""))
    return env


def kubernetes_processes() -> Iterator[Process]:
    image_env, workdir = image()
    for document in kubernetes_documents():
        if document["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        name = document["metadata"]["name"]
        pod = document["spec"]["template"]
        claims = {c["metadata"]["name"] for c in document["spec"].get("volumeClaimTemplates", [])}
        for container in pod["spec"]["containers"]:
            assert _is_medhub_image(container["image"]), container["image"]
            assert container.get("command") is None, "use args: the image's entrypoint is medhub"
            probes = [
                (container[kind]["httpGet"]["path"], container[kind]["httpGet"]["port"])
                for kind in ("startupProbe", "livenessProbe", "readinessProbe")
                if kind in container
            ]
            annotations = pod["metadata"].get("annotations", {})
            if annotations.get("prometheus.io/scrape") == "true":
                probes.append(
                    (annotations["prometheus.io/path"], int(annotations["prometheus.io/port"]))
                )
            yield Process(
                "kubernetes",
                name,
                [str(a) for a in container.get("args", [])],
                {**image_env, **_container_env(container, f"{name}-0")},
                replicas=int(document["spec"].get("replicas", 1)),
                persistent=[
                    m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in claims
                ],
                writable=[m["mountPath"] for m in container.get("volumeMounts", [])],
                workdir=container.get("workingDir", workdir),
                probes=probes,
                ports={p["name"]: p["containerPort"] for p in container.get("ports", [])},
                raw={"kind": document["kind"], "container": container, "pod": pod},
            )


@cache
def edge_unit() -> dict[str, dict[str, list[str]]]:
    return read_unit(DEPLOY / "edge" / "medhub.service")


def edge_processes() -> Iterator[Process]:
    service = edge_unit()["Service"]
    env: dict[str, str] = {}
    for entry in service["EnvironmentFile"]:
        installed = PurePosixPath(entry.lstrip("-"))
        candidates = [
            DEPLOY / "edge" / installed.name,
            DEPLOY / "edge" / f"{installed.name}.example",
        ]
        [source] = [c for c in candidates if c.exists()]
        env.update(read_env_file(source))
    for entry in service.get("Environment", []):
        for pair in shlex.split(entry):
            key, _, value = pair.partition("=")
            env[key] = value
    state = [f"/var/lib/{d}" for d in service["StateDirectory"]]
    persistent = state + [p for entry in service["ReadWritePaths"] for p in entry.split()]
    caches = [f"/var/cache/{d}" for d in service.get("CacheDirectory", [])]
    temporary = ["/tmp"] if service.get("PrivateTmp") == ["yes"] else []
    for key in ("ExecStartPre", "ExecStart"):
        for line in service.get(key, []):
            binary, *args = shlex.split(line.lstrip("-+!@:"))
            assert PurePosixPath(binary).name == "medhub", line
            yield Process(
                "edge",
                key,
                args,
                dict(env),
                persistent=persistent,
                writable=persistent + caches + temporary,
                workdir=service["WorkingDirectory"][-1],
            )


@cache
def processes() -> list[Process]:
    return [*compose_processes(), *kubernetes_processes(), *edge_processes()]


def settings_from(env: Mapping[str, str]) -> Settings:
    """The Settings a process with exactly this ``MEDHUB_*`` environment builds."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("MEDHUB_")]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        return Settings()


def serving(profile: str | None = None) -> list[Process]:
    return [p for p in processes() if p.command == "serve" and profile in (None, p.profile)]


def roles_of(process: Process) -> frozenset[str]:
    """The roles a ``serve`` process runs (none for ``migrate``)."""
    args = parser().parse_args(process.args)
    return parse_roles(args.role) if args.command == "serve" else frozenset()


# -- what the processes of a profile share and write -----------------------------------


def shared_settings(settings: Settings) -> dict[str, Any]:
    """The settings every process of a profile must agree on, secrets revealed:
    all but the per-process listeners, MQTT session and device ingest."""
    data = settings.model_dump(mode="json", exclude={"http", "mllp", "mqtt", "devices"})
    secrets = ("database_url", "timeseries_url", "jwt_secret", "amqp_url", "mqtt_url")
    for name in secrets:
        value = getattr(settings, name)
        data[name] = value.get_secret_value() if value is not None else None
    data["sample_store"] = settings.sample_store_url()
    return data


def written_paths(process: Process) -> list[Path]:
    """Where a process writes: numba's cache (the detector is compiled, with cache=True,
    when the CLI imports it); for ``serve`` also the sample spool (every role builds
    it), SQLite files and a generated signing secret."""
    settings = settings_from(process.env)
    paths = [Path(process.env.get("NUMBA_CACHE_DIR", "/nowhere")) / "index"]
    if process.command == "serve":
        if settings.devices.spool_path is not None:
            paths.append(settings.devices.spool_path)
        for url in (settings.database_url.get_secret_value(), settings.sample_store_url()):
            if url.startswith("sqlite:///"):
                paths.append(Path(url.removeprefix("sqlite:///")))
        if settings.jwt_secret is None:
            paths.append(settings.auth.secret_file)
    return [Path(process.workdir) / path for path in paths]  # an absolute path stays itself
