"""Run the README's shell blocks top to bottom, as a newcomer would in one terminal of a fresh clone.

Every line of every ```bash block is a command (continuation lines joined; comment lines are prose). Each command
is either run, as written or through the substitution table below (the slow ones with small sizes), or listed in
SKIPPED with the reason. There is no third way: a command added to the README is run unless someone says here why
not. The shell's exported variables carry from one command to the next (an `export ADUANA_HOME=...` holds for the
rest of the README, as in a terminal); the working directory is always the root of the copy.

A command whose comment says `# runs until Ctrl-C` is a server or a worker: it is started in the background, the
first http:// URL on its line (if any) must answer (any status below 500), it must still be alive when its block
ends, and it is then stopped (SIGINT to its process group, as Ctrl-C, then SIGTERM, then SIGKILL). Whatever
happens, `stop_everything` ends every such process and runs `aduana --home H server stop` for every home that has
a Prefect server, so no server outlives the run.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import free_port

LONG_RUNNING = re.compile(r"#\s*runs until Ctrl-C")
URL = re.compile(r"http://[^\s,;)]+")
FENCE = re.compile(r"^```(\S*)\s*$")

# (pattern, replacement, why). Each must match at least one README command, so the table stays true.
SUBSTITUTIONS: list[tuple[str, str, str]] = [
    (r"^make demo\b", ".venv/bin/aduana demo --rows 2000",
     "make demo is `aduana demo` once .venv is current; 2,000 declarations instead of 200,000 (and make would "
     "reinstall into the shared .venv if the copy's files looked newer than its stamp)"),
    (r"^make lint\b", ".venv/bin/ruff check .", "make lint is ruff once .venv is current (see make demo)"),
    (r"--rows 1000000\b", "--rows 3000", "the CLI tour's world: 3,000 declarations instead of a million"),
    (r"--partition-rows 250000\b", "--partition-rows 1000", "the tour's 3,000 declarations in 3 partitions"),
    (r"--world islas --rows 50000\b", "--world islas --rows 2000", "the islas world: 2,000 goods items, not 50,000"),
    (r"(aduana backtest)\b", r"\1 --rows 5000 --iterations 10 --retrain-every 50 --warmup-weeks 60",
     "the backtest's smallest world, few rounds, one refit, and 45 of its 105 weeks replayed (the drift among them)"),
    (r"(--port |127\.0\.0\.1:)8000\b", r"\g<1>{api_port}", "the API on a free port (8000 may be taken)"),
    (r"(--port |127\.0\.0\.1:)5000\b", r"\g<1>{mlflow_port}", "the MLflow UI on a free port (5000 may be taken)"),
]

# A command as the README writes it (after joining continuation lines, before substitution): why it is not run.
SKIPPED: dict[str, str] = {
    "make test": "it is the test suite this test belongs to",
    "make bench": "the benchmarks take many minutes on a million rows; `make bench` is a target of its own",
    "make lock": "it re-resolves requirements.lock from the package index: a network call that rewrites a tracked "
                 "file",
}

# Small sizes that the commands read from the environment rather than from their arguments.
ENVIRONMENT = {
    "ADUANA_TRAIN_ABLATION": "false",  # no feature-group ablation (its screening fits are the slow part)
    "ADUANA_TRAIN_ITERATIONS": "60",
    "ADUANA_TRAIN_REFERENCE_ITERATIONS": "60",
    "ADUANA_TRAIN_BLEND": "false",  # one member, no refit: the commands are what is checked here, not the model
    "ADUANA_TRAIN_REFIT": "false",
    "PREFECT_WORKER_QUERY_SECONDS": "2",  # the worker picks the deployment run up in 2 s, not 10
}
# A fresh terminal has none of the test session's Aduana or Prefect settings: the home server is what users get.
CLEARED = ("ADUANA_HOME", "ADUANA_PREFECT_SERVER", "PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_URI",
           "ADUANA_CONFIG", "ADUANA_API_KEY", "ADUANA_OPS_URL")
NOT_CARRIED = ("_", "SHLVL", "PWD", "OLDPWD")


@dataclass(frozen=True)
class Command:
    text: str  # as the README writes it (continuation lines joined)
    line: int  # the README line it starts on
    section: str  # the heading above it
    block: int  # which bash block, counted from 0

    @property
    def long_running(self) -> bool:
        return bool(LONG_RUNNING.search(self.text))


def commands(readme: Path) -> list[Command]:
    """The commands of the README's bash blocks, in order."""
    found, section, block, pending, start, blocks = [], "", None, "", 0, -1
    for number, line in enumerate(readme.read_text().splitlines(), start=1):
        fence = FENCE.match(line)
        if block is None:
            if line.startswith("#"):
                section = line.lstrip("#").strip()
            elif fence:
                block = fence.group(1)
                blocks += block == "bash"
            continue
        if fence:
            assert not pending, f"README line {start}: a continuation line ends its block"
            block = None
            continue
        if block != "bash":
            continue
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue  # prose in the block
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        found.append(Command(pending + stripped, start, section, blocks))
        pending = ""
    return found


def unfenced_commands(readme: Path) -> list[int]:
    """Lines that look like commands but sit in a block not marked bash, where the runner would not see them."""
    lines, block, suspicious = readme.read_text().splitlines(), None, []
    for number, line in enumerate(lines, start=1):
        fence = FENCE.match(line)
        if fence:
            block = fence.group(1) if block is None else None
        elif block not in (None, "bash") and re.match(r"\s*(\.venv/bin/|make |export |duckdb |curl )", line):
            suspicious.append(number)
    return suspicious



def copy_tree(repo: Path, target: Path) -> Path:
    """What a fresh clone after `make venv` holds: the tracked (and new, not ignored) files of the working tree,
    the Data Docs assets `make venv` fetches, and the venv (linked, not copied)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = repo / name
        if source.is_file():  # a tracked file deleted in the working tree is not in a clone of it either
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    vendor = repo / "expectations" / "vendor"
    if vendor.is_dir():
        shutil.copytree(vendor, target / "expectations" / "vendor", dirs_exist_ok=True)
    (target / ".venv").symlink_to(repo / ".venv")
    return target


@dataclass
class Outcome:
    command: Command
    ran: str | None  # the command as run, None when skipped
    note: str  # the substitutions applied, or why it was skipped
    seconds: float = 0.0


@dataclass
class Background:
    command: Command
    process: subprocess.Popen
    log: Path


@dataclass
class Runner:
    root: Path
    timeout: float = 300.0
    outcomes: list[Outcome] = field(default_factory=list)
    background: list[Background] = field(default_factory=list)
    used_patterns: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.ports = {"api_port": free_port(), "mlflow_port": free_port()}
        self.env = {k: v for k, v in os.environ.items() if k not in CLEARED} | ENVIRONMENT
        self.env |= {"PYTHONPATH": str(self.root),  # the copy's code, as a clone's editable install would give
                     "PREFECT_HOME": str(self.root.parent / "prefect-user")}  # the prefect CLI's own profile
        self._env_file = self.root.parent / "readme-env"

    def substitute(self, text: str) -> tuple[str, list[str]]:
        notes = []
        for pattern, replacement, why in SUBSTITUTIONS:
            new = re.sub(pattern, replacement.format(**self.ports), text)
            if new != text:
                notes.append(why)
                self.used_patterns.add(pattern)
                text = new
        return text, notes

    def run(self, command: Command) -> Outcome:
        if command.text.split("#")[0].strip() in SKIPPED:
            outcome = Outcome(command, None, SKIPPED[command.text.split("#")[0].strip()])
            self.outcomes.append(outcome)
            return outcome
        text, notes = self.substitute(command.text)
        outcome = Outcome(command, text, "; ".join(notes))
        self.outcomes.append(outcome)
        started = time.monotonic()
        if command.long_running:
            self._start(command, text)
        else:
            self._run_now(command, text)
        outcome.seconds = time.monotonic() - started
        return outcome

    def _run_now(self, command: Command, text: str) -> None:
        script = f"{text}\n__readme_rc=$?\nenv -0 > {self._env_file}\nexit $__readme_rc\n"
        process = subprocess.Popen(["bash", "-c", script], cwd=self.root, env=self.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            output, _ = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _end_group(process)
            output, _ = process.communicate()
            raise AssertionError(self._failure(command, text, f"still running after {self.timeout:.0f} s",
                                               output)) from None
        if process.returncode != 0:
            raise AssertionError(self._failure(command, text, f"exit {process.returncode}", output))
        carried = self._env_file.read_bytes().split(b"\0")
        self.env = dict(item.decode().split("=", 1) for item in carried if b"=" in item)
        for name in NOT_CARRIED:
            self.env.pop(name, None)

    def _start(self, command: Command, text: str) -> None:
        log = self.root.parent / f"background-{len(self.background)}.log"
        with open(log, "wb") as sink:
            process = subprocess.Popen(["bash", "-c", text], cwd=self.root, env=self.env, stdin=subprocess.DEVNULL,
                                       stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        job = Background(command, process, log)
        self.background.append(job)
        urls = URL.findall(text.split("#", 1)[1])
        deadline = time.monotonic() + self.timeout
        while urls and not _answers(urls[0]):
            if process.poll() is not None or time.monotonic() > deadline:
                why = f"exit {process.returncode}" if process.poll() is not None else f"{urls[0]} never answered"
                raise AssertionError(self._failure(command, text, why, log.read_bytes()))
            time.sleep(0.5)
        if not urls:
            time.sleep(2)
            self.check_alive(job)

    def check_alive(self, job: Background) -> None:
        if job.process.poll() is not None:
            raise AssertionError(self._failure(job.command, job.command.text, f"ended early, exit "
                                               f"{job.process.returncode}", job.log.read_bytes()))

    def end_block(self) -> None:
        """A block's servers and workers must have lived through it; then they stop, as with Ctrl-C."""
        try:
            for job in self.background:
                self.check_alive(job)
        finally:
            self.stop_background()

    def stop_background(self) -> None:
        for job in self.background:
            _end_group(job.process)
        self.background.clear()

    def stop_everything(self) -> list[str]:
        """End every background process, every home's production stack (its files removed: as root they live
        outside the copy) and every home's Prefect server. Returns the homes stopped."""
        self.stop_background()
        stopped = []
        aduana = str(self.root / ".venv" / "bin" / "aduana")
        for record in sorted(self.root.glob("*/stack/stack.json")):
            home = record.parent.parent
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run([aduana, "--home", str(home), "stack", "down", "--purge"], cwd=self.root, env=self.env,
                               capture_output=True, timeout=120)
            stopped.append(home.name)
        for state in sorted(self.root.glob("*/prefect/server.json")):
            home = state.parent.parent
            try:
                done = subprocess.run([str(self.root / ".venv" / "bin" / "aduana"), "--home", str(home), "server",
                                       "stop"], cwd=self.root, env=self.env, capture_output=True, timeout=60)
            except subprocess.TimeoutExpired:
                done = None
            if done is None or done.returncode != 0:  # the next homes' servers still have to go, whatever this one did
                from flows.orchestration import server

                server.stop(state.parent)
            stopped.append(home.name)
        return stopped

    def _failure(self, command: Command, text: str, why: str, output: bytes) -> str:
        ran = "" if text == command.text else f"\n  run as: {text}"
        tail = output.decode(errors="replace")[-4000:]
        return (f"README line {command.line} ({command.section}): {why}\n  command: {command.text}{ran}\n"
                f"--- output (last 4000 characters) ---\n{tail}")

    def report(self) -> str:
        rows = []
        for o in self.outcomes:
            what = f"skipped: {o.note}" if o.ran is None else f"{o.seconds:6.1f} s" + (f"  ({o.note})" if o.note else "")
            rows.append(f"line {o.command.line:4d}  {what}\n           {o.command.text}")
        return "\n".join(rows)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError as error:
        return error.code < 500
    except OSError:
        return False


def _end_group(process: subprocess.Popen) -> None:
    """Ctrl-C for the whole process group, then SIGTERM, then SIGKILL."""
    for sig, grace in ((signal.SIGINT, 5), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        if process.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # anything the group left behind
