"""Benchmark (issue 13): seconds per training epoch of the CWFID crop/weed recipe, against the
code of a baseline commit, in one run.

    python benchmarks/training_speed.py [--baseline 022460e] [--short 2] [--long 10]

The recipe is the train step of ``workflows/crop-weed.yaml`` (U-Net/MobileNetV2 depth 5, 128 px
chips, batch 16, 256 chips per epoch, cross entropy + Dice, 2 threads, CPU), with its schedule
shortened. Each variant trains twice, for ``--short`` and ``--long`` epochs (validated once, at
the end), in a fresh process; seconds per epoch are ``(wall_long - wall_short) / (long -
short)``, so start-up, data loading and the final validation cancel out. The variants run
interleaved ``--repeats`` times and the fastest repeat counts (the one least disturbed by
anything else on the machine); every repeat is printed. The held-out mIoU
after ``--long`` epochs (the same images held out for every variant) checks that a faster
variant does not cost accuracy on that short schedule.

Variants: the baseline commit's code (a git worktree under ``benchmarks/.cache``), this code
with the recipe as it is, with ``channels_last: true``, with ``channels_last: true, precision:
bfloat16``, and with those and ``checkpoint_every: 10`` (the resumable checkpoint, optimiser
state included, written every 10 epochs instead of every epoch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

SCRIPT = """
import json, sys, time, yaml
from pathlib import Path
from geoseg.catalog import Catalog
from geoseg.training.config import TrainConfig
from geoseg.training.loop import train
repo, out, epochs, options = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cfg = yaml.safe_load((repo / "workflows" / "crop-weed.yaml").read_text())["steps"][0]["train"]
cfg.update(json.loads(options), output=str(out), epochs=epochs, validate_every=epochs, card="")
start = time.perf_counter()
result = train(TrainConfig(**cfg), Catalog.load(repo / "data_catalog.yaml"), out, False)
wall = time.perf_counter() - start
print(json.dumps({"wall_s": wall, "miou": result.meta.metrics["validation"]["miou"]}))
"""


def run(code: Path, name: str, epochs: int, options: dict[str, Any]) -> dict[str, Any]:
    """One training in a fresh process with geoseg imported from ``code``."""
    out = common.CACHE / "training-speed" / f"{name}-{epochs}.geoseg"
    subprocess.run(["rm", "-rf", str(out), f"{out}.checkpoints"], check=True)
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(common.REPO),
            str(out),
            str(epochs),
            json.dumps(options),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=code,
    )
    if done.returncode:
        raise RuntimeError(f"{name} ({epochs} epochs) failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def worktree(rev: str) -> Path:
    """The baseline commit's code, checked out once under the cache."""
    path = common.CACHE / f"baseline-{rev}"
    if not path.exists():
        subprocess.run(
            ["git", "-C", str(common.REPO), "worktree", "add", "--detach", str(path), rev],
            check=True,
            capture_output=True,
        )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="022460e", help="commit before the speed-ups")
    parser.add_argument("--short", type=int, default=2)
    parser.add_argument("--long", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved; the fastest counts")
    args = parser.parse_args()
    clock = time.perf_counter()
    variants = [
        ("baseline", worktree(args.baseline), {}),
        ("this code", common.REPO, {}),
        ("channels_last", common.REPO, {"channels_last": True}),
        ("channels_last + bfloat16", common.REPO, {"channels_last": True, "precision": "bfloat16"}),
        (
            "channels_last + bfloat16 + checkpoint_every 10",
            common.REPO,
            {"channels_last": True, "precision": "bfloat16", "checkpoint_every": 10},
        ),
    ]
    per_epoch: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    mious: dict[str, float] = {}
    for repeat in range(args.repeats):  # variants interleaved, so a slow spell hits them all
        for name, code, options in variants:
            slug = name.replace(" ", "").replace("+", "-")
            short = run(code, slug, args.short, options)
            long = run(code, slug, args.long, options)
            per_epoch[name].append((long["wall_s"] - short["wall_s"]) / (args.long - args.short))
            mious[name] = long["miou"]
            print(json.dumps({"repeat": repeat, "variant": name, "s": per_epoch[name][-1]}))
    rows = [
        {
            "variant": name,
            "options": options,
            "seconds_per_epoch": round(min(per_epoch[name]), 2),
            "each_repeat": [round(v, 2) for v in per_epoch[name]],
            "held_out_miou": round(mious[name], 3),
        }
        for name, _, options in variants
    ]
    base = rows[0]["seconds_per_epoch"]
    for row in rows:
        row["speed_vs_baseline"] = round(base / row["seconds_per_epoch"], 2)
    print(
        json.dumps(
            {
                "recipe": "workflows/crop-weed.yaml train step, CPU, 2 threads",
                "epochs": [args.short, args.long],
                "rows": rows,
                "target": "2x faster per epoch, held-out mIoU not lower",
                "benchmark_wall_s": round(time.perf_counter() - clock, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
