"""Benchmarks: what a checkpoint callback costs a Keras training run.

``python -m benchmarks.run`` (``make bench``) compares, on the same models and data, no
callback, ``keras.callbacks.ModelCheckpoint``, ``keras.callbacks.OrbaxCheckpoint``, W&B's
``WandbModelCheckpoint`` and ckptcore's ``ModelCheckpoint`` (synchronous and non-blocking, on
local disk, S3 and W&B), and writes JSON, a markdown table and a plot to
``benchmarks/results/``. The figures are measurements, not tests.
"""
