#!/usr/bin/env python3
"""Plots of issue 17.4's benchmarks ("Cost as work grows", docs/BENCHMARKS.md).

Reads the CSV files that `switchyard-bench scale|claim|soak --csv FILE` write and writes
PNGs into docs/bench/ (or --out):

  scale.csv -> scale.png   events/s per host count (bars, ratio to 1 host on each bar)
  claim.csv -> claim.png   claim p50 / p99 against rows in the table (log x)
  soak.csv  -> soak.png    RSS and peak RSS over the run, events consumed per second

matplotlib lives in a virtual environment of its own, made once with:

  python3 -m venv /root/.cache/switchyard/plot-venv && /root/.cache/switchyard/plot-venv/bin/pip install matplotlib

then:

  /root/.cache/switchyard/plot-venv/bin/python scripts/bench-plot.py --dir docs/bench

(scripts/bench-plot.sh does both.) A missing CSV is an error naming the file and the
command that writes it; --only picks some of the three plots.
"""

import argparse
import csv
import os
import sys

WRITERS = {
    "scale": "switchyard-bench scale --db mariadb --hosts 1,2,3 --events 20000 --csv {}",
    "claim": "switchyard-bench claim --db mariadb --rows 10000,100000,1000000 --csv {}",
    "soak": "switchyard-bench soak --db mariadb --rate 1000 --minutes 10 --csv {}",
}


def fail(msg):
    print(f"bench-plot: {msg}", file=sys.stderr)
    sys.exit(1)


def read(path, kind, columns):
    if not os.path.isfile(path):
        fail(f"{path} is missing: write it with `{WRITERS[kind].format(path)}`")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        fail(f"{path} has no rows")
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        fail(f"{path} lacks column(s) {', '.join(missing)} (has {', '.join(rows[0])})")
    return rows


def plot_scale(plt, src, out):
    rows = read(src, "scale", ["hosts", "events_per_s"])
    hosts = [int(r["hosts"]) for r in rows]
    rate = [float(r["events_per_s"]) for r in rows]
    base = rate[0]
    fig, ax = plt.subplots(figsize=(6, 4))
    bars = ax.bar([str(h) for h in hosts], rate, color="#4C72B0")
    for b, r in zip(bars, rate):
        ax.annotate(f"{r:,.0f}/s\n{r / base:.2f}x", (b.get_x() + b.get_width() / 2, r),
                    ha="center", va="bottom", fontsize=9)
    parts = rows[0].get("partitions")
    ax.set_xlabel("hosts (one MariaDB, one Kafka topic" +
                  (f" of {parts} partitions" if parts else "") + ", one group)")
    ax.set_ylabel("events/s (first insert to last consume commit)")
    ax.set_title("Throughput as hosts are added")
    ax.set_ylim(0, max(rate) * 1.25)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_claim(plt, src, out):
    rows = read(src, "claim", ["rows", "p50_ms", "p99_ms"])
    n = [int(r["rows"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(n, [float(r["p50_ms"]) for r in rows], "o-", label="p50")
    ax.plot(n, [float(r["p99_ms"]) for r in rows], "s-", label="p99")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("rows in the outbox table (consumed, kept)")
    ax.set_ylabel("one claim (Store::claim_due), ms")
    ax.set_title("Relay claim latency as the table grows")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_soak(plt, src, out):
    rows = read(src, "soak", ["second", "rss_kib", "hwm_kib", "events_consumed"])
    t = [int(r["second"]) / 60 for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True,
                                      gridspec_kw={"height_ratios": [2, 1]})
    hwm = [int(r["hwm_kib"]) / 1024 for r in rows]
    top.plot(t, [int(r["rss_kib"]) / 1024 for r in rows], label="RSS (VmRSS)")
    top.plot(t, hwm, "--", label="peak since warm-up (VmHWM)")
    top.set_ylim(0, max(hwm) * 1.15)
    top.set_ylabel("MiB")
    top.set_title("Memory of the host process at a steady load")
    top.legend(loc="lower right")
    top.grid(True, alpha=0.3)
    bottom.plot(t, [int(r["events_consumed"]) for r in rows], color="#55A868", lw=0.8)
    bottom.set_ylabel("consumed/s")
    bottom.set_xlabel("minutes")
    bottom.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default="docs/bench",
                   help="where scale.csv, claim.csv, soak.csv are (default docs/bench)")
    p.add_argument("--out", help="where the PNGs go (default: --dir)")
    p.add_argument("--only", action="append", choices=sorted(WRITERS),
                   help="plot only this one (repeatable)")
    args = p.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        fail("matplotlib is not installed for " + sys.executable + ": python3 -m venv "
             "/root/.cache/switchyard/plot-venv && /root/.cache/switchyard/plot-venv/bin/pip "
             "install matplotlib, then run this script with that venv's python "
             "(or scripts/bench-plot.sh)")
    out = args.out or args.dir
    os.makedirs(out, exist_ok=True)
    plots = {"scale": plot_scale, "claim": plot_claim, "soak": plot_soak}
    for name in args.only or sorted(plots):
        src = os.path.join(args.dir, f"{name}.csv")
        dst = os.path.join(out, f"{name}.png")
        plots[name](plt, src, dst)
        print(f"wrote {dst}")


if __name__ == "__main__":
    main()
