"""The report's figures: confusion matrices, per-class recall beside the paper's, accuracy vs tokens.

Rendered with matplotlib's Agg backend (no display on the training machines) into PNG bytes that
are written atomically, so a report never embeds a half-written image. Each function returns the
path it wrote, for report.md to embed by relative path.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
import numpy as np  # noqa: E402

from pipeline.io import atomic_write_bytes  # noqa: E402


def _save(fig, path: Path) -> Path:
    """Render `fig` to PNG and write it atomically (temp name in the same folder, then os.replace)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_confusion(confusion: Sequence[Sequence[int]], labels: Sequence[str], title: str,
                   path: Path, invalid_by_gold: Sequence[int] | None = None, vmax: int | None = None) -> Path:
    """Heatmap of counts, rows = gold, columns = prediction, the `[invalid]` column always shown.

    `vmax` fixes the top of the colour scale, so several models' matrices drawn with the same
    `vmax` share one scale (the colour bar says which); default: this matrix's own maximum.
    """
    mat = np.asarray(confusion, dtype=int)
    invalid = np.asarray(invalid_by_gold if invalid_by_gold is not None else [0] * len(labels), dtype=int)
    mat = np.column_stack([mat, invalid]) if mat.size else invalid.reshape(-1, 1)
    cols = list(labels) + ["[invalid]"]
    top = max(1, int(vmax if vmax is not None else (mat.max() if mat.size else 0)))
    fig, ax = plt.subplots(figsize=(2.0 + 0.8 * len(cols), 1.4 + 0.7 * len(labels)), layout="constrained")
    image = ax.imshow(mat, cmap="Blues", vmin=0, vmax=top)
    fig.colorbar(image, ax=ax, label="examples", shrink=0.8)
    ax.axvline(len(labels) - 0.5, color="grey", linewidth=1)  # predictions | no valid label
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title, fontsize=10)
    for (i, j), v in np.ndenumerate(mat):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="white" if v > top / 2 else "black")
    return _save(fig, path)


def plot_recall(recalls: dict[str, dict[str, float]], labels: Sequence[str],
                paper_recall: dict[str, dict[str, float]] | None, path: Path, subtitle: str = "") -> Path:
    """Grouped bars of per-class recall per model, the value on each bar, the paper's recalls as markers.

    `recalls` = {model: {label: recall}}; `paper_recall` = {label: {model: recall}} (tasks/*.yml).
    A zero recall is drawn as an outlined sliver with "0.00" on it, so it reads as zero, not as missing.
    """
    models = list(recalls)
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(labels)), 4.2), layout="constrained")
    for k, model in enumerate(models):
        offs = x - 0.4 + width * (k + 0.5)
        heights = [recalls[model].get(lab) for lab in labels]
        heights = [np.nan if h is None else h for h in heights]  # a class absent from the test set
        bars = ax.bar(offs, [h if np.isnan(h) else max(h, 0.006) for h in heights], width, color=f"C{k}",
                      edgecolor="black", linewidth=0.6, label=f"{model} (this run)")
        ax.bar_label(bars, labels=["n/a" if np.isnan(h) else f"{h:.2f}" for h in heights], fontsize=7, padding=2)
        paper = [(paper_recall or {}).get(lab, {}).get(model) for lab in labels]
        pts = [(o, v) for o, v in zip(offs, paper) if v is not None]
        if pts:  # the paper's value over this run's bar, same colour, black edge
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker="D", s=45, color=f"C{k}",
                       edgecolors="black", linewidths=1.2, zorder=3, label=f"{model} (paper)")
    ax.set_xticks(x, list(labels))
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("recall")
    has_paper = any((paper_recall or {}).get(lab) for lab in labels)
    ax.set_title("Per-class recall" + (" (diamonds: paper's reported values)" if has_paper else "")
                 + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=4, frameon=False)
    return _save(fig, path)


def plot_accuracy_vs_tokens(points: dict[str, list[tuple[float, float]]],
                            references: dict[str, float], path: Path, subtitle: str = "") -> Path:
    """Accuracy against mean output tokens per example, one labelled point per model and run.

    `points` = {model: [(mean_output_tokens, accuracy), ...]} for generating models; `references` =
    {name: accuracy} for the CPU baselines, which emit no tokens and are drawn as horizontal lines.
    """
    fig, ax = plt.subplots(figsize=(6.0, 4.2), layout="constrained")
    for model, pts in points.items():
        pts = [(t, a) for t, a in pts if t is not None and a is not None]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=model, s=40)
            for t, a in pts:
                ax.annotate(f"{a:.3f}", (t, a), textcoords="offset points", xytext=(5, 5), fontsize=7)
    for k, (name, acc) in enumerate(references.items()):
        if acc is not None:
            ax.axhline(acc, linestyle="--", linewidth=1, color=f"C{k + 5}", label=f"{name} (CPU, 0 tokens): {acc:.3f}")
    ax.set_xlabel("mean output tokens per example")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_xlim(left=0)
    ax.set_title("Accuracy vs generated tokens" + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_latency(rows: list[dict], path: Path, subtitle: str = "") -> Path:
    """Seconds per example and correct answers per second against the batch size, one line per model.

    `rows` = [{"model", "batch_size" (int or "all"), "seconds_per_example", "correct_per_second"}]."""
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.0), layout="constrained")
    sizes = list(dict.fromkeys(str(r["batch_size"]) for r in rows))
    for k, model in enumerate(dict.fromkeys(r["model"] for r in rows)):
        mine = {str(r["batch_size"]): r for r in rows if r["model"] == model}
        x = [sizes.index(b) for b in mine]
        for ax, key in zip(axes, ("seconds_per_example", "correct_per_second")):
            ax.plot(x, [mine[b][key] for b in mine], marker="o", color=f"C{k}", label=model)
    for ax, label in zip(axes, ("seconds per example (log)", "correct answers per second")):
        ax.set_xticks(range(len(sizes)), sizes)
        ax.set_xlabel("batch size (prompts per engine call)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    axes[0].set_yscale("log")
    fig.suptitle("Latency and throughput (wall clock, not reproducible)" + (f"\n{subtitle}" if subtitle else ""),
                 fontsize=10)
    return _save(fig, path)
