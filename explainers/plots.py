"""Figures of the faithfulness metrics (matplotlib, no pyplot state, so safe in a server).

Rendering only: the numbers come from explainers.metrics and explainers.metrics_sanity.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

FAMILY_TITLES = {
    "cam": "Gradient and activation CAMs",
    "perturbation": "Perturbation CAMs",
    "input-gradient": "Input gradients",
    "fusion": "Guided fusions",
}


def curves_figure(
    fractions: np.ndarray,
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    families: Mapping[str, str],
    titles: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Figure:
    """Deletion (dashed) and insertion (solid) curves, one panel per method family.

    fractions: [S] share of the pixels removed / inserted; curves: method -> (deletion [S],
    insertion [S]) target probabilities; families: method -> family ("cam", "perturbation",
    "input-gradient", "fusion"); titles: method -> display name.
    """
    titles = titles or {}
    panels = list(dict.fromkeys(families[m] for m in curves))
    figure = Figure(figsize=(max(6.4, 4.2 * len(panels)), 3.6), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, family in zip(axes, panels):
        for index, (method, (deletion, insertion)) in enumerate(
            (m, c) for m, c in curves.items() if families[m] == family
        ):
            colour = f"C{index % 10}"
            name = titles.get(method, method)
            ax.plot(fractions, insertion, color=colour, label=f"{name} insertion")
            ax.plot(fractions, deletion, color=colour, linestyle="--", label=f"{name} deletion")
        ax.set_title(FAMILY_TITLES.get(family, family), fontsize=10)
        ax.set_xlabel("share of pixels removed (--) / inserted (—)")
        ax.set_ylabel("probability of the class")
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    if title:
        figure.suptitle(title, fontsize=11)
    return figure


def mean_curves_figure(
    fractions: Mapping[str, np.ndarray],
    deletion: Mapping[str, np.ndarray],
    insertion: Mapping[str, np.ndarray],
    deletion_auc: Mapping[str, float],
    insertion_auc: Mapping[str, float],
    title: str | None = None,
) -> Figure:
    """Two panels, deletion and insertion, with one mean curve per method and its AUC in the
    legend (the evaluation over a folder of images)."""
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    for axis, kind, curves, areas in zip(
        figure.subplots(1, 2), ("deletion", "insertion"), (deletion, insertion), (deletion_auc, insertion_auc)
    ):
        for method, curve in curves.items():
            axis.plot(fractions[method], curve, label=f"{method} (AUC {areas[method]:.3f})")
        better = "lower" if kind == "deletion" else "higher"
        axis.set(
            title=f"{kind.capitalize()} ({better} is better)",
            xlabel="fraction of pixels " + ("removed" if kind == "deletion" else "inserted"),
            ylabel="mean probability of the class",
            xlim=(0, 1),
            ylim=(0, None),
        )
        axis.legend(fontsize=8)
    if title:
        figure.suptitle(textwrap.fill(title, 140), fontsize=8)
    return figure


def sanity_figure(
    randomised: Sequence[int],
    layers: Sequence[str],
    spearman: Mapping[str, np.ndarray],
    threshold: float,
    titles: Mapping[str, str] | None = None,
    title: str | None = None,
    controls: Mapping[str, float] | None = None,
) -> Figure:
    """Mean Spearman correlation with the trained model's map as layers are randomised top down.

    randomised: how many parameter layers are randomised after each stage; layers: the last layer
    randomised at each stage; spearman: method -> [stages] mean correlations. controls: method ->
    its largest control figure (SanityVerdict.control), drawn as a dotted line in the method's
    colour; without controls, the fixed `threshold` is drawn instead.
    """
    titles = titles or {}
    figure = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = figure.subplots()
    stages = np.arange(len(randomised) + 1)
    for index, (method, values) in enumerate(spearman.items()):
        colour = f"C{index % 10}"
        name = titles.get(method, method)
        ax.plot(stages, np.concatenate([[1.0], values]), marker="o", color=colour, label=name)
        if controls is not None and np.isfinite(controls.get(method, np.nan)):
            ax.axhline(controls[method], color=colour, linestyle=":", label=f"{name}: largest control")
    if controls is None:
        ax.axhline(threshold, color="grey", linestyle=":", label=f"fails above {threshold:g}")
    ax.set_xticks(stages, ["trained"] + [f"{n}\n{name}" for n, name in zip(randomised, layers)], fontsize=6)
    ax.set_xlabel("parameter layers randomised, from the top (last one named)")
    ax.set_ylabel("Spearman with the trained map")
    ax.set_ylim(-1.05, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return figure
