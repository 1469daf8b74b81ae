"""Load a run's final model from HDFS and evaluate it on the test shards in one process."""

import json
import os
import sys
import tempfile

from jobs.lib.input_pipeline import make_dataset
from jobs.lib.storage import open_storage

run_dir, data = sys.argv[1], sys.argv[2]
storage = open_storage(run_dir)
import tf_keras as keras  # noqa: E402

from jobs.lib.result import emit  # noqa: E402

local = os.path.join(tempfile.mkdtemp(), "final_model.keras")
with open(local, "wb") as handle:
    handle.write(storage.read_bytes(storage.join(run_dir, "final_model.keras")))
model = keras.models.load_model(local)
manifest = json.loads(storage.read_bytes(storage.join(data, "manifest.json")))
test = make_dataset(data, [s["file"] for s in manifest["splits"]["test"]["shards"]], 64, training=False)
loss, accuracy = model.evaluate(test, verbose=0)
emit({"test_loss": loss, "test_accuracy": accuracy})
