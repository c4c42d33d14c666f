"""The training curve of a run: training-loss bpp/PSNR and real-coding validation against step and
CPU-hours, as JSON and a PNG plot.

    python benchmarks/training_curve.py RUN_DIR [--out benchmarks/results/training-curve]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--out", default="benchmarks/results/training-curve")
    args = ap.parse_args()
    recs = [json.loads(line) for line in (Path(args.run_dir) / "train.jsonl").read_text().splitlines() if line.strip()]
    config = json.loads((Path(args.run_dir) / "train_config.json").read_text())
    keep = ("step", "cpu_hours", "lr", "loss", "bpp", "psnr", "images_per_s", "validation")
    rows = []
    for r in recs:
        # A run resumed from an older checkpoint logs those steps again: the replay supersedes them.
        while rows and rows[-1]["step"] >= r["step"]:
            rows.pop()
        rows.append({k: r[k] for k in keep if k in r})
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
