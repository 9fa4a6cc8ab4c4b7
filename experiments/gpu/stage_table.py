"""One line per ladder stage of ROOT: train / train-val / test-val / test error (%), the bias-variance terms,
the wall time. Used by the device scripts: python3 experiments/gpu/stage_table.py ROOT"""
import json
import pathlib
import sys

for st in ("lenet", "deeper", "resnet", "resnet_lr", "more_data", "weight_decay", "augment", "tuned",
           "night_synth", "night_finetune"):
    p = pathlib.Path(sys.argv[1]) / st / "results.json"
    if not p.exists():
        print(f"{st:15s} missing")
        continue
    r = json.loads(p.read_text())
    e, t = r["errors"], r["terms"]
    print(f"{st:15s} " + " ".join(f"{e[k] * 100:5.1f}" for k in ("train", "train_val", "test_val", "test"))
          + " | " + " ".join(f"{k[:5]}={v * 100:+.1f}" for k, v in t.items()) + f" | {r['wall_time_s']:.0f}s")
