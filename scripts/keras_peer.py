"""The networks of `burnfit bench` in Keras, timed the same way.

`burnfit bench --peers` starts this script once and sends it one line per
measurement on stdin, `MODEL STEPS`; it answers with one JSON line,
`{"model": ..., "step_ms": ...}`, the time of a `fit` over STEPS batches of
64 synthetic 28x28 images divided by STEPS. The first request for a model
builds and compiles it and runs an untimed warm-up `fit`, so graph tracing
is never timed. The first line it prints describes itself.

Same layers as burnfit-models (channels last, TensorFlow's CPU layout):
mlp 784-256-128-10, simple_cnn (Keras's MNIST example), cnn-C1-C2 (two
blocks of conv3x3-BN-ReLU twice, max pool, dropout; then fc 128); Adam at
1e-3, cross-entropy on logits, accuracy as the metric.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

BATCH = 64


def conv_block(x, channels):
    for _ in range(2):
        x = layers.Conv2D(channels, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.MaxPooling2D(2)(x)
    return layers.Dropout(0.25)(x)


def build(name):
    inputs = keras.Input((28, 28, 1))
    if name == "mlp":
        x = layers.Flatten()(inputs)
        for width in (256, 128):
            x = layers.Dense(width, activation="relu")(x)
            x = layers.Dropout(0.2)(x)
    elif name == "simple_cnn":
        x = layers.Conv2D(32, 3, activation="relu")(inputs)
        x = layers.Conv2D(64, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(0.25)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(128, activation="relu")(x)
        x = layers.Dropout(0.5)(x)
    elif name.startswith("cnn"):
        c1, c2 = (int(c) for c in name.split("-")[1:3]) if "-" in name else (32, 64)
        x = conv_block(inputs, c1)
        x = conv_block(x, c2)
        x = layers.Flatten()(x)
        x = layers.Dense(128, activation="relu")(x)
        x = layers.Dropout(0.5)(x)
    else:
        raise ValueError(f"unknown model {name}")
    model = keras.Model(inputs, layers.Dense(10)(x))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def data(steps, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((steps * BATCH, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, steps * BATCH)
    return x, y


def main():
    print(
        json.dumps(
            {
                "keras": keras.__version__,
                "tensorflow": tf.__version__,
                "threads": os.cpu_count(),
            }
        ),
        flush=True,
    )
    models = {}
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        name, steps = line.split()
        steps = int(steps)
        if name not in models:
            models[name] = build(name)
            x, y = data(3)
            models[name].fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
        x, y = data(steps)
        start = time.perf_counter()
        models[name].fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
        seconds = time.perf_counter() - start
        print(json.dumps({"model": name, "step_ms": seconds / steps * 1000}), flush=True)


if __name__ == "__main__":
    main()
