"""The training curve of a run: training-loss bpp/PSNR and real-coding validation against step and
CPU-hours, as JSON and a PNG plot.

    python benchmarks/training_curve.py RUN_DIR [RUN_DIR ...] [--out benchmarks/results/training-curve]

Several run folders are stages of one lineage, in order: a run started with ``--init-from`` from the
export of the one before (e.g. grown to more latent channels) counts its CPU-hours from the very start,
and its steps are shown continuing the previous stage's last logged step. A folder whose log
starts past step 0 is a branch (a copy of the previous run's checkpoint, resumed, e.g. with a decay):
it replaces the previous stage's records from its first step on.

    python benchmarks/training_curve.py --after benchmarks/results/training-curve.json RUN_DIR [...]

continues a curve written before (whose run folders may be gone) with the stages given, the first of
them a run of its own.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def stage_rows(run_dir: Path, step_offset: int, stage: int) -> list[dict]:
    recs = [json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines() if line.strip()]
    keep = ("step", "cpu_hours", "lr", "loss", "bpp", "psnr", "images_per_s", "validation")
    rows: list[dict] = []
    for r in recs:
        if "step" not in r:  # the record of a (re)start's configuration
            continue
        # A run resumed from an older checkpoint logs those steps again: the replay supersedes them.
        while rows and rows[-1]["step"] - step_offset >= r["step"]:
            rows.pop()
        rows.append({**{k: r[k] for k in keep if k in r}, "step": r["step"] + step_offset, "stage": stage})
    return rows


def first_step(run_dir: Path) -> int:
    """The step a run folder's log starts at: 0 for a run of its own, later for a branch (a copy of another
    run's checkpoint, with its train_config.json or without)."""
    with open(run_dir / "train.jsonl") as f:
        return next(json.loads(line)["start"] for line in f if '"start"' in line)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dirs", nargs="+")
    ap.add_argument("--out", default="benchmarks/results/training-curve")
    ap.add_argument("--after", help="a curve JSON written before: its stages come first")
    args = ap.parse_args()
    rows: list[dict] = []
    stages = []
    if args.after:
        before = json.loads(Path(args.after).read_text())
        rows = before["records"]
        stages = before["config"] if isinstance(before["config"], list) else [before["config"]]
    offset = 0
    for i, d in enumerate(map(Path, args.run_dirs), start=len(stages)):
        config = json.loads((d / "train_config.json").read_text()) if (d / "train_config.json").exists() else {}
        if first_step(d) == 0:  # a run of its own: steps restart at 0
            stages.append({"run": d.name, **config})
            offset = rows[-1]["step"] if rows else 0
            rows += stage_rows(d, offset, i)
        else:  # a branch: a copy of the previous run's checkpoint, resumed; its steps continue
            stages.append({"run": d.name, "branch_of": stages[-1]["run"], **config})
            branch = stage_rows(d, offset, i)
            rows = [r for r in rows if r["step"] < branch[0]["step"]] + branch
    config = stages if len(stages) > 1 else stages[0]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"config": config, "records": rows}, indent=0))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    cpu = [r["cpu_hours"] for r in rows]
    axes[0].plot(cpu, [r["psnr"] for r in rows], lw=0.8, label="training PSNR (all rates, noisy crops)")
    ax2 = axes[0].twinx()
    ax2.plot(cpu, [r["bpp"] for r in rows], lw=0.8, color="tab:orange", label="training bpp")
    axes[0].set_xlabel("CPU-hours")
    axes[0].set_ylabel("PSNR (dB)")
    ax2.set_ylabel("bpp")
    axes[0].set_title("training loss terms (mean over the rate levels)")
    for r0, r1 in zip(rows, rows[1:]):
        if r1["stage"] != r0["stage"]:
            axes[0].axvline(r1["cpu_hours"], color="grey", ls=":", lw=0.8)
            axes[1].axvline(r1["cpu_hours"], color="grey", ls=":", lw=0.8)
            axes[1].annotate(f"stage {r1['stage']}: {stages[r1['stage']]['run']}", (r1["cpu_hours"], 0.02),
                             xycoords=("data", "axes fraction"), fontsize=7, rotation=90)
    val = [r for r in rows if "validation" in r]
    for q in (sorted(val[0]["validation"]) if val else []):
        axes[1].plot([r["cpu_hours"] for r in val], [r["validation"][q]["psnr_rgb"] for r in val], marker="o",
                     label=f"{q}: PSNR-RGB")
        for r in val:
            axes[1].annotate(f"{r['validation'][q]['bpp']:.2f}", (r["cpu_hours"], r["validation"][q]["psnr_rgb"]),
                             fontsize=6)
    axes[1].set_xlabel("CPU-hours")
    axes[1].set_ylabel("PSNR-RGB (dB), labels: bpp")
    axes[1].set_title("validation with real entropy coding")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=100)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
