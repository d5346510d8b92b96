"""The events loo-latest holds out, described: are the test and validation events alike?

python benchmarks/tuning/loo_last_events.py ml-latest-small

Each user's events sorted by (timestamp, item id), as the protocol sorts them: the last is the
test event, the one before it the validation event, the one before that the carve's last training
event. Prints the share of users whose test and validation events share a timestamp (and the
validation and the event before it), and the median popularity (ratings in the whole file) of
each of the three events' items.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from recforge.data.sources import load_dataset


def main(dataset: str) -> None:
    data = load_dataset(dataset)
    frame = pd.DataFrame(
        {"user": data.user_idx, "item": data.item_idx, "ts": np.asarray(data.timestamp)}
    ).sort_values(["user", "ts", "item"], kind="stable")
    by_user = frame.groupby("user")
    last, second, third = (by_user.nth(-n).set_index("user") for n in (1, 2, 3))
    popularity = data.item_counts()
    same_test = (last["ts"] == second["ts"].reindex(last.index)).mean()
    same_valid = (second["ts"] == third["ts"].reindex(second.index)).mean()
    print(f"{dataset}: {len(last)} users")
    print(f"test and validation events share a timestamp: {same_test:.3f} of users")
    print(f"validation event and the one before share a timestamp: {same_valid:.3f} of users")
    for name, part in (("test", last), ("validation", second), ("before", third)):
        median = np.median(popularity[part["item"].to_numpy()])
        print(f"median ratings of the {name} events' items: {median:.0f}")


if __name__ == "__main__":
    main(sys.argv[1])
