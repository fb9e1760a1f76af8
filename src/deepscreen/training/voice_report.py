"""The voice tables as text, for the terminal and the model card: one run's per-generator table, and the
leave-one-generator-out table of several runs."""

from __future__ import annotations

import numpy as np


def format_report(report: dict) -> str:
    """The per-generator table of one run, for the terminal and the model card."""
    held = [g for g, r in report["generators"].items() if r["held_out"]]
    trained = f"{report['config']['steps']} steps"
    trained += f", {report['train_s'] / 60:.1f} min" if report["train_s"] else ""
    what = "trained on all generators" if not held else "held out: " + ", ".join(held)
    if report["config"].get("frontend") == "phase":  # PhaseNovelty: no generator is ever trained on
        what = "phase novelty, fitted on real speech only"
        trained = f"{report['train_s'] / 60:.1f} min" if report["train_s"] else "no training steps"
    lines = [f"voice detector, {what} ({trained})",
             f"{'generator':<13} {'EER':>7} {'AUC':>7} {'EER coded':>10} {'TPR@0.5':>8}"]
    for g, r in report["generators"].items():
        mark = "  (held out)" if r["held_out"] else "  (never trained on)" if r.get("unseen") else ""
        lines.append(f"{g:<13} {r['eer']:7.2%} {r['auc']:7.4f} {r['eer_coded']:10.2%} {r['tpr_at_0.5']:8.1%}{mark}")
    if "in_domain" in report:
        r = report["in_domain"]
        lines.append(f"{'in-domain':<13} {r['eer']:7.2%} {r['auc']:7.4f} {r['eer_coded']:10.2%}"
                     "   (trained generators pooled)")
    fpr = report["real_fpr_at_0.5"]
    lines.append("real speech flagged at p>=0.5: " + ", ".join(f"{ch} {v:.1%}" for ch, v in fpr.items())
                 + f"  ({report['counts']['test_real']} held-out utterances)")
    return "\n".join(lines)


def format_logo(reports: list[dict]) -> str:
    """Leave-one-generator-out: each row is a model trained without one generator, tested on that generator."""
    model = reports[0]["config"]["frontend"] if reports else ""  # "linear+wave+phase": combined
    lines = [f"leave-one-generator-out, {model} (train without X, test on X; held-out speakers)",
             f"{'held out':<12} {'EER':>7} {'AUC':>7} {'EER coded':>10} {'TPR@0.5':>8} {'real FPR':>9}"]
    eers, coded = [], []
    for r in reports:
        for g, row in r["generators"].items():
            if row["held_out"]:
                eers.append(row["eer"])
                coded.append(row["eer_coded"])
                lines.append(f"{g:<12} {row['eer']:7.2%} {row['auc']:7.4f} {row['eer_coded']:10.2%} "
                             f"{row['tpr_at_0.5']:8.1%} {r['real_fpr_at_0.5']['clean']:9.1%}")
    if eers:
        lines.append(f"{'mean':<12} {np.mean(eers):7.2%} {'':>7} {np.mean(coded):10.2%}")
    return "\n".join(lines)
