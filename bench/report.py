"""Turning the runs into numbers people can read: medians, ratios, targets, tables and a plot."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.cases import CASES
from bench.runner import PERCENTILES

BASELINE = "queue"
ALERTKIT = ("alertkit_http", "alertkit_pagerduty", "alertkit_redis")
_NUMBERS = (
    "calls_per_s",
    "delivered",
    "delivered_per_s",
    "delivered_final",
    "lost",
    "shutdown_s",
    "exit_s",
    "peak_rss_mb",
    "flush_s",
)


def _median(values: list[Any]) -> Any:
    values = [v for v in values if isinstance(v, int | float)]
    return statistics.median(values) if values else None


def _state(run: dict[str, Any]) -> str:
    if "blocked_in" in run:
        return f"blocked in {run['blocked_in']}"
    if not run.get("exited"):
        return "hung"
    return "exits"


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{scenario: {case: metrics}}``: the median of every number over the repeats; the worst
    state (blocked, hung) of any repeat."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        grouped.setdefault((run["scenario"], run["case"]), []).append(run)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (scenario, case), group in grouped.items():
        row: dict[str, Any] = {key: _median([r.get(key) for r in group]) for key in _NUMBERS}
        names = [f"p{p:g}" for p in PERCENTILES] + ["max"]
        row["latency_us"] = {
            name: _median([r.get("latency_us", {}).get(name) for r in group]) for name in names
        }
        states = [_state(r) for r in group]
        row["state"] = next((s for s in states if s != "exits"), "exits")
        row["runs"] = len(group)
        row["calls_done"] = min(r.get("calls_done", r["n"]) for r in group)
        out.setdefault(scenario, {})[case] = row
    return out


def _get(results: dict[str, Any], scenario: str, case: str, *path: str) -> Any:
    value: Any = results["summary"].get(scenario, {}).get(case)
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 7's targets, each with the measured value, the limit and whether it was met."""
    found: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, below: bool = True) -> None:
        if value is None:
            return
        met = value <= limit if below else value >= limit
        found.append({"target": name, "value": value, "limit": limit, "met": met})

    ak_p50 = _get(results, "error", "alertkit_http", "latency_us", "p50")
    q_p50 = _get(results, "error", BASELINE, "latency_us", "p50")
    if ak_p50 and q_p50:
        add("AlertHandler p50 / QueueHandler p50 (logger.error)", ak_p50 / q_p50, 1.2)
    for case in ALERTKIT:
        healthy = _get(results, "error", case, "latency_us", "p99")
        for scenario in ("down", "hang"):
            p99 = _get(results, scenario, case, "latency_us", "p99")
            if healthy and p99:
                add(f"{case} p99 {scenario} / its healthy p99", p99 / healthy, 2.0)
    ak = _get(results, "error", "alertkit_http", "delivered_per_s")
    sentry = _get(results, "error", "sentry", "delivered_per_s")
    if ak and sentry:
        add("alertkit HTTP delivered/s / sentry-sdk's", ak / sentry, 2.0, below=False)
    lost = _get(results, "error", "alertkit_http", "lost")
    if lost is not None:
        add("alertkit HTTP events lost (logger.error)", lost, 0)
    redis = _get(results, "error", "alertkit_redis", "delivered_per_s")
    chouette = _get(results, "error", "chouette", "delivered_per_s")
    if redis and chouette:
        add("alertkit Redis events/s / chouette-iot-client's", redis / chouette, 10.0, False)
    if "alertkit" in results.get("import_ms", {}):
        add("import alertkit, ms", results["import_ms"]["alertkit"], 60.0)
    for entry in results.get("memory", []):
        if entry.get("case") == "alertkit_http" and "rss_growth_mb" in entry:
            add(
                f"RSS growth, MB, {entry['n']} events, dead destination", entry["rss_growth_mb"], 50
            )
    return found


def progress(run: dict[str, Any]) -> str:
    lat = run.get("latency_us", {})
    parts = [f"{run['scenario']:>9} {run['case']:<20}"]
    if lat:
        parts.append(f"p50 {lat.get('p50', 0):9.1f} µs  p99 {lat.get('p99', 0):9.1f} µs")
    if "delivered" in run:
        parts.append(f"delivered {run['delivered']}/{run['n']} lost {run.get('lost')}")
    if "rss_growth_mb" in run and run["scenario"] == "memory":
        parts.append(f"RSS +{run['rss_growth_mb']:.1f} MB")
    if "shutdown_s" in run:
        parts.append(f"shutdown {run['shutdown_s']:.2f} s")
    parts.append(_state(run))
    return "  ".join(parts)


def _f(value: Any, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:,.{digits}f}{suffix}"
    return f"{value:,}{suffix}"


def _ratio(a: Any, b: Any) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def markdown(results: dict[str, Any]) -> str:
    lines: list[str] = []
    m = results["machine"]
    c = results["sink_ceiling"]
    lines.append(
        f"N = {results['n']} calls per case, {results['repeat']} run(s) per case (medians), "
        f"{m['implementation']} {m['python']}, {m['cpus']} CPUs, load {m['load_1min']:.1f}. "
        f"Sink ceiling {c['per_cpu_s']:,.0f} requests per CPU second."
    )
    labels = results["cases"]
    for scenario, rows in results["summary"].items():
        base = rows.get(BASELINE, {}).get("latency_us", {})
        lines += [
            "",
            f"#### Scenario `{scenario}`",
            "",
            "| case | p50 µs | p99 µs | max µs | p50 / QH | p99 / QH | calls/s | delivered | "
            "delivered/s | lost | shutdown s | exit | peak RSS MB |",
            "| --- | " + "---: | " * 11 + "--- |",
        ]
        for case, row in rows.items():
            lines.append(_row(labels.get(case, case), row, base, results["n"]))
    lines += _peer_table(results)
    if results.get("memory"):
        lines += [
            "",
            "#### Memory: events queued against a dead destination",
            "",
            "| case | events | RSS growth MB | dropped (counted) | shutdown s |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for entry in results["memory"]:
            stats = entry.get("sdk_stats", {})
            dropped = stats.get("dropped", "not counted")
            lines.append(
                f"| {labels.get(entry['case'], entry['case'])} | {entry['n']:,} | "
                f"{_f(entry.get('rss_growth_mb'))} | {_f(dropped, 0)} | "
                f"{_f(entry.get('shutdown_s'), 2)} |"
            )
    if results.get("import_ms"):
        lines += ["", "#### Import time (best of fresh interpreters)", ""]
        lines += [f"- `import {k}`: {v:.1f} ms" for k, v in results["import_ms"].items()]
    if results.get("targets"):
        lines += ["", "#### Targets (issue 7)", "", "| target | measured | limit | met |"]
        lines.append("| --- | ---: | ---: | --- |")
        for t in results["targets"]:
            lines.append(
                f"| {t['target']} | {t['value']:.2f} | {t['limit']:g} | "
                f"{'yes' if t['met'] else '**no**'} |"
            )
    return "\n".join(lines) + "\n"


def _row(label: str, row: dict[str, Any], base: dict[str, Any], n: int) -> str:
    lat = row["latency_us"]
    state = row["state"] if row["state"] != "exits" else f"{_f(row['exit_s'], 2)} s"
    common = (
        f"{_f(row['delivered'], 0)} | {_f(row['delivered_per_s'], 0)} | "
        f"{_f(row['lost'], 0)} | {_f(row['shutdown_s'], 2)} | {state} | "
        f"{_f(row['peak_rss_mb'], 0)} |"
    )
    if row["calls_done"] < min(100, n):  # the caller was blocked: a handful of calls
        slowest = (lat.get("max") or 0) / 1e6
        return (
            f"| {label} | blocked | blocked | {slowest:,.1f} s | - | - | "
            f"{row['calls_done']} of {n} calls done | {common}"
        )
    calls = _f(row["calls_per_s"], 0)
    if row["calls_done"] < n:
        calls = f"{row['calls_done']} of {n} done in the call budget"
    return (
        f"| {label} | {_f(lat.get('p50'), 2)} | {_f(lat.get('p99'), 1)} | "
        f"{_f(lat.get('max'), 0)} | {_ratio(lat.get('p50'), base.get('p50'))} | "
        f"{_ratio(lat.get('p99'), base.get('p99'))} | {calls} | {common}"
    )


def _peer_table(results: dict[str, Any]) -> list[str]:
    summary = results["summary"]
    peers = [c for c in results["cases"] if c not in ALERTKIT and c not in _STDLIB_NO_DELIVERY]
    lines = [
        "",
        "#### alertkit against each peer (same run; > 1 is better for alertkit)",
        "",
        "| scenario | alertkit | peer | peer p50 / alertkit p50 | peer p99 / alertkit p99 | "
        "alertkit delivered/s / peer's | lost: alertkit vs peer |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for scenario, rows in summary.items():
        for mine in (c for c in ALERTKIT if c in rows):
            for peer in (p for p in peers if p in rows):
                a, b = rows[mine], rows[peer]
                if b["calls_done"] < min(100, results["n"]):
                    lines.append(
                        f"| {scenario} | {mine} | {peer} | peer blocked | peer blocked | - | "
                        f"{_f(a['lost'], 0)} vs blocked |"
                    )
                    continue
                lines.append(
                    f"| {scenario} | {mine} | {peer} | "
                    f"{_ratio(b['latency_us'].get('p50'), a['latency_us'].get('p50'))} | "
                    f"{_ratio(b['latency_us'].get('p99'), a['latency_us'].get('p99'))} | "
                    f"{_ratio(a['delivered_per_s'], b['delivered_per_s'])} | "
                    f"{_f(a['lost'], 0)} vs {_f(b['lost'], 0)} |"
                )
    return lines


_STDLIB_NO_DELIVERY = ("filtered", "null", BASELINE)


def plot(results: dict[str, Any], path: Path) -> None:
    """The caller-latency distribution (CDF) per case, one panel per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wanted = [s for s in ("error", "exception", "down", "hang") if s in results["summary"]]
    if not wanted:
        return
    columns = min(2, len(wanted))
    rows_n = (len(wanted) + columns - 1) // columns
    fig, grid = plt.subplots(rows_n, columns, figsize=(7.2 * columns, 4.8 * rows_n), squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[len(wanted) :]:
        ax.set_visible(False)
    palette = plt.get_cmap("tab10")
    colours = {case: palette(i % 10) for i, case in enumerate(CASES)}
    fractions = [p / 100 for p in PERCENTILES] + [1.0]
    names = [f"p{p:g}" for p in PERCENTILES] + ["max"]
    styles = {c: ("-" if c.startswith("alertkit") else "--") for c in CASES}
    for ax, scenario in zip(axes, wanted, strict=False):
        for case, row in results["summary"][scenario].items():
            if case == "filtered":
                continue
            xs = [row["latency_us"].get(n) for n in names]
            points = [(x, y) for x, y in zip(xs, fractions, strict=True) if x]
            if not points:
                continue
            width = 2.4 if case.startswith("alertkit") else 1.3
            blocked = row["calls_done"] < results["n"]
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                styles.get(case, "-"),
                lw=width,
                color=colours.get(case),
                marker="x" if blocked else None,
                label=f"{case} (caller blocked)" if blocked else case,
            )
        ax.set_xscale("log")
        ax.set_xlabel("caller-thread latency per call (µs, log scale)")
        ax.set_title(f"scenario: {scenario} (N = {results['n']})")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_ylim(0, 1.01)
        ax.set_ylabel("fraction of calls at or below")
        ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
