"""How fast a light command starts and answers: `endcredits people list` and a few others, end to end.

    python benchmarks/cli.py --runs 10
    python benchmarks/cli.py --src ../wt-cli-base/src --src src --runs 10 --json   # before and after

Each command runs as a fresh process (``python -m endcredits --data DIR ...``) against a small SQLite
store, one store per ``--src`` (made and filled through that checkout's own CLI: ``--people`` people,
three works, a consent grant). The runs alternate between the sources, command by command, so whatever
else loads the machine falls on each alike. Bytecode is compiled once into a private cache first
(``PYTHONPYCACHEPREFIX``), as an installed package has it; ``--no-bytecode`` keeps the environment's
setting. Reports the median and p90 wall time per command and source, and the median CPU time (user +
system: on a shared machine it moves less with the load), in seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

COMMANDS: dict[str, list[str]] = {
    "people list": ["people", "list"],
    "works list": ["works", "list"],
    "people add": ["people", "add", "{handle}"],
    "consent grant": [
        "consent",
        "grant",
        "--person",
        "1",
        "--use",
        "research",
        "--decision",
        "allowed",
        "--source",
        "benchmark",
        "--perpetual",
    ],
}
"""Light commands, two that read and two that write; ``{handle}`` becomes a new handle each run."""

RUNS_MAX = 1_000
PEOPLE_MAX = 10_000
TIMEOUT_S = 120

_FILL = """
import json, sys
from endcredits.cli import app
data, people, files = json.loads(sys.argv[1])
def run(*args):
    code = app(["--data", data, *args], standalone_mode=False)
    if code:
        raise SystemExit(f"endcredits {' '.join(args)} exited with {code}")
run("init")
for i in range(people):
    run("people", "add", f"person-{i}")
for i, path in enumerate(files):
    run("works", "add", path, "--title", f"work {i}")
run("consent", "grant", "--person", "1", "--use", "research", "--decision", "allowed", "--source", "fill",
    "--perpetual")
"""


def _env(src: Path, pycache: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENDCREDITS_")}
    env["PYTHONPATH"] = str(src)
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def _run(args: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one process; a failing command stops the benchmark
    with its error. On a shared machine the CPU time moves less with the load than the wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited with {done.returncode}:\n{done.stderr}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def make_store(data: Path, src: Path, env: dict[str, str], people: int) -> None:
    """A small store through ``src``'s own CLI: ``people`` people, three works, one consent grant."""
    data.mkdir(parents=True)
    files = []
    for i in range(3):
        path = data.parent / f"{data.name}-work-{i}.txt"
        path.write_text(f"work {i} of the CLI benchmark\n", encoding="utf-8")
        files.append(str(path))
    _run([sys.executable, "-c", _FILL, json.dumps([str(data), people, files])], env)


def p90(values: Sequence[float]) -> float:
    """The nearest-rank 90th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def _summary(measured: Sequence[tuple[float, float]]) -> dict[str, object]:
    wall, cpu = [w for w, _ in measured], [c for _, c in measured]
    return {
        "median_s": round(statistics.median(wall), 4),
        "p90_s": round(p90(wall), 4),
        "cpu_median_s": round(statistics.median(cpu), 4),
        "runs_s": [round(t, 4) for t in wall],
    }


def run(srcs: Sequence[Path], *, runs: int, people: int, bytecode: bool = True) -> dict[str, object]:
    """Time every command ``runs`` times per source, alternating; medians and p90s in seconds."""
    if not 1 <= runs <= RUNS_MAX:
        raise ValueError(f"runs must be in 1..{RUNS_MAX}")
    if not 1 <= people <= PEOPLE_MAX:
        raise ValueError(f"people must be in 1..{PEOPLE_MAX}")
    with tempfile.TemporaryDirectory(prefix="endcredits-cli-bench-") as tmp:
        root = Path(tmp)
        envs = [_env(src, root / f"pycache-{i}" if bytecode else None) for i, src in enumerate(srcs)]
        stores = [root / f"data-{i}" for i in range(len(srcs))]
        for src, env, data in zip(srcs, envs, stores):
            make_store(data, src, env, people)
        times: dict[str, list[list[tuple[float, float]]]] = {name: [[] for _ in srcs] for name in COMMANDS}
        handles = iter(range(10**9))
        for name, template in COMMANDS.items():
            for warm_up in (True,) + (False,) * runs:
                for i, (env, data) in enumerate(zip(envs, stores)):
                    args = [a.replace("{handle}", f"bench-{next(handles)}") for a in template]
                    measured = _run([sys.executable, "-m", "endcredits", "--data", str(data), *args], env)
                    if not warm_up:
                        times[name][i].append(measured)
    return {
        "date": dt.date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "runs": runs,
        "people": people,
        "bytecode": bytecode,
        "sources": [str(s) for s in srcs],
        "commands": {name: {str(src): _summary(per[i]) for i, src in enumerate(srcs)} for name, per in times.items()},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--src", type=Path, action="append", help="A checkout's src directory (repeat; default: this one's)"
    )
    parser.add_argument("--runs", type=int, default=10, help="Timed runs per command and source (after a warm-up)")
    parser.add_argument("--people", type=int, default=20, help="People in each store")
    parser.add_argument("--no-bytecode", action="store_true", help="Do not cache compiled bytecode")
    parser.add_argument("--json", action="store_true", help="Print the result as one JSON object")
    args = parser.parse_args(argv)
    srcs = [s.resolve() for s in args.src or [SRC]]
    result = run(srcs, runs=args.runs, people=args.people, bytecode=not args.no_bytecode)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return 0
    sys.stdout.write(
        f"{result['date']}, {os.cpu_count()} CPUs, {args.runs} runs each: wall median / p90 (CPU median), seconds\n"
    )
    commands: dict[str, dict[str, dict[str, float]]] = result["commands"]  # type: ignore[assignment]
    for name, per in commands.items():
        cells = "  ".join(
            f"{src}: {v['median_s']:.3f} / {v['p90_s']:.3f} ({v['cpu_median_s']:.3f})" for src, v in per.items()
        )
        sys.stdout.write(f"{name:<14} {cells}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
