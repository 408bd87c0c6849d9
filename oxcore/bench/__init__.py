"""Benchmark harness shared by every ``oxcore bench ...`` command.

Each benchmark times callables with warm-up, reports median and spread (p10-p90), compares
against the direct library (plain NumPy, plain MLX) in the same run, and saves a JSON record
of the machine, the versions and the results.

Example:
    >>> from oxcore.bench import Report, measure
    >>> r = Report("demo")
    >>> r.add("noop", measure(lambda: None, repeat=5))
    >>> r.rows[0]["name"]
    'noop'
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["Stats", "measure", "Report", "machine_info"]


@dataclass
class Stats:
    """Timing summary in microseconds."""

    median_us: float
    p10_us: float
    p90_us: float
    runs: int

    @property
    def spread_pct(self) -> float:
        """(p90 - p10) / median, in percent."""
        return 100.0 * (self.p90_us - self.p10_us) / self.median_us if self.median_us else 0.0

    def as_dict(self) -> dict[str, float]:
        return {"median_us": self.median_us, "p10_us": self.p10_us, "p90_us": self.p90_us, "runs": self.runs,
                "spread_pct": self.spread_pct}


def measure(fn: Callable[[], Any], *, warmup: int = 3, repeat: int = 30, min_seconds: float = 0.0,
            max_seconds: float = 10.0, inner: int = 1, clock: Callable[[], float] = time.perf_counter) -> Stats:
    """Time ``fn`` after ``warmup`` calls: ``repeat`` samples (more until ``min_seconds``).

    ``inner`` calls per sample for very short functions (the sample is divided by it).
    ``clock``: wall time by default; ``time.process_time`` counts only this process's CPU
    time (steadier on a machine shared with other jobs, for single-threaded work).
    """
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = clock()
        for _ in range(inner):
            fn()
        samples.append((clock() - t0) * 1e6 / inner)
        elapsed = time.perf_counter() - start
        if (len(samples) >= repeat and elapsed >= min_seconds) or elapsed > max_seconds:
            break
    samples.sort()
    q = statistics.quantiles(samples, n=10) if len(samples) >= 2 else [samples[0]] * 9
    return Stats(statistics.median(samples), q[0], q[-1], len(samples))


def _version(mod: str) -> str | None:
    try:
        import importlib.metadata as md

        return md.version(mod)
    except Exception:
        return None


def _plugin_distributions() -> list[str]:
    """Distributions installed with an ``oxcore`` entry point (the plugins), by name."""
    import importlib.metadata as md

    return sorted({ep.dist.name for ep in md.entry_points(group="oxcore") if ep.dist is not None})


def machine_info() -> dict[str, Any]:
    """Machine, OS and library versions for benchmark records."""
    info: dict[str, Any] = {
        "platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
        "python": sys.version.split()[0], "cpu_count": os.cpu_count(),
        "versions": {d: _version(d) for d in ("oxcore", *_plugin_distributions(), "numpy", "safetensors")},
    }
    try:  # NOTE: the devices of the available backends, as each reports itself
        from oxcore.extend import manager

        info["devices"] = {b.name: f"{b.device.name} ({b.device.description})"
                           for b in manager().available_backends()}
    except Exception:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


class Report:
    """Collects rows, prints a rich table, saves JSON.

    Rows carry a ``group`` (what is being compared, e.g. ``"mlp b=1"``) so ratios are taken
    against the group's ``baseline`` row.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.rows: list[dict[str, Any]] = []
        self.notes: list[str] = []

    def add(self, name: str, stats: Stats, *, group: str = "", baseline: bool = False, **meta: Any) -> None:
        self.rows.append({"group": group, "name": name, "baseline": baseline, **stats.as_dict(), **meta})

    def ratio(self, row: dict[str, Any]) -> float | None:
        base = next((r for r in self.rows if r["group"] == row["group"] and r["baseline"]), None)
        if base is None or not base["median_us"]:
            return None
        return row["median_us"] / base["median_us"]

    def print(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        t = Table(title=f"oxcore bench {self.name}")
        for col in ("group", "what", "median", "p10-p90", "spread", "vs baseline"):
            t.add_column(col, justify="right" if col not in ("group", "what") else "left")
        for r in self.rows:
            ratio = self.ratio(r)
            t.add_row(r["group"], r["name"] + (" (baseline)" if r["baseline"] else ""), _fmt(r["median_us"]),
                      f"{_fmt(r['p10_us'])}-{_fmt(r['p90_us'])}", f"{r['spread_pct']:.0f}%",
                      "" if ratio is None else f"{ratio:.2f}x")
        console.print(t)
        for n in self.notes:
            console.print(n)

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the JSON record (default ``.bench/<name>-<time>.json``); returns the path."""
        if path is None:
            path = Path(".bench") / f"{self.name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [dict(r, ratio=self.ratio(r)) for r in self.rows]
        record = {"benchmark": self.name, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "machine": machine_info(), "results": rows, "notes": self.notes}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2, default=str))
        os.replace(tmp, path)
        return path


def _fmt(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.2f}s"
    if us >= 1e3:
        return f"{us / 1e3:.2f}ms"
    return f"{us:.1f}us"
