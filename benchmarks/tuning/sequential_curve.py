"""Learning curve of a model on a protocol's validation carve: valid metrics per epoch.

python benchmarks/tuning/sequential_curve.py ml-100k temporal-user-80-20 sasrec '{"max_len": 50}'
"""

import json
import sys
import time

from recforge.data.sources import load_dataset
from recforge.eval.protocols import get_protocol
from recforge.models.registry import create
from recforge.train.trainer import epoch_callback

data, protocol, name, cfg = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
proto = get_protocol(protocol)
inner = proto.validation_split(proto.split(load_dataset(data)))
t = time.time()


def _each_epoch(epoch: int, row: dict[str, float]) -> None:
    # As the fit goes (a long curve stopped early still leaves its epochs in the log).
    print("epoch", epoch, {k: round(float(v), 4) for k, v in row.items()}, flush=True)


with epoch_callback(_each_epoch):
    m = create(name, {"verbose": False, **cfg}).fit(inner.train, valid=inner.split.test)
print(json.dumps(cfg), "fit", round(time.time() - t))
print(
    m.history_[["epoch", "train_loss", "valid_loss", "valid_ndcg@10", "seconds"]]
    .round(4)
    .to_string()
)
print("final protocol metric", proto.evaluate(m, inner)["metrics"]["ndcg@10"])
