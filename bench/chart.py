"""The PNG: a horizontal bar of overhead per scenario, ours beside each peer, by group.

The x axis is logarithmic (overheads span three orders of magnitude); an overhead at or
below zero (within noise of the bare call) is drawn at the axis floor and labelled.
"""

from __future__ import annotations

from pathlib import Path

from bench._execute import Results

COLORS = {"ours": "#1f77b4", "trio": "#7f7f7f", "runner-js": "#2ca02c"}
PEER_COLOR = "#ff7f0e"
FLOOR_NS = 1.0


def bars(results: Results) -> list[tuple[str, str, str, float]]:
    """``(group, label, who, overhead_ns)`` of each measured overhead, in table order."""
    rows = []
    for m in results.measurements:
        overhead = results.overhead(m.scenario.id)
        if overhead is not None:
            rows.append((m.scenario.group, m.scenario.label, m.scenario.who, overhead))
    return rows


def draw(results: Results, path: Path, *, title: str) -> None:
    """Write the chart of ``results`` to ``path`` (PNG, matplotlib's Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Patch

    rows = bars(results)
    labels: list[str] = []
    headers: set[int] = set()
    ys: list[int] = []
    values: list[float] = []
    colors: list[str] = []
    y = 0
    group = None
    for row_group, label, who, overhead in rows:
        if row_group != group:
            group = row_group
            headers.add(y)
            labels.append(row_group)
            y += 1
        labels.append(label)
        ys.append(y)
        values.append(overhead)
        colors.append(COLORS.get(who, PEER_COLOR))
        y += 1

    fig, ax = plt.subplots(figsize=(11, 1.5 + 0.32 * max(y, 4)))
    if rows:
        drawn = [max(v, FLOOR_NS) for v in values]
        ax.barh(ys, drawn, color=colors, height=0.7)
        ax.set_xscale("log")
        ax.set_xlim(FLOOR_NS / 2, max(drawn) * 6)
        for yy, v, d in zip(ys, values, drawn, strict=True):
            ax.text(d * 1.08, yy, f"{v / 1000:,.3f} µs", va="center", fontsize=8)
        ax.set_yticks(range(y), labels)
        for i, tick in enumerate(ax.get_yticklabels()):
            if i in headers:
                tick.set_fontweight("bold")
        ax.set_ylim(y - 0.4, -0.6)  # top to bottom, no empty margin
        ax.set_xlabel("overhead per call over the bare call, ns (log scale)")
        ax.legend(
            handles=[
                Patch(color=COLORS["ours"], label="ours"),
                Patch(color=PEER_COLOR, label="Python peer"),
                Patch(color=COLORS["trio"], label="trio primitive"),
                Patch(color=COLORS["runner-js"], label="BlueLibs Runner (Node)"),
            ],
            loc="lower left",
            bbox_to_anchor=(0.0, 1.0),
            ncol=4,
            frameon=False,
            fontsize=8,
        )
        ax.grid(axis="x", which="major", alpha=0.3)
    else:
        ax.text(0.5, 0.5, "no overhead figures in this run", ha="center", va="center")
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
