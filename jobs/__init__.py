"""PySpark job modules. Each has main(argv) that parses arguments and run(args) -> dict."""

import os

# Keras 3 breaks `fit` under MultiWorkerMirroredStrategy: anything that reaches for tf.keras gets tf-keras.
# Set on import of the package, before any module of it imports TensorFlow; executors get it from
# jobs.lib.session.spark_session, so a user's own cluster needs nothing set.
LEGACY_KERAS = {"TF_USE_LEGACY_KERAS": "1"}
os.environ.update(LEGACY_KERAS)
