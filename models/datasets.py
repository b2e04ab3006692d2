"""Offline data sets: scikit-learn's bundled digits, digits as RGB images, and a synthetic text task."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from serveoff.models.spec import Dataset

HELDOUT = 256


def _split(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> Dataset:
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    return Dataset(x[HELDOUT:], y[HELDOUT:].astype(np.int64), x[:HELDOUT], y[:HELDOUT].astype(np.int64))


def digits(seed: int) -> Dataset:
    """The 1,797 8x8 digits as NHWC float32 images ``[n, 8, 8, 1]`` scaled to [0, 1]."""
    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[..., None]
    return _split(x, bunch.target, np.random.default_rng(seed))


def digit_images(seed: int, size: int, limit: int = 768) -> Dataset:
    """Digits upscaled to ``size`` x ``size`` RGB NHWC float32 images, with per-channel tint and noise."""
    rng = np.random.default_rng(seed)
    bunch = load_digits()
    pick = rng.permutation(len(bunch.images))[:limit]
    small = (bunch.images[pick] / 16.0).astype(np.float32)
    factor = -(-size // 8)
    big = np.kron(small, np.ones((factor, factor), dtype=np.float32))[:, :size, :size]
    tint = rng.uniform(0.5, 1.5, size=(len(pick), 1, 1, 3)).astype(np.float32)
    noise = rng.normal(0.0, 0.05, size=(len(pick), size, size, 3)).astype(np.float32)
    x = big[..., None] * tint + noise
    x = (x - 0.5) / 0.5
    return _split(x.astype(np.float32), bunch.target[pick], rng)


def topic_text(seed: int, vocab_size: int, seq_len: int, num_classes: int, count: int = 1280) -> Dataset:
    """Synthetic token-id sequences whose class is the topic most of their words come from.

    Id 0 is padding and id 1 is the [CLS] token that starts every sequence; each topic owns a
    disjoint band of the remaining vocabulary. Sequences have random lengths, so padding (and
    the attention mask that ignores it) is exercised.
    """
    rng = np.random.default_rng(seed)
    first_word = 2
    band = (vocab_size - first_word) // num_classes
    x = np.zeros((count, seq_len), dtype=np.int32)
    y = rng.integers(0, num_classes, size=count)
    for i in range(count):
        length = int(rng.integers(seq_len // 4, seq_len))
        topic_start = first_word + y[i] * band
        on_topic = rng.integers(topic_start, topic_start + band, size=length)
        anywhere = rng.integers(first_word, vocab_size, size=length)
        words = np.where(rng.random(length) < 0.6, on_topic, anywhere)
        x[i, 0] = 1
        x[i, 1:length] = words[: length - 1]
    return _split(x, y, rng)
