"""``text-encoder``: a small post-LN BERT-style encoder that classifies token ids by their [CLS] state."""

from __future__ import annotations

import math

import keras
import numpy as np
import torch
from keras import ops
from torch import nn

from serveoff.models import datasets
from serveoff.models.spec import Dataset, InputSpec, TrainingPlan
from serveoff.models.zoo.digits_mlp import dense_weights

# BERT's LayerNorm epsilon. Keras' LayerNormalization defaults to 1e-3, so it is set explicitly on both sides.
LAYER_NORM_EPS = 1e-12
# Added to the attention scores of padding keys. Keras' MultiHeadAttention instead replaces masked scores with
# -0.7 * float32 max; both make exp() exactly 0 (and both attend uniformly in a row that is all padding).
MASK_BIAS = -1e9
PAD_ID = 0


class SelfAttention(nn.Module):
    """Multi-head self-attention written out explicitly (no fused kernels), mirroring Keras' layer."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.output = nn.Linear(hidden, hidden)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        # [b, t, hidden] -> [b, heads, t, head_dim]: feature j goes to head j // head_dim, as in Keras.
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + mask_bias
        context = torch.softmax(scores, dim=-1) @ v
        return self.output(context.transpose(1, 2).flatten(2))


class EncoderLayer(nn.Module):
    """Post-LN transformer block: attention, add & norm, GELU feed-forward, add & norm."""

    def __init__(self, hidden: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.attention = SelfAttention(hidden, heads)
        self.attention_norm = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)
        self.ffn_in = nn.Linear(hidden, ffn)
        self.gelu = nn.GELU()  # exact (erf) GELU, as in BERT; Keras must not use the tanh approximation
        self.ffn_out = nn.Linear(ffn, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        x = self.attention_norm(x + self.attention(x, mask_bias))
        return self.ffn_norm(x + self.ffn_out(self.gelu(self.ffn_in(x))))


class TextEncoderTorch(nn.Module):
    """Int32 ids ``[n, seq_len]`` -> embeddings -> encoder layers -> tanh pooler on [CLS] -> logits."""

    def __init__(
        self, vocab_size: int, seq_len: int, hidden: int, layers: int, heads: int, ffn: int, num_classes: int
    ) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, hidden)
        self.position_embedding = nn.Embedding(seq_len, hidden)
        self.embedding_norm = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)
        self.layers = nn.ModuleList(EncoderLayer(hidden, heads, ffn) for _ in range(layers))
        self.pooler = nn.Linear(hidden, hidden)
        self.classifier = nn.Linear(hidden, num_classes)
        self.apply(_bert_init)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        ids = input_ids.long()  # the wire carries int32; nn.Embedding wants int64
        # Padding keys get a large negative bias, broadcast over heads and queries: [n, 1, 1, seq_len].
        mask_bias = (ids == PAD_ID).to(torch.float32)[:, None, None, :] * MASK_BIAS
        # Every input has exactly seq_len positions, so the whole position table is added.
        x = self.embedding_norm(self.token_embedding(ids) + self.position_embedding.weight)
        for layer in self.layers:
            x = layer(x, mask_bias)
        return self.classifier(torch.tanh(self.pooler(x[:, 0])))


def _bert_init(module: nn.Module) -> None:
    """BERT's initialisation: N(0, 0.02) weights and zero biases (LayerNorms keep ones and zeros)."""
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear):
        nn.init.zeros_(module.bias)


class TextEncoder:
    """The ``text-encoder`` architecture; subclasses change only the sizes."""

    name = "text-encoder"
    description = "4-layer post-LN BERT-style encoder (hidden 256) classifying synthetic topic text"
    num_classes = 4
    vocab_size = 2048
    seq_len = 128
    hidden = 256
    layers = 4
    heads = 4
    ffn = 1024
    # Post-LN without warm-up: at lr 1e-3 the loss spikes back to chance on some seeds; 3e-4 is stable.
    training = TrainingPlan(steps=150, batch_size=32, learning_rate=3e-4)

    def __init__(self) -> None:
        self.input = InputSpec("input_ids", "int32", (self.seq_len,))

    def config(self) -> dict:
        return {
            "vocab_size": self.vocab_size,
            "seq_len": self.seq_len,
            "hidden": self.hidden,
            "layers": self.layers,
            "heads": self.heads,
            "ffn": self.ffn,
            "num_classes": self.num_classes,
            "layer_norm_eps": LAYER_NORM_EPS,
        }

    def dataset(self, seed: int) -> Dataset:
        return datasets.topic_text(seed, self.vocab_size, self.seq_len, self.num_classes)

    def torch_module(self) -> nn.Module:
        return TextEncoderTorch(
            self.vocab_size, self.seq_len, self.hidden, self.layers, self.heads, self.ffn, self.num_classes
        )

    def keras_model(self) -> keras.Model:
        ids = keras.Input(self.input.shape, name=self.input.name, dtype=self.input.dtype)
        # [n, 1, seq_len] boolean, True where a key may be attended to (id != 0): the torch mask's semantics.
        # MultiHeadAttention broadcasts it over heads and queries.
        attention_mask = ops.expand_dims(ops.not_equal(ids, PAD_ID), 1)
        positions = ops.cumsum(ops.ones_like(ids), axis=1) - 1  # 0..seq_len-1, kept symbolic
        x = keras.layers.Embedding(self.vocab_size, self.hidden, name="token_embedding")(ids)
        x = x + keras.layers.Embedding(self.seq_len, self.hidden, name="position_embedding")(positions)
        x = _layer_norm("embedding_norm")(x)
        for i in range(self.layers):
            attention = keras.layers.MultiHeadAttention(
                self.heads, self.hidden // self.heads, name=f"layer{i}_attention"
            )(x, x, attention_mask=attention_mask)
            x = _layer_norm(f"layer{i}_attention_norm")(x + attention)
            h = keras.layers.Dense(self.ffn, name=f"layer{i}_ffn_in")(x)
            # Exact erf GELU like torch's nn.GELU(); keras.ops.gelu defaults to the tanh approximation.
            h = ops.gelu(h, approximate=False)
            h = keras.layers.Dense(self.hidden, name=f"layer{i}_ffn_out")(h)
            x = _layer_norm(f"layer{i}_ffn_norm")(x + h)
        pooled = keras.layers.Dense(self.hidden, activation="tanh", name="pooler")(x[:, 0])
        logits = keras.layers.Dense(self.num_classes, name="classifier")(pooled)
        return keras.Model(ids, logits, name=self.name.replace("-", "_"))

    def port_weights(self, module: nn.Module, model: keras.Model) -> None:
        # Embedding tables need no change; dense_weights transposes torch's [out, in] Linear kernels.
        model.get_layer("token_embedding").set_weights([_numpy(module.token_embedding.weight)])
        model.get_layer("position_embedding").set_weights([_numpy(module.position_embedding.weight)])
        model.get_layer("embedding_norm").set_weights(_norm_weights(module.embedding_norm))
        for i, layer in enumerate(module.layers):
            model.get_layer(f"layer{i}_attention").set_weights(_attention_weights(layer.attention))
            model.get_layer(f"layer{i}_attention_norm").set_weights(_norm_weights(layer.attention_norm))
            model.get_layer(f"layer{i}_ffn_in").set_weights(dense_weights(layer.ffn_in))
            model.get_layer(f"layer{i}_ffn_out").set_weights(dense_weights(layer.ffn_out))
            model.get_layer(f"layer{i}_ffn_norm").set_weights(_norm_weights(layer.ffn_norm))
        model.get_layer("pooler").set_weights(dense_weights(module.pooler))
        model.get_layer("classifier").set_weights(dense_weights(module.classifier))


class TextEncoderTiny(TextEncoder):
    """``text-encoder-tiny``: the same code at a size that builds in seconds, for tests."""

    name = "text-encoder-tiny"
    description = "2-layer post-LN BERT-style encoder (hidden 32) for fast tests"
    vocab_size = 256
    seq_len = 16
    hidden = 32
    layers = 2
    heads = 2
    ffn = 64
    training = TrainingPlan(steps=400, batch_size=32, learning_rate=2e-3)


def _layer_norm(name: str) -> keras.layers.LayerNormalization:
    # Keras' default epsilon is 1e-3, torch's BERT uses 1e-12: leaving the default visibly changes the logits.
    return keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPS, name=name)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def _norm_weights(norm: nn.LayerNorm) -> list:
    """torch LayerNorm (weight, bias) is Keras LayerNormalization (gamma, beta)."""
    return [_numpy(norm.weight), _numpy(norm.bias)]


def _attention_weights(attention: SelfAttention) -> list:
    """torch q/k/v/output Linears as Keras MultiHeadAttention's per-head EinsumDense weights.

    Keras keeps the heads as an explicit axis: q/k/v kernels are ``[hidden, heads, head_dim]`` with biases
    ``[heads, head_dim]``, and the output kernel is ``[heads, head_dim, hidden]``. Torch's Linear kernel is
    ``[out, in]``, so it is transposed first; splitting the feature axis as (heads, head_dim) then matches
    torch's ``unflatten(-1, (heads, head_dim))``.
    """
    heads, head_dim = attention.heads, attention.head_dim
    weights = []
    for linear in (attention.query, attention.key, attention.value):
        kernel = _numpy(linear.weight).T.reshape(-1, heads, head_dim)
        weights += [kernel, _numpy(linear.bias).reshape(heads, head_dim)]
    out_kernel = _numpy(attention.output.weight).T.reshape(heads, head_dim, -1)
    return [*weights, out_kernel, _numpy(attention.output.bias)]
