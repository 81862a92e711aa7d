"""infra/compose.yaml, the production stack as containers, read as data (no docker, no network): its services and
the one image they run, the commands and settings it gives them (each a command, option or name that Aduana,
Prefect or MLflow has), the databases its URLs name against those the init script makes, its healthchecks, and
no secret written in it or in the example environment file."""
from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import typer
import yaml

from flows.cli import app
from flows.orchestration.deployments import deployment_specs, pool_of
from flows.settings import NESTED, Settings

INFRA = Path(__file__).resolve().parents[2] / "infra"
COMPOSE_TEXT = (INFRA / "compose.yaml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
DOCKERFILE = (INFRA / "Dockerfile").read_text()
ENV_EXAMPLE = (INFRA / ".env.example").read_text()

EXPECTED_SERVICES = {"postgres", "prefect-server", "prefect-worker", "mlflow", "api", "dask-scheduler", "dask-worker"}
# The servers' own settings the file gives, beside Aduana's (test_every_prefect_and_mlflow_name_is_real checks them).
PREFECT_VARIABLES = {"PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING",
                     "PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_UI_API_URL"}
MLFLOW_VARIABLES = {"MLFLOW_TRACKING_URI", "MLFLOW_BACKEND_STORE_URI", "MLFLOW_SERVER_ALLOWED_HOSTS",
                    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"}
# Declared ahead of the code that reads it: the Dask scheduler's address, for the national-volume issue's flows.
ADUANA_DECLARED_AHEAD = {"ADUANA_DASK_ADDRESS"}
SECRETS = {"POSTGRES_PASSWORD", "PREFECT_API_AUTH_STRING", "ADUANA_API_KEY"}
# The three stores: the setting that points to each, and the driver its URL names.
STORE_URLS = {"PREFECT_API_DATABASE_CONNECTION_URL": "postgresql+asyncpg", "MLFLOW_BACKEND_STORE_URI": "postgresql+psycopg",
              "ADUANA_OPS_URL": "postgresql"}
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}")


def aduana_variables() -> set[str]:
    """The environment names Settings reads: ADUANA_<FIELD>, ADUANA_<POLICY>_<FIELD> for the nested policies, a
    field's own alias (MLFLOW_TRACKING_URI), and ADUANA_CONFIG (the YAML file)."""
    prefix = Settings.model_config["env_prefix"]
    names = {"ADUANA_CONFIG"}
    for name, field in Settings.model_fields.items():
        if isinstance(field.validation_alias, str):
            names.add(field.validation_alias.upper())
        else:
            names.add(f"{prefix}{name}".upper())
        if name in NESTED:
            names |= {f"{prefix}{name}_{sub.name}".upper() for sub in dataclasses.fields(field.annotation)}
    return names


def environments() -> dict[str, dict[str, str]]:
    return {name: {k: str(v) for k, v in (svc.get("environment") or {}).items()} for name, svc in SERVICES.items()}


def resolve(value: str, given: dict[str, str]) -> str:
    """Compose's interpolation of one value (${X}, ${X:-default}, ${X-default}, ${X:?error}, ${X?error})."""
    def one(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if name in given and (given[name] or not (op or "").startswith(":")):
            return given[name]
        if op in (":?", "?"):
            raise KeyError(f"{name}: {arg}")
        return arg if op in (":-", "-") else ""
    return INTERPOLATION.sub(one, value)


def test_the_stack_has_its_services_and_every_aduana_one_runs_the_one_image():
    assert set(SERVICES) == EXPECTED_SERVICES
    assert SERVICES["postgres"]["image"].startswith("postgres:15")
    for name in EXPECTED_SERVICES - {"postgres"}:
        svc = SERVICES[name]
        assert svc["build"] == {"context": "..", "dockerfile": "infra/Dockerfile"}, name
        assert svc["image"] == SERVICES["api"]["image"], name  # one image, built once
    assert (INFRA.parent / SERVICES["api"]["build"]["dockerfile"]).is_file()


def test_the_image_installs_the_lock_then_the_code_without_dependencies_and_runs_as_a_user():
    assert re.search(r"^FROM python:3\.11-slim$", DOCKERFILE, re.M)
    installs = re.findall(r"(?:uv )?pip install [^\n\\&]*", DOCKERFILE)
    # Only uv itself comes from pip (the uv `make venv` uses); then the lock's versions, then the code, with no
    # dependencies of its own.
    uv_version = re.search(r"^UV_VERSION\s*:=\s*(\S+)", (INFRA.parent / "Makefile").read_text(), re.M)[1]
    assert [cmd.strip() for cmd in installs if not cmd.startswith("uv ")] == [f'pip install "uv=={uv_version}"']
    uv = [cmd for cmd in installs if cmd.startswith("uv ")]
    assert len(uv) == 2 and "-r requirements.lock" in uv[0] and "--no-deps" in uv[1]
    assert all("--system" in cmd for cmd in uv)
    assert "ENV ADUANA_HOME=/data/aduana" in DOCKERFILE
    users = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "infra/.env" in (INFRA.parent / ".dockerignore").read_text().split()  # the secrets stay out of the image


def test_the_api_serves_with_n_workers_and_a_key_and_the_worker_runs_the_deployments_pool():
    api = SERVICES["api"]["command"]
    assert api[:2] == ["aduana", "serve"] and "--workers" in api
    assert api[api.index("--host") + 1] == "0.0.0.0"  # off loopback: serve refuses it without the key
    assert "ADUANA_API_KEY" in SERVICES["api"]["environment"]
    worker = SERVICES["prefect-worker"]["command"]
    # `aduana schedule` registers infra/prefect.yaml and runs a worker on its pool; a bare worker must name it.
    assert worker[:2] == ["aduana", "schedule"] or worker[worker.index("--pool") + 1] == pool_of(deployment_specs())


def _aduana_commands() -> list[list[str]]:
    return [svc["command"] for svc in SERVICES.values() if svc.get("command", [None])[0] == "aduana"]


@pytest.mark.parametrize("argv", _aduana_commands(), ids=" ".join)
def test_every_aduana_command_and_option_in_the_file_exists(argv):
    command = typer.main.get_command(app)
    words = argv[1:]
    while hasattr(command, "commands") and words and not words[0].startswith("-"):  # a group: its subcommand
        command = command.commands.get(words[0])
        assert command is not None, f"aduana has no command {words[0]!r}"
        words = words[1:]
    known = {opt for param in command.params for opt in param.opts}
    assert not hasattr(command, "commands") and {w for w in words if w.startswith("--")} <= known


def test_every_aduana_prefect_and_mlflow_name_in_the_file_is_one_that_is_read():
    named = set(re.findall(r"\b(?:ADUANA|PREFECT|MLFLOW)_[A-Z0-9_]+\b", COMPOSE_TEXT))
    unknown = named - aduana_variables() - PREFECT_VARIABLES - MLFLOW_VARIABLES - ADUANA_DECLARED_AHEAD
    assert not unknown, f"names nothing reads: {sorted(unknown)}"
    assert {"ADUANA_OPS_URL", "MLFLOW_TRACKING_URI", "PREFECT_API_URL"} <= named


def _source(package: str, *parts: str) -> str:
    """A file of an installed package, as text (importing MLflow takes seconds)."""
    return Path(importlib.util.find_spec(package).submodule_search_locations[0], *parts).read_text()


def test_the_servers_commands_use_options_their_clis_have():
    mlflow_options = _source("mlflow", "cli", "__init__.py") + _source("mlflow", "utils", "cli_args.py")
    command = SERVICES["mlflow"]["command"]
    assert command[:2] == ["mlflow", "server"] and "--serve-artifacts" in command
    for option in (w for w in command if w.startswith("--")):
        assert re.search(rf'"{option}["/]', mlflow_options), option
    command = SERVICES["prefect-server"]["command"]
    assert command[:3] == ["prefect", "server", "start"]
    for option in (w for w in command if w.startswith("--")):
        assert f'"{option}"' in _source("prefect", "cli", "server.py"), option


def test_every_prefect_and_mlflow_name_is_real():
    """The explicit lists above are names the servers and clients read: Prefect's settings, MLflow's environment
    variables or its server's options."""
    import prefect.settings

    assert {name for name in PREFECT_VARIABLES if not hasattr(prefect.settings, name)} == set()
    assert not hasattr(prefect.settings, "PREFECT_NO_SUCH_SETTING")
    sources = _source("mlflow", "environment_variables.py") + _source("mlflow", "cli", "__init__.py")
    assert {name for name in MLFLOW_VARIABLES if f'"{name}"' not in sources} == set()


def test_the_flows_and_their_dask_workers_get_the_same_stores():
    env = environments()
    flows = env["prefect-worker"]
    assert env["dask-worker"] == flows  # a Dask worker without PREFECT_API_URL starts an ephemeral server
    assert flows["ADUANA_DASK_ADDRESS"] == "${ADUANA_DASK_ADDRESS:-}"  # the cluster when infra/.env names it
    scheduler = SERVICES["dask-scheduler"]["command"]
    assert scheduler[:2] == ["dask", "scheduler"] and scheduler[scheduler.index("--port") + 1] == "8786"
    assert SERVICES["dask-worker"]["command"][:3] == ["dask", "worker", "tcp://dask-scheduler:8786"]
    assert flows["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert flows["MLFLOW_TRACKING_URI"] == env["api"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert flows["ADUANA_OPS_URL"] == env["api"]["ADUANA_OPS_URL"]  # one decision log for the API and the flows
    assert "PREFECT_API_AUTH_STRING" in flows and "PREFECT_SERVER_API_AUTH_STRING" in env["prefect-server"]
    assert SERVICES["prefect-worker"]["volumes"] == SERVICES["api"]["volumes"] == ["aduana-home:/data/aduana"]


def test_the_init_script_makes_the_three_databases_the_urls_name():
    env = {k: v for e in environments().values() for k, v in e.items()}
    urls = {name: urlsplit(resolve(env[name], dict.fromkeys(SECRETS, "pw"))) for name in STORE_URLS}
    assert {name: url.scheme for name, url in urls.items()} == STORE_URLS
    assert {url.hostname for url in urls.values()} == {"postgres"} and {url.port for url in urls.values()} == {5432}
    named = {url.path.lstrip("/") for url in urls.values()}
    mounts = [v.split(":") for v in SERVICES["postgres"]["volumes"]]
    init = next(source for source, target, *_ in mounts if target.startswith("/docker-entrypoint-initdb.d/"))
    made = set(re.findall(r"^\s*CREATE DATABASE (\w+)", (INFRA / init).read_text(), re.I | re.M))
    assert named == made == {"prefect", "mlflow", "aduana_ops"}


def test_no_secret_is_written_in_the_file_and_compose_refuses_to_start_without_them():
    for name in SECRETS:
        assert re.search(rf"\${{{name}:\?[^}}]+}}", COMPOSE_TEXT), f"{name} must be required (${{{name}:?...}})"
        assert not re.search(rf"\${{{name}:?-", COMPOSE_TEXT), f"{name} must have no default"
    for svc, env in environments().items():
        for key, value in env.items():
            if any(word in key for word in ("PASSWORD", "KEY", "AUTH", "SECRET")):
                assert INTERPOLATION.fullmatch(value), f"{svc}: {key} is written in the file"
            resolved = resolve(value, dict.fromkeys(SECRETS, "from-the-env-file"))
            if "://" in resolved:  # a URL's password, if any, is the one the environment gives
                assert urlsplit(resolved).password in (None, "from-the-env-file"), f"{svc}: {key}"
    with pytest.raises(KeyError, match="ADUANA_API_KEY"):
        resolve(SERVICES["api"]["environment"]["ADUANA_API_KEY"], {"ADUANA_API_KEY": ""})


def test_the_example_environment_names_every_required_variable_and_gives_no_secret():
    example = dict(line.split("=", 1) for line in ENV_EXAMPLE.splitlines() if line and not line.startswith("#"))
    required = {m["name"] for m in INTERPOLATION.finditer(COMPOSE_TEXT) if m["op"] in (":?", "?")}
    assert required == SECRETS
    optional = {m["name"] for m in INTERPOLATION.finditer(COMPOSE_TEXT)} - required
    assert required | optional <= set(example)
    assert {name: example[name] for name in SECRETS} == dict.fromkeys(SECRETS, "")


def test_dependencies_wait_for_health_and_the_api_is_checked_for_liveness_not_readiness():
    for name, svc in SERVICES.items():
        for needed, how in (svc.get("depends_on") or {}).items():
            assert how == {"condition": "service_healthy"}, f"{name} -> {needed}"
            assert "healthcheck" in SERVICES[needed], f"{name} waits on {needed}, which has no healthcheck"
    probes = {name: " ".join(svc["healthcheck"]["test"]) for name, svc in SERVICES.items() if "healthcheck" in svc}
    assert "pg_isready" in probes["postgres"] and "-h 127.0.0.1" in probes["postgres"]
    assert ":4200/api/health" in probes["prefect-server"]
    assert ":5000/health" in probes["mlflow"]
    # /readyz is 503 until a champion exists: a fresh stack's API would be restarted for lack of a model.
    assert ":8000/healthz" in probes["api"] and "readyz" not in probes["api"]
    assert set(SERVICES["prefect-worker"]["depends_on"]) == {"postgres", "prefect-server", "mlflow"}


def test_the_volumes_hold_the_databases_the_home_and_the_artifacts():
    assert set(COMPOSE["volumes"]) == {"postgres-data", "aduana-home", "mlflow-artifacts"}
    assert "postgres-data:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]
    assert "mlflow-artifacts:/data/mlartifacts" in SERVICES["mlflow"]["volumes"]
    command = SERVICES["mlflow"]["command"]
    assert command[command.index("--artifacts-destination") + 1] == "/data/mlartifacts"
