"""PyTorch equivalents of the zoo's models: what a user would write instead.

`MLP` mirrors `mlp_regressor` (input standardization, ReLU layers, output
de-standardization) and `GPT` is a nanoGPT-style GPT-2 with the same
architecture as keras-hub's `GPT2Backbone`: learned position embeddings,
pre-LayerNorm blocks, tanh-approximate GELU, biases, and the output layer
tied to the token embedding. Both train in eager mode, as nanoGPT does
without `torch.compile`. Importing this module needs torch.
"""

import math
import time

import torch
from torch import nn
from torch.nn import functional as F


class MLP(nn.Module):
    """`mlp_regressor` in PyTorch: standardize, ReLU MLP, de-standardize."""

    def __init__(self, x_mean, x_std, y_mean, y_std, hidden_units=(128, 128)):
        super().__init__()
        self.register_buffer("x_mean", torch.as_tensor(x_mean))
        self.register_buffer("x_std", torch.as_tensor(x_std))
        self.register_buffer("y_mean", torch.as_tensor(y_mean))
        self.register_buffer("y_std", torch.as_tensor(y_std))
        layers, width = [], self.x_mean.shape[-1]
        for units in hidden_units:
            layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        layers.append(nn.Linear(width, self.y_mean.shape[-1]))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net((x - self.x_mean) / self.x_std) * self.y_std + self.y_mean


class Block(nn.Module):
    def __init__(self, hidden, heads, intermediate, dropout):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(hidden, eps=1e-5)
        self.attn = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ln_2 = nn.LayerNorm(hidden, eps=1e-5)
        self.fc = nn.Linear(hidden, intermediate)
        self.fc_proj = nn.Linear(intermediate, hidden)
        self.dropout = dropout

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        x = x + F.dropout(self.proj(y), self.dropout, self.training)
        h = F.gelu(self.fc(self.ln_2(x)), approximate="tanh")
        return x + F.dropout(self.fc_proj(h), self.dropout, self.training)


class GPT(nn.Module):
    """A nanoGPT-style GPT-2 of the given size, output tied to the embedding."""

    def __init__(self, vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim,
                 max_sequence_length, dropout=0.0):
        super().__init__()
        self.wte = nn.Embedding(vocabulary_size, hidden_dim)
        self.wpe = nn.Embedding(max_sequence_length, hidden_dim)
        self.blocks = nn.ModuleList(
            Block(hidden_dim, num_heads, intermediate_dim, dropout) for _ in range(num_layers)
        )
        self.ln_f = nn.LayerNorm(hidden_dim, eps=1e-5)
        self.dropout = dropout
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))
        x = F.dropout(x, self.dropout, self.training)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T

    def num_params(self, non_embedding=True):
        """Parameters, less the position embedding (nanoGPT's count)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n


def mlp_trainer(arrays, batch_size, hidden_units, learning_rate=1e-3, seed=0):
    """Returns `epoch()`, which trains the MLP one epoch and times its steps.

    The loop is the idiomatic one: a shuffling `DataLoader` over a
    `TensorDataset`, Adam, MSE.
    """
    torch.manual_seed(seed)
    x, y = (torch.as_tensor(a) for a in arrays["train"])
    model = MLP(x.mean(0), x.std(0) + 1e-7, y.mean(0), y.std(0) + 1e-7, hidden_units)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=batch_size, shuffle=True, drop_last=True
    )

    def epoch():
        model.train()
        start = time.perf_counter()
        step_times = []
        for xb, yb in loader:
            t = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(xb), yb)
            loss.backward()
            optimizer.step()
            step_times.append(time.perf_counter() - t)
        return {"seconds": time.perf_counter() - start, "steps": len(step_times),
                "examples": len(step_times) * batch_size, "loss": loss.item()}

    return epoch


def gpt_trainer(windows, config, batch_size, *, bfloat16=False, learning_rate=1e-3, seed=0):
    """Returns `run(steps)`, which trains the GPT `steps` steps and times it.

    Args:
        windows: int array (num_windows, sequence_length + 1) of token ids.
        config: dict of `GPT` arguments.
        batch_size: int.
        bfloat16: bool. Run forward and loss under `torch.autocast` bfloat16.
    """
    torch.manual_seed(seed)
    model = GPT(**config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    data = torch.as_tensor(windows, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)

    def run(steps):
        model.train()
        times, losses = [], []
        for _ in range(steps):
            idx = torch.randint(len(data), (batch_size,), generator=generator)
            batch = data[idx]
            x, y = batch[:, :-1], batch[:, 1:]
            t = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
                logits = model(x)
                loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.reshape(-1))
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - t)
            losses.append(loss.item())
        return {"step_s": sorted(times)[len(times) // 2], "seconds": sum(times), "steps": steps,
                "loss": losses[-1]}

    return model, run


def flops_per_token(n_params_non_embedding, num_layers, hidden_dim, sequence_length):
    """nanoGPT's `estimate_mfu` count: 6N + 12·L·H·T FLOPs per token."""
    return 6 * n_params_non_embedding + 12 * num_layers * hidden_dim * sequence_length


def initial_loss(vocabulary_size):
    """The cross-entropy of a uniform guess, to check a model is training."""
    return math.log(vocabulary_size)
