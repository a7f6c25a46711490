"""Draw the benchmark charts from the figures the benchmarks wrote.

    python3 benches/charts.py [RESULTS_DIR] [OUT_DIR]

RESULTS_DIR (default target/bench-results) holds nexmark.json, analytics.json and
ingest.json; the PNG charts go to OUT_DIR (default docs/img). A chart whose figures
are missing is skipped with a note.
"""

import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"AllSource": "#2b6cb0", "DuckDB": "#d69e2e", "Polars": "#805ad5",
           "Redis": "#c53030", "PostgreSQL": "#2f855a"}


def load(results, name):
    path = results / f"{name}.json"
    if not path.exists():
        print(f"{path} not found: its chart is skipped")
        return None
    return json.loads(path.read_text())


def spread(values):
    """The median and its distance to the lowest and highest value."""
    middle = statistics.median(values)
    return middle, middle - min(values), max(values) - middle


def nexmark(figures, out):
    queries = figures["queries"]
    names = [q["query"] for q in queries]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.4
    for offset, key, label, colour in [(-width / 2, "in_order", "in order", "#2b6cb0"),
                                       (width / 2, "out_of_order", "out of order (2 s)", "#63b3ed")]:
        stats = [spread([v / 1e6 for v in q[key]]) for q in queries]
        ax.bar([i + offset for i in range(len(names))], [s[0] for s in stats], width,
               yerr=[[s[1] for s in stats], [s[2] for s in stats]], capsize=3,
               label=label, color=colour)
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.axhline(0.1, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("million events/s (one core)")
    ax.set_title(f"Nexmark pipelines, {figures['events']:,} events, "
                 f"median of {figures['runs']} runs (bars: min–max)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "nexmark-throughput.png", dpi=110)
    plt.close(fig)


def analytics(figures, out):
    queries = figures["queries"]
    names = [q["query"] for q in queries]
    engines = ["AllSource", "DuckDB", "Polars"]
    fig, ax = plt.subplots(figsize=(11, 4.8))
    width = 0.27
    for i, engine in enumerate(engines):
        stats = [spread([s * 1e3 for s in q["seconds"][engine]]) for q in queries]
        ax.bar([x + (i - 1) * width for x in range(len(names))], [s[0] for s in stats], width,
               yerr=[[s[1] for s in stats], [s[2] for s in stats]], capsize=2,
               label=engine, color=COLOURS[engine])
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
    ax.set_ylabel("ms (log scale)")
    means = figures["geometric_mean"]
    ax.set_title(f"Batch queries over {figures['events']:,} events in Parquet; "
                 f"AllSource / DuckDB {means['DuckDB']:.2f}, / Polars {means['Polars']:.2f} "
                 "(geometric means)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "analytics.png", dpi=110)
    plt.close(fig)


def ingest(figures, out):
    rows = figures["throughput"]
    labels = [f"{r['system']}: {r['how']}" + ("" if r["durable"] else " (not durable)")
              for r in rows]
    stats = [spread([v / 1e3 for v in r["events_per_second"]]) for r in rows]
    fig, ax = plt.subplots(figsize=(11, 4.2))
    ax.barh(range(len(rows)), [s[0] for s in stats],
            xerr=[[s[1] for s in stats], [s[2] for s in stats]], capsize=3,
            color=[COLOURS[r["system"]] for r in rows],
            hatch=[None if r["durable"] else "//" for r in rows])
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("thousand events/s")
    ax.set_title(f"Ingest, {figures['events']:,} events, median of {figures['runs']} runs")
    fig.tight_layout()
    fig.savefig(out / "ingest.png", dpi=110)
    plt.close(fig)


def latency(figures, out):
    quantiles = ["p50", "p90", "p99", "p99.9"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(quantiles, [figures["fsync_micros"][q] for q in quantiles], marker="o",
            color="black", label="disk fsync alone (4 KiB)")
    for row in figures["latency"]:
        style = "-" if row["durability"] == "always" else "--"
        ax.plot(quantiles, [row["micros"][q] for q in quantiles], marker="o", linestyle=style,
                label=f"{row['how']}, {row['durability']}")
    ax.set_yscale("log")
    ax.set_ylabel("µs per request (log scale)")
    ax.set_title("Append latency percentiles, in process")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "append-latency.png", dpi=110)
    plt.close(fig)


def main():
    results = Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench-results")
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "docs/img")
    out.mkdir(parents=True, exist_ok=True)
    for name, draw in [("nexmark", [nexmark]), ("analytics", [analytics]),
                       ("ingest", [ingest, latency])]:
        figures = load(results, name)
        if figures is not None:
            for chart in draw:
                chart(figures, out)
    print(f"charts written to {out}")


if __name__ == "__main__":
    main()
