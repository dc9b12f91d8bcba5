"""The studies drawn as S-v1 draws them (matplotlib, Agg backend, written atomically).

Failed and diverged trials stay in the picture: a hatched grey cell in the heatmap, a red
cross on the axis in the line and bar charts. Missing trials (not run yet) are left blank.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from clrbench.atomic import write_bytes
from clrbench.study.results import Baseline, Outcome, augment_matrix

FAILED_MARK = {"marker": "x", "color": "red", "s": 60, "zorder": 4}
FRACTION_COLOURS = {1.0: "tab:red", 10.0: "tab:orange", 100.0: "tab:blue"}  # label percent -> line colour


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window, works headless
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Path | str) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (readers never see half a file)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
    _pyplot().close(fig)
    path = Path(path)
    write_bytes(path, buf.getvalue())
    return path


def plot_augment(outcomes: list[Outcome], ops: list[str], path: Path | str, subtitle: str = "") -> Path:
    """Heatmap of S-v1 Fig. 5: rows = 1st op, columns = 2nd op, diagonal = single op, + row mean."""
    plt = _pyplot()
    import numpy as np
    from matplotlib.patches import Rectangle

    matrix = augment_matrix(outcomes, ops)
    n = len(ops)
    values = np.full((n, n + 1), np.nan)
    for i, row in enumerate(matrix):
        for j, o in enumerate(row):
            if o is not None and o.score is not None:
                values[i, j] = o.score
        vals = values[i, :n][~np.isnan(values[i, :n])]
        values[i, n] = vals.mean() if len(vals) else np.nan
    fig, ax = plt.subplots(figsize=(1.0 * n + 2.6, 0.85 * n + 1.6))
    finite = values[~np.isnan(values)]
    lo, hi = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    im = ax.imshow(np.ma.masked_invalid(values), cmap="Greens", vmin=lo, vmax=hi if hi > lo else lo + 1)
    for i, row in enumerate(matrix):
        for j in range(n + 1):
            o = row[j] if j < n else None
            if o is not None and o.status in ("failed", "diverged"):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.85", hatch="///", edgecolor="0.4"))
                ax.text(j, i, "div." if o.status == "diverged" else "failed", ha="center", va="center", fontsize=8)
            elif not math.isnan(values[i, j]):
                dark = values[i, j] > lo + 0.6 * (hi - lo)
                ax.text(j, i, f"{values[i, j]:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    for i in range(n):  # the diagonal holds single ops, not pairs: outline it
        ax.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="0.2", linewidth=1.2))
    ax.axvline(n - 0.5, color="white", linewidth=4)  # the mean column is not a 2nd op
    ax.set_xticks(range(n + 1), [*ops, "mean"], rotation=45, ha="right")
    ax.set_yticks(range(n), ops)
    ax.set_xlabel("2nd transformation")
    ax.set_ylabel("1st transformation")
    ax.set_title("Probe accuracy (%) by augmentation, one branch (S-v1 Fig. 5)" + (f"\n{subtitle}" if subtitle else ""),
                 fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.03)
    return save(fig, path)


def _failed_marks(ax: Any, xs: list[float], y: float) -> None:
    if xs:
        ax.scatter(xs, [y] * len(xs), label="failed / diverged", **FAILED_MARK)


def _line(ax: Any, pts: list[tuple[float, Outcome]], style: str, **kw: Any) -> list[float]:
    """Plot the ok points with their standard errors; return the x of the failed ones."""
    ok = [(x, o) for x, o in pts if o.score is not None]
    if ok:
        ax.errorbar([x for x, _ in ok], [o.score for _, o in ok], yerr=[o.stderr or 0.0 for _, o in ok],
                    fmt=style, capsize=3, **kw)
    return [x for x, o in pts if o.status in ("failed", "diverged")]


def _baseline(ax: Any, baseline: Baseline | None) -> None:
    if baseline is not None:
        ax.axhline(baseline.score, color="0.5", linestyle=":", linewidth=1.2, label="random init (no pretraining)")


def _finish(ax: Any, failed: list[float], title: str, subtitle: str, baseline: Baseline | None) -> None:
    _baseline(ax, baseline)
    _failed_marks(ax, failed, ax.get_ylim()[0])
    ax.set_ylabel("probe accuracy (%), mean over tasks")
    ax.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_temperature(outcomes: list[Outcome], path: Path | str, subtitle: str = "",
                     baseline: Baseline | None = None) -> Path:
    """S-v1 Table 5 as a chart: probe accuracy against tau, l2-normalised and raw similarity."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    failed: list[float] = []
    for l2, style in ((True, "o-"), (False, "s--")):
        pts = sorted(((o.trial.point["temperature"], o) for o in outcomes
                      if o.layer == "h" and o.trial.point["l2"] == l2), key=lambda p: p[0])
        failed += _line(ax, pts, style, label="l2-normalised (cosine)" if l2 else "raw dot product")
    ax.set_xscale("log")
    ax.set_xlabel("temperature tau (log)")
    _finish(ax, failed, "NT-Xent temperature (S-v1 Table 5)", subtitle, baseline)
    return save(fig, path)


def plot_batch_size(outcomes: list[Outcome], path: Path | str, subtitle: str = "",
                    baseline: Baseline | None = None) -> Path:
    """S-v1 Fig. 9: probe accuracy against training epochs, one line per global batch."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    failed: list[float] = []
    for b in sorted({o.trial.point["batch_size"] for o in outcomes}):
        pts = sorted(((o.trial.point["epochs"], o) for o in outcomes if o.trial.point["batch_size"] == b),
                     key=lambda p: p[0])
        failed += _line(ax, pts, "o-", label=f"batch {b}")
    ax.set_xlabel("training epochs")
    _finish(ax, failed, "Batch size and training length (S-v1 Fig. 9)", subtitle, baseline)
    return save(fig, path)


def plot_head(outcomes: list[Outcome], path: Path | str, subtitle: str = "",
              baseline: Baseline | None = None) -> Path:
    """S-v1 Fig. 8 and sec. 4.2: accuracy against the dimension of z; solid h, dashed g(h)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    failed: list[float] = []
    colours = {"linear": "tab:blue", "nonlinear": "tab:orange", "nonlinear-v2": "tab:green"}
    for head in sorted({o.trial.point["head"] for o in outcomes} - {"none"}):
        for layer, style in (("h", "o-"), ("g", "s--")):
            pts = sorted(((o.trial.point["dim"], o) for o in outcomes
                          if o.trial.point["head"] == head and o.layer == layer), key=lambda p: p[0])
            failed += _line(ax, pts, style, color=colours.get(head), label=f"{head}, {'h' if layer == 'h' else 'g(h)'}")
    none = next((o for o in outcomes if o.trial.point["head"] == "none"), None)
    if none is not None and none.score is not None:
        ax.axhline(none.score, color="tab:red", linestyle="-.", label="no head (h = g(h))")
    elif none is not None and none.status in ("failed", "diverged"):
        ax.text(0.02, 0.02, f"no head: {none.status}", transform=ax.transAxes, color="red", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("output dimension of the head (dim of z)")
    _finish(ax, failed, "Projection head, before (h) and after (g(h)) it (S-v1 Fig. 8)", subtitle, baseline)
    return save(fig, path)


def plot_label_efficiency(outcomes: list[Outcome], points: dict[str, dict[str, Any]], path: Path | str,
                          subtitle: str = "") -> Path:
    """S-v2 Fig. 1: test metric against encoder parameters, one line per label fraction.

    Left: fine-tuned (solid), self-distilled (dotted) and linear probe (dashed), from the
    study's records, mean over tasks; right: S-v2 Table 1's fine-tuned ImageNet numbers.
    ``points`` maps each outcome's series (protocol) to {"method", "label_percent"}."""
    plt = _pyplot()
    fig, (ax, ref) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    fractions = sorted({p["label_percent"] for p in points.values()})
    others = iter(("tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"))
    colour = {f: FRACTION_COLOURS.get(f) or next(others, "0.4") for f in fractions}
    failed: list[float] = []
    styles = {"finetune": ("o-", "fine-tuned"), "distill": ("^:", "self-distilled"), "linear": ("s--", "linear")}
    for method, (style, word) in styles.items():
        for f in fractions:
            pts = sorted(((o.trial.point["params"] / 1e6, o) for o in outcomes
                          if points[o.layer]["method"] == method and points[o.layer]["label_percent"] == f),
                         key=lambda p: p[0])
            if pts:
                failed += _line(ax, pts, style, color=colour.get(f), label=f"{word}, {f:g}% labels")
    _param_ticks(ax, sorted({o.trial.point["params"] / 1e6 for o in outcomes}))
    ax.set_xlabel("encoder parameters (log scale)")
    ax.set_ylabel("test metric (%), mean over tasks")
    _failed_marks(ax, failed, ax.get_ylim()[0])
    ax.set_title("This study" + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16))  # below: the lines cross
    _paper_panel(ref)
    return save(fig, path)


def _paper_panel(ax: Any) -> None:
    """S-v2 Table 1 (clrbench/assets/studies/simclrv2_table1.yaml): fine-tuned top-1 vs parameters."""
    from clrbench.config import assets_dir, read_yaml

    table = read_yaml(assets_dir() / "studies" / "simclrv2_table1.yaml")
    rows = sorted(table["rows"], key=lambda r: r["params_m"])
    for f in (1, 10, 100):
        ax.plot([r["params_m"] for r in rows], [r[f"finetune_{f}pct"] for r in rows], "o-",
                color=FRACTION_COLOURS[float(f)], label=f"fine-tuned, {f}% labels")
    named = [r for r in rows if not r["sk"] or r["params_m"] > 500]  # R50 1x, R50 2x, R152 3x+SK
    _param_ticks(ax, [r["params_m"] for r in named],
                 [f"R{r['depth']} {r['width']}x{'+SK' if r['sk'] else ''}\n{r['params_m']}M" for r in named])
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("ImageNet top-1 (%)")
    ax.set_title(f"SimCLRv2 on ImageNet ({table['source']})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _param_ticks(ax: Any, millions: list[float], names: list[str] | None = None) -> None:
    """A log x axis with a tick at each model's parameter count ("0.7M", "11M"), nothing else."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_xticks(millions, names or [f"{m:.2g}M" if m < 10 else f"{m:.0f}M" for m in millions])
    ax.xaxis.set_minor_formatter(NullFormatter())
    if len(millions) == 1:
        ax.set_xlim(millions[0] / 1.5, millions[0] * 1.5)


def plot_study(study: str, outcomes: list[Outcome], path: Path | str, ops: list[str] | None = None,
               subtitle: str = "", baseline: Baseline | None = None,
               points: dict[str, dict[str, Any]] | None = None) -> Path:
    """Draw any study's picture to ``path``; ``baseline`` is the random-init encoder's score,
    ``points`` the label-efficiency study's series -> {"method", "label_percent"}."""
    if study == "label-efficiency":
        return plot_label_efficiency(outcomes, points or {}, path, subtitle)
    if study == "augment":
        if baseline is not None:
            subtitle = f"{subtitle}; random init {baseline.score:.1f}".lstrip("; ")
        return plot_augment(outcomes, ops or [], path, subtitle)
    draw = {"temperature": plot_temperature, "batch-size": plot_batch_size, "head": plot_head}[study]
    return draw(outcomes, path, subtitle, baseline)
