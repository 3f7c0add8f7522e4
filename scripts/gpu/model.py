"""Llama-architecture language models with random weights, made on the GPU
without a download (the GPU machine reaches no network).

With transformers installed, the model is transformers' LlamaForCausalLM built
from a LlamaConfig of the chosen size; without it, a small Llama written here
in plain PyTorch with the same shapes (RMSNorm, rotary embeddings, grouped
query attention, SwiGLU). Weights are drawn from a seeded generator and made
directly in bf16 on the device, so an 8B model takes seconds, not a fp32
copy first. Generation is greedy, so the same process gives the same tokens
for the same prompt: what the restore tests compare.
"""

import importlib.util

import torch
from torch import nn

# Llama 3.2 1B and Llama 3.1 8B shapes.
SIZES = {
    "1b": dict(hidden=2048, layers=16, heads=32, kv_heads=8, inter=8192, vocab=128256),
    "8b": dict(hidden=4096, layers=32, heads=32, kv_heads=8, inter=14336, vocab=128256),
}

# A fixed prompt (token ids): no tokenizer needed.
PROMPT = [128000, 791, 4062, 14198, 39935, 35308, 927, 279, 16053, 5679, 13, 578]


def _rope(x, base=500000.0):
    # x: (batch, heads, seq, dim)
    seq, dim = x.shape[-2], x.shape[-1]
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, device=x.device, dtype=torch.float32) / dim))
    t = torch.arange(seq, device=x.device, dtype=torch.float32)
    freqs = torch.outer(t, inv)
    cos, sin = freqs.cos().to(x.dtype), freqs.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2)


class _Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, hd = c["hidden"], c["hidden"] // c["heads"]
        self.heads, self.kv_heads, self.hd = c["heads"], c["kv_heads"], hd
        self.q = nn.Linear(h, c["heads"] * hd, bias=False)
        self.k = nn.Linear(h, c["kv_heads"] * hd, bias=False)
        self.v = nn.Linear(h, c["kv_heads"] * hd, bias=False)
        self.o = nn.Linear(c["heads"] * hd, h, bias=False)
        self.gate = nn.Linear(h, c["inter"], bias=False)
        self.up = nn.Linear(h, c["inter"], bias=False)
        self.down = nn.Linear(c["inter"], h, bias=False)
        self.norm1 = nn.RMSNorm(h, eps=1e-5)
        self.norm2 = nn.RMSNorm(h, eps=1e-5)

    def forward(self, x):
        b, s, _ = x.shape
        y = self.norm1(x)
        q = self.q(y).view(b, s, self.heads, self.hd).transpose(1, 2)
        k = self.k(y).view(b, s, self.kv_heads, self.hd).transpose(1, 2)
        v = self.v(y).view(b, s, self.kv_heads, self.hd).transpose(1, 2)
        q, k = _rope(q), _rope(k)
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        a = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, s, -1))
        y = self.norm2(x)
        return x + self.down(nn.functional.silu(self.gate(y)) * self.up(y))


class PlainLlama(nn.Module):
    """The fallback model: Llama's layers in plain PyTorch, no KV cache."""

    def __init__(self, c):
        super().__init__()
        self.embed = nn.Embedding(c["vocab"], c["hidden"])
        self.blocks = nn.ModuleList(_Block(c) for _ in range(c["layers"]))
        self.norm = nn.RMSNorm(c["hidden"], eps=1e-5)
        self.head = nn.Linear(c["hidden"], c["vocab"], bias=False)

    def forward(self, ids):
        x = self.embed(ids)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x))


def _init_normal(model, seed, std=0.02):
    g = torch.Generator(device=next(model.parameters()).device)
    g.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, std, generator=g)


def build(size, device="cuda", seed=1234, backend="auto"):
    """The model of `size` ("1b", "8b") on `device`, in eval mode, and a
    description of it. backend: "transformers", "plain" or "auto"."""
    c = SIZES[size]
    if backend == "auto":
        found = importlib.util.find_spec("transformers") is not None
        backend = "transformers" if found else "plain"
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            if backend == "transformers":
                from transformers import LlamaConfig, LlamaForCausalLM
                cfg = LlamaConfig(
                    vocab_size=c["vocab"], hidden_size=c["hidden"],
                    intermediate_size=c["inter"], num_hidden_layers=c["layers"],
                    num_attention_heads=c["heads"], num_key_value_heads=c["kv_heads"],
                    max_position_embeddings=8192, rope_theta=500000.0,
                    tie_word_embeddings=False)
                model = LlamaForCausalLM(cfg)
            else:
                model = PlainLlama(c)
    finally:
        torch.set_default_dtype(old)
    _init_normal(model, seed)
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    info = {
        "size": size,
        "backend": backend,
        "params": params,
        "bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "dtype": "bfloat16",
    }
    return model, info


@torch.inference_mode()
def generate(model, tokens, n):
    """Greedy decoding of `n` tokens after `tokens`: a list of ints."""
    dev = next(model.parameters()).device
    ids = torch.tensor([tokens], device=dev)
    out = []
    past = None
    for _ in range(n):
        if isinstance(model, PlainLlama):
            logits = model(ids)
        else:
            step = ids if past is None else ids[:, -1:]
            r = model(input_ids=step, past_key_values=past, use_cache=True)
            logits, past = r.logits, r.past_key_values
        nxt = int(logits[0, -1].float().argmax())
        out.append(nxt)
        ids = torch.cat([ids, torch.tensor([[nxt]], device=dev)], dim=1)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return out


def describe(info):
    return "llama-{} ({} backend, {:.2f} B params, {:.1f} GB {})".format(
        info["size"], info["backend"], info["params"] / 1e9,
        info["bytes"] / 1e9, info["dtype"])
