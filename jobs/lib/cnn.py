"""The reference CNN of the study: two conv blocks (32, 64 filters), Dense 128, softmax 10."""

from __future__ import annotations


def build_model(learning_rate: float = 1e-3):
    """[Conv3x3-BN-ReLU]x2, MaxPool, Dropout .25 for 32 then 64 filters; Dense 128, Dropout .5."""
    import tf_keras as keras

    layers = keras.layers

    def conv_block(filters):
        block = []
        for _ in range(2):
            block += [layers.Conv2D(filters, 3, padding="same"), layers.BatchNormalization(), layers.ReLU()]
        return block + [layers.MaxPooling2D(2), layers.Dropout(0.25)]

    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            *conv_block(32),
            *conv_block(64),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ],
        name="reference_cnn",
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return without_autograph(model)


def without_autograph(model):
    """Keras traces its steps with AutoGraph, which rewrites the source of every layer, loss and
    optimizer it calls: 20 s of one core for the first training step and 15 s for the first
    test step here. Nothing in them branches on a tensor in Python (the layers use smart_cond),
    so plain tracing builds the same graph in about 2 s."""
    import tensorflow as tf

    model.train_step = tf.autograph.experimental.do_not_convert(model.train_step)
    model.test_step = tf.autograph.experimental.do_not_convert(model.test_step)
    return model
