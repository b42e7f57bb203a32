"""Figures of the study, as matplotlib Figure objects (saved by the catalog, never here).

After Shen et al. (2022): Fig. 3 (SOC densities and principal components of the library, the
RS-LOCAL selection and the local samples), Fig. 4a (dRMSE per method and site) and Fig. 4b
(estimated against observed SOC for each site's best model).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import gaussian_kde  # noqa: E402

COLOURS = {"library": "#9e9e9e", "selected": "#d95f02", "local": "#1b9e77", "test": "#7570b3"}


def _density(ax, values, label, colour, grid):
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) > 2 and np.ptp(values) > 0:
        ax.plot(grid, gaussian_kde(values)(grid), label=f"{label} (n={len(values)})",
                color=colour, lw=2)
    elif len(values):
        ax.axvline(values.mean(), label=f"{label} (n={len(values)})", color=colour)


def soc_density_figure(library_soc, selected_soc, local_soc, title: str):
    """SOC density of the library, the RS-LOCAL selection and the local calibration samples."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=110)
    everything = np.concatenate([np.asarray(v, dtype=float) for v in
                                 (library_soc, selected_soc, local_soc)])
    upper = float(np.nanquantile(everything, 0.995)) if everything.size else 1.0
    grid = np.linspace(0.0, max(upper, 0.5), 300)
    _density(ax, library_soc, "library", COLOURS["library"], grid)
    _density(ax, selected_soc, "RS-LOCAL k", COLOURS["selected"], grid)
    _density(ax, local_soc, "local n", COLOURS["local"], grid)
    ax.set_xlabel("SOC (%)")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def pca_figure(library_scores, selected_scores, local_scores, title: str, explained=None):
    """First two principal components (of the library PCA) of library, selection and site."""
    fig, ax = plt.subplots(figsize=(5.0, 4.2), dpi=110)
    for scores, label, colour, size in (
        (library_scores, "library", COLOURS["library"], 4),
        (selected_scores, "RS-LOCAL k", COLOURS["selected"], 14),
        (local_scores, "local n", COLOURS["local"], 18),
    ):
        scores = np.asarray(scores, dtype=np.float64)
        if len(scores):
            ax.scatter(scores[:, 0], scores[:, 1], s=size, color=colour, alpha=0.7,
                       label=label, edgecolors="none")
    labels = ["PC1", "PC2"]
    if explained is not None:
        labels = [f"PC{i + 1} ({100 * explained[i]:.1f} %)" for i in range(2)]
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, fontsize=8, markerscale=1.5)
    fig.tight_layout()
    return fig


def delta_rmse_figure(table: pd.DataFrame, reference: str):
    """dRMSE (%) against the reference method (the registry's: Local) per method (bars) and
    site (groups), like the paper's Fig. 4a."""
    methods = [m for m in table["method"].unique() if m != reference]
    sites = list(table["site"].unique())
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(methods) + 2), 4.0), dpi=110)
    width = 0.8 / max(len(sites), 1)
    x = np.arange(len(methods))
    for i, site in enumerate(sites):
        rows = table.loc[table["site"] == site].set_index("method")
        values = [rows.at[m, "drmse"] if m in rows.index else np.nan for m in methods]
        ax.bar(x + i * width - 0.4 + width / 2, values, width, label=site)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, methods, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(f"dRMSE against {reference} (%)")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def observed_estimated_figure(panels: list[dict]):
    """Estimated against observed SOC, one panel per site (keys: site, method, observed,
    estimated, lower, upper)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 4.0), dpi=110,
                             squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        y = np.asarray(panel["observed"], dtype=float)
        yhat = np.asarray(panel["estimated"], dtype=float)
        if panel.get("lower") is not None:
            # an estimate below 0 has its interval clipped at 0, above it: no bar below
            ax.errorbar(y, yhat, yerr=[np.maximum(yhat - panel["lower"], 0.0),
                                       np.maximum(panel["upper"] - yhat, 0.0)], fmt="none",
                        ecolor="#cccccc", lw=0.8, zorder=1)
        ax.scatter(y, yhat, s=14, color=COLOURS["test"], zorder=2)
        low = float(min(y.min(), yhat.min()))
        high = float(max(y.max(), yhat.max()))
        ax.plot([low, high], [low, high], color="black", lw=0.8)
        ax.set_xlabel("observed SOC (%)")
        ax.set_ylabel("estimated SOC (%)")
        ax.set_title(f"{panel['site']}: {panel['method']}", fontsize=10)
    fig.tight_layout()
    return fig
