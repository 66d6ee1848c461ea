"""Run the Airflow services of docker-compose.yml as local processes, the way Compose would.

There is no Docker engine on the development and CI machines, so the cluster tier reads
docker-compose.yml and does by hand what ``docker compose up`` would do with it:

* interpolates ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``,
  ``${VAR:+alt}``, ``$VAR`` and ``$$`` from a .env-style mapping (the test's own, built from
  .env.example with test secrets), and resolves the YAML anchors and merge keys;
* gives each Airflow service the environment Compose would give its container: the image's ``ENV``
  lines (from the inline Dockerfile, plus the base image's AIRFLOW_HOME) and the service's
  ``environment:``, with
    - container paths mapped to local ones: named volumes to temporary directories, the image's
      ``COPY`` targets to the repository, /opt/airflow (the base image's AIRFLOW_HOME) to a temp dir;
    - service host names mapped to localhost: ``postgres``/``redis`` to this machine's servers,
      ``airflow-apiserver:8080`` to the local API server's free port; the PostgreSQL database and
      the Redis database number replaced by dedicated test ones;
    - the ports Docker would keep apart (API 8080, scheduler health 8974, worker and triggerer
      log servers 8793/8794) moved to free local ports, servers bound to 127.0.0.1 where Airflow
      lets us;
* runs each service's ``command`` the way the official image's entrypoint does: ``bash``/``python``
  commands as they are, anything else as ``airflow <command>``; each in its own process group;
* starts services in ``depends_on`` order, honouring ``service_healthy`` and
  ``service_completed_successfully``, and evaluates each service's own ``healthcheck`` command
  (CMD or CMD-SHELL) with the same mapping.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# --- interpolation ----------------------------------------------------------------------------

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>(?:[^{}]|\{[^{}]*\})*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("named")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        if op is None:
            return value or ""
        unset_or_empty = value is None or (op.startswith(":") and value == "")
        if op.endswith("-"):
            return interpolate(arg, env) if unset_or_empty else value
        if op.endswith("?"):
            if unset_or_empty:
                raise InterpolationError(f"required variable {name} is missing a value: {arg}")
            return value
        if op.endswith("+"):
            return "" if unset_or_empty else interpolate(arg, env)
        raise InterpolationError(f"bad substitution {m.group(0)}")

    return _VAR.sub(sub, text)


def _interpolate_tree(node, env):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(x, env) for x in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env) for k, v in node.items()}
    return node


def load_compose(path: Path, env: dict[str, str]) -> dict:
    """The compose file with anchors and merge keys resolved and variables interpolated."""
    raw = yaml.safe_load(path.read_text())
    return _interpolate_tree(raw, env)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments and blank lines skipped, quotes stripped)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


# --- local emulation ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def airflow_hostname() -> str:
    """What Airflow records as a component's hostname (``airflow.utils.net.getfqdn``, the default)."""
    name = socket.gethostname()
    try:
        addrs = socket.getaddrinfo(name, None, 0, socket.SOCK_DGRAM, 0, socket.AI_CANONNAME)
    except OSError:
        return name
    for addr in addrs:
        if addr[3]:
            return addr[3]
    return name


@dataclass
class LocalPlan:
    """How the compose services map onto this machine."""

    root: Path  # the repository: the image's COPY sources
    work: Path  # temporary directory for volumes, AIRFLOW_HOME and logs
    python: str = sys.executable
    db_url_base: str = "localhost:5432"
    database: str = "payouts_cluster_test"
    redis_host: str = "localhost:6379"
    redis_db: int = 13
    ports: dict[str, int] = field(default_factory=dict)  # container port -> local port
    path_map: dict[str, str] = field(default_factory=dict)  # container path -> local path
    image_env: dict[str, str] = field(default_factory=dict)
    hostname: str = field(default_factory=airflow_hostname)

    def map_paths(self, value: str) -> str:
        for src in sorted(self.path_map, key=len, reverse=True):
            if value == src or value.startswith(src + "/"):
                return self.path_map[src] + value[len(src) :]
        # a path inside a longer value (e.g. PYTHONPATH lists)
        for src in sorted(self.path_map, key=len, reverse=True):
            value = re.sub(rf"(?<![\w/]){re.escape(src)}(?=/|:|$)", self.path_map[src], value)
        return value

    def map_hosts(self, value: str) -> str:
        # PostgreSQL URLs: host postgres -> localhost:5432, the database -> the test database.
        value = re.sub(
            r"(postgres(?:ql)?(?:\+\w+)?://[^@/]*@)postgres(?::\d+)?/[A-Za-z0-9_]+",
            lambda m: f"{m.group(1)}{self.db_url_base}/{self.database}",
            value,
        )
        # Redis URLs: host redis -> localhost:6379, the db number -> the test's own.
        value = re.sub(
            r"(redis://(?:[^@/]*@)?)redis(?::\d+)?(?:/\d+)?",
            lambda m: f"{m.group(1)}{self.redis_host}/{self.redis_db}",
            value,
        )
        # Service-to-service HTTP: airflow-apiserver:8080 -> localhost:<free port>.
        value = re.sub(
            r"//airflow-apiserver:(\d+)",
            lambda m: f"//localhost:{self.ports.get(int(m.group(1)), int(m.group(1)))}",
            value,
        )
        # A service's own healthcheck: localhost:<container port> -> localhost:<local port>.
        value = re.sub(
            r"//localhost:(\d+)",
            lambda m: f"//localhost:{self.ports.get(int(m.group(1)), int(m.group(1)))}",
            value,
        )
        return value

    def map_value(self, value: str) -> str:
        return self.map_hosts(self.map_paths(value))


def image_from_dockerfile(dockerfile: str, root: Path, work: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(ENV, path map) of the inline Dockerfile: COPY targets point back into the repository."""
    env: dict[str, str] = {"AIRFLOW_HOME": "/opt/airflow"}  # set by the apache/airflow base image
    paths: dict[str, str] = {"/opt/airflow": str(work / "airflow-home")}
    for line in dockerfile.splitlines():
        if not line.strip().upper().startswith(("ENV ", "COPY ")):
            continue
        parts = shlex.split(line.strip())
        if parts[0].upper() == "ENV":
            for item in parts[1:]:
                if "=" in item:
                    k, v = item.split("=", 1)
                    env[k] = v
        elif parts[0].upper() == "COPY":
            args = [p for p in parts[1:] if not p.startswith("--")]
            *sources, dest = args
            for src in sources:
                local = root / src
                if len(sources) == 1:
                    paths[dest.rstrip("/")] = str(local)
    # A COPY of a directory into /opt/payouts/<dir> maps /opt/payouts itself onto the repository.
    parents = {str(Path(d).parent) for d, s in paths.items() if Path(s).parent == root}
    for parent in parents:
        if parent not in paths and parent != "/":
            paths[parent] = str(root)
    return env, paths


@dataclass
class Service:
    name: str
    spec: dict

    @property
    def command(self) -> list[str]:
        cmd = self.spec.get("command")
        if cmd is None:
            return []
        return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]

    @property
    def environment(self) -> dict[str, str]:
        env = self.spec.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        return {k: "" if v is None else str(v) for k, v in env.items()}

    @property
    def depends_on(self) -> dict[str, str]:
        deps = self.spec.get("depends_on") or {}
        if isinstance(deps, list):
            return {d: "service_started" for d in deps}
        return {k: (v or {}).get("condition", "service_started") for k, v in deps.items()}

    @property
    def volumes(self) -> list[tuple[str, str]]:
        out = []
        for v in self.spec.get("volumes") or []:
            if isinstance(v, str):
                src, dst = v.split(":")[:2]
            else:
                src, dst = v.get("source"), v["target"]
            out.append((src, dst))
        return out

    @property
    def is_airflow(self) -> bool:
        return "build" in self.spec or "apache/airflow" in str(self.spec.get("image", ""))


class LocalCompose:
    """Start, health-check and stop the compose file's Airflow services as local processes."""

    def __init__(self, compose: dict, plan: LocalPlan, logs: Path):
        self.compose = compose
        self.plan = plan
        self.logs = logs
        self.services = {n: Service(n, s) for n, s in compose["services"].items()}
        self.procs: dict[str, subprocess.Popen] = {}
        self._logfiles = {}
        # Volumes: a named volume is one local directory shared by every service that mounts it;
        # a bind mount (./dir) is that directory of the repository.
        for svc in self.services.values():
            for src, dst in svc.volumes:
                if src.startswith((".", "/")):
                    local = (plan.root / src).resolve()
                else:
                    local = plan.work / "volumes" / src
                    local.mkdir(parents=True, exist_ok=True)
                plan.path_map.setdefault(dst.rstrip("/"), str(local))
        (plan.work / "airflow-home").mkdir(parents=True, exist_ok=True)

    # -- environment --------------------------------------------------------------------------
    def env_for(self, name: str) -> dict[str, str]:
        svc = self.services[name]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PAYOUTS_", "_AIRFLOW"))}
        for k, v in {**self.plan.image_env, **svc.environment}.items():
            env[k] = self.plan.map_value(v)
        # What Docker keeps apart by giving each container its own network namespace and name.
        env.update(
            HOSTNAME=self.plan.hostname,
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__PORT=str(self.plan.ports[8080]),
            AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST="127.0.0.1",
            AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT=str(self.plan.ports[8974]),
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(self.plan.ports[8793]),
            AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(self.plan.ports[8794]),
        )
        env["PATH"] = f"{Path(self.plan.python).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def argv(self, name: str) -> list[str]:
        """The official image's entrypoint: bash/python run as given, else `airflow <command>`."""
        cmd = self.services[name].command
        if cmd and cmd[0] in ("bash", "sh"):
            return cmd
        if cmd and cmd[0] == "python":
            return [self.plan.python, *cmd[1:]]
        return [self.plan.python, "-m", "airflow", *cmd]

    # -- processes --------------------------------------------------------------------------------
    def run_once(self, name: str, timeout: float) -> subprocess.CompletedProcess:
        log = self.logs / f"{name}.log"
        with open(log, "w") as sink:
            proc = subprocess.Popen(
                self.argv(name), env=self.env_for(name), cwd=self.plan.work, stdout=sink,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
            self.procs[name] = proc
            try:
                proc.wait(timeout=timeout)
            finally:
                self.stop(name)
        return subprocess.CompletedProcess(proc.args, proc.returncode, log.read_text(), "")

    def start(self, name: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")
        self._logfiles[name] = log
        proc = subprocess.Popen(
            self.argv(name), env=self.env_for(name), cwd=self.plan.work, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def stop(self, name: str, grace: float = 20.0) -> None:
        proc = self.procs.get(name)
        if proc is None:
            return
        if proc.poll() is None and grace > 0:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # The group may outlive its leader (task processes, uvicorn, celery pool children).
        _signal_group(proc.pid, signal.SIGKILL)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if name in self._logfiles:
            self._logfiles.pop(name).close()

    def stop_all(self, grace: float = 20.0) -> None:
        """SIGTERM every service's process group at once, then SIGKILL what is left after `grace`."""
        running = [n for n in reversed(list(self.procs)) if self.procs[n].poll() is None]
        for name in running:
            _signal_group(self.procs[name].pid, signal.SIGTERM)
        end = time.monotonic() + grace
        for name in running:
            try:
                self.procs[name].wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for name in list(self.procs):
            self.stop(name, grace=0)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- health ----------------------------------------------------------------------------------
    def healthcheck(self, name: str, timeout: float = 60) -> bool:
        """Run the service's own healthcheck command once (CMD or CMD-SHELL)."""
        hc = self.services[name].spec.get("healthcheck")
        if not hc:
            return self.procs[name].poll() is None
        test = hc["test"]
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        kind, *rest = test
        env = self.env_for(name)
        if kind == "CMD-SHELL":
            argv = ["bash", "-c", self.plan.map_value(" ".join(rest))]
        elif kind == "CMD":
            argv = [self.plan.map_value(a) for a in rest]
        else:
            raise ValueError(f"{name}: unsupported healthcheck {test!r}")
        try:
            r = subprocess.run(argv, env=env, cwd=self.plan.work, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return r.returncode == 0

    def wait_healthy(self, name: str, deadline: float, every: float = 2.0) -> None:
        while True:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-4000:]}")
            if self.healthcheck(name):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not healthy in time:\n{self.log(name)[-4000:]}")
            time.sleep(every)

    def start_order(self, names: list[str]) -> list[str]:
        order, seen = [], set()

        def visit(n):
            if n in seen:
                return
            seen.add(n)
            for dep in self.services[n].depends_on:
                if dep in names:
                    visit(dep)
            order.append(n)

        for n in names:
            visit(n)
        return order


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
