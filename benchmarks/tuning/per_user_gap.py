"""Per-user NDCG@10 of two configs on a protocol's validation carve, by training-history length.

Where does one model lose to the other: light users, heavy users (histories longer than a
sequential model's ``max_len``), users whose held-out part is short or long?

python benchmarks/tuning/per_user_gap.py ml-latest-small temporal-user-80-20 \
    configs/ml-latest-small/temporal-user-80-20/ease-recency.toml '{"model": "sasrec", ...}'

Each config is a committed TOML file or an inline JSON object with a ``model`` key. Prints the
mean NDCG@10 of both per quartile of training-history length and of held-out size, with the
user counts, and the overall means (the numbers the learning curves report).
"""

import json
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from recforge.data.sources import load_dataset
from recforge.eval.evaluate import evaluate_ranking
from recforge.eval.protocols import get_protocol
from recforge.models.registry import create


def _config(arg: str) -> dict:
    cfg = json.loads(arg) if arg.lstrip().startswith("{") else tomllib.loads(Path(arg).read_text())
    return cfg


data, protocol, *configs = sys.argv[1:]
inner = get_protocol(protocol).validation_split(get_protocol(protocol).split(load_dataset(data)))
train, test = inner.train, inner.split.test
frames = []
for k, arg in enumerate(configs):
    cfg = _config(arg)
    t = time.time()
    model = create(cfg.pop("model"), cfg).fit(train)
    report = evaluate_ranking(
        model, inner.split, ks=(10,), relevance_threshold=None, candidates="train_items",
        exclude_seen=True,
    )  # fmt: skip
    col = f"m{k}"
    print(f"{col}: {arg[:90]} fit {time.time() - t:.0f} s, ndcg@10 {report.summary['ndcg@10']:.4f}")
    frames.append(report.per_user.set_index("user_id")["ndcg@10"].rename(col))
per_user = pd.concat(frames, axis=1).dropna()
history = train.to_frame()["user_id"].value_counts()
held_out = test.to_frame()["user_id"].value_counts()
per_user["history"] = history.reindex(per_user.index).to_numpy()
per_user["held_out"] = held_out.reindex(per_user.index).to_numpy()
for key in ("history", "held_out"):
    bins = pd.qcut(per_user[key], 4, duplicates="drop")
    table = per_user.groupby(bins, observed=True)[[f"m{k}" for k in range(len(configs))]].agg(
        ["mean", "count"]
    )
    print(f"\nby {key} (quartiles)\n{table.round(4).to_string()}")
diff = per_user["m1"] - per_user["m0"] if len(configs) > 1 else per_user["m0"]
se = diff.std() / np.sqrt(len(diff))
print(f"\nmean m1 - m0 {diff.mean():+.4f} (se {se:.4f}, {len(diff)} users)")
