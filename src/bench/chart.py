"""Draws the benchmark chart from the JSON lines `brook bench-compare` writes."""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
names = [r["name"] for r in rows]
fig, axes = plt.subplots(1, 2, figsize=(12, 5))
for axis, key, title in [
    (axes[0], "put_8", "PutRecords, 100 B x500, 8 producers (records/s, log scale)"),
    (axes[1], "rss_filled_mib", "RSS holding the fill (MiB, lower is better)"),
]:
    values = [r.get(key) or 0 for r in rows]
    bars = axis.bar(names, values, color=["#1f6feb" if n.startswith("brook") else "#8b949e" for n in names])
    axis.set_title(title, fontsize=10)
    axis.tick_params(axis="x", rotation=40, labelsize=8)
    for label in axis.get_xticklabels():
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")
    if key == "put_8":
        axis.set_yscale("log")
    for bar, value in zip(bars, values):
        axis.annotate(f"{value:,.0f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=7)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
