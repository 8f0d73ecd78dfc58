"""Multi-process tests: real worker processes on 127.0.0.1, run once (not per Keras backend).

Each worker script sets its own Keras backend (the JAX jobs ``jax``, the tf.distribute job
``tensorflow``), so ``make test`` runs this folder once, whatever ``KERAS_BACKEND`` is. The
helpers they share are in ``launch.py``.
"""
