"""Baseline training script: a small GPT trained for a fixed wall-clock budget.

The harness runs `python train.py` with AUTORESEARCH_* environment variables (see docs/contract.md),
then imports this file, calls `build_model(config)` on the saved config, loads `model.pt` and measures
val bits-per-byte itself. Everything below is yours to change, as long as that interface holds.
"""

import time

T_PROCESS_START = time.time()  # taken before the heavy imports, so startup_seconds counts them

import copy  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from contextlib import nullcontext  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

# ----------------------------------------------------------------------------------------------------
# Hyperparameters: the `cpu` profile's values, then what the `h100` profile sets instead. The profile is
# picked from the hardware, h100 on CUDA and cpu elsewhere; AUTORESEARCH_PROFILE overrides it.

PROFILES = ("cpu", "h100")  # the size profiles this file knows
DEVICE = os.environ.get("AUTORESEARCH_DEVICE") or "auto"  # cpu, cuda or mps; auto: the best one there is
if DEVICE == "auto":
    DEVICE = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
PROFILE = os.environ.get("AUTORESEARCH_PROFILE") or "auto"  # one of PROFILES; auto: h100 on CUDA, else cpu
if PROFILE == "auto":
    PROFILE = "h100" if DEVICE == "cuda" else "cpu"

# cpu: a laptop/CI CPU with a 1-minute budget: tiny, fp32, no compile. Tuned for the lowest val_bpb after 60 s
# on 2 cores (~20K tokens/s): at this budget a wider or deeper model sees too few tokens to win. No logit
# soft-cap: uncompiled, its elementwise work on the logits took a quarter of the step.
DEPTH = 1  # transformer blocks: the one size dial, widths follow from it
ASPECT_RATIO = 128  # model_dim = DEPTH * ASPECT_RATIO, rounded up to a multiple of HEAD_DIM
HEAD_DIM = 64  # width of one attention head
SEQ_LEN = 256  # training context length
DEVICE_BATCH = 8  # sequences per forward/backward pass
TOKENS_PER_STEP = 8 * 256  # tokens per optimizer step (gradient accumulation makes up the rest)
MATRIX_LR = 0.02  # Muon learning rate for the 2-D weights of the blocks
EMBED_LR = 0.15  # AdamW learning rate for the input embedding
HEAD_LR = 0.005  # AdamW learning rate for the lm_head
LOGIT_SOFTCAP = 0.0  # logits are squashed to (-cap, cap) with tanh; 0 turns it off
COMPILE = False  # torch.compile each block (regional compilation: short start-up)

if PROFILE == "h100":  # one H100, 5-minute budget: ~34M parameters, 2^19 tokens per optimizer step
    DEPTH = 8
    ASPECT_RATIO = 64
    HEAD_DIM = 128
    SEQ_LEN = 2048
    DEVICE_BATCH = 64
    TOKENS_PER_STEP = 2**19
    MATRIX_LR = 0.02
    EMBED_LR = 0.3
    HEAD_LR = 0.004
    LOGIT_SOFTCAP = 15.0  # compiled into the loss's kernels
    COMPILE = True

# shared by the profiles
SCALAR_LR = 0.02  # AdamW learning rate for any other parameter (vectors, scalars)
ADAM_BETAS = (0.8, 0.95)  # AdamW betas for the embedding, head and scalars
MUON_MOMENTUM = 0.95  # Muon momentum (Nesterov)
WEIGHT_DECAY = 0.0  # decoupled weight decay of the Muon matrices
WARMUP_FRAC = 0.0  # fraction of the time budget spent warming the LR up linearly from 0
WARMDOWN_FRAC = 0.4  # fraction of the time budget at the end spent decaying the LR linearly
FINAL_LR_FRAC = 0.0  # LR at the very end, as a fraction of the peak
ROPE_BASE = 10000.0  # rotary embedding base frequency
LOG_EVERY_S = 1.0  # seconds of training between progress lines


# ----------------------------------------------------------------------------------------------------
# Model


def norm(x):
    return F.rms_norm(x, (x.size(-1),))


def apply_rotary(x, cos, sin):
    # x: (B, T, H, D); rotate the two halves of each head as complex pairs
    d = x.size(-1) // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim, n_head, head_dim):
        super().__init__()
        self.n_head, self.head_dim = n_head, head_dim
        self.q = nn.Linear(dim, n_head * head_dim, bias=False)
        self.k = nn.Linear(dim, n_head * head_dim, bias=False)
        self.v = nn.Linear(dim, n_head * head_dim, bias=False)
        self.proj = nn.Linear(n_head * head_dim, dim, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_head, self.head_dim)
        k = self.k(x).view(B, T, self.n_head, self.head_dim)
        v = self.v(x).view(B, T, self.n_head, self.head_dim)
        q, k = apply_rotary(norm(q), cos, sin), apply_rotary(norm(k), cos, sin)  # QK-norm, then RoPE
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        return self.proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc = nn.Linear(dim, 4 * dim, bias=False)
        self.proj = nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x):
        return self.proj(F.relu(self.fc(x)).square())  # ReLU^2


class Block(nn.Module):
    def __init__(self, dim, n_head, head_dim):
        super().__init__()
        self.attn = Attention(dim, n_head, head_dim)
        self.mlp = MLP(dim)

    def forward(self, x, cos, sin):
        x = x + self.attn(norm(x), cos, sin)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        dim, vocab = config["model_dim"], config["padded_vocab_size"]
        self.wte = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(
            Block(dim, config["n_head"], config["head_dim"]) for _ in range(config["n_layer"])
        )
        self.lm_head = nn.Linear(dim, vocab, bias=False)  # untied from wte
        # Rotary tables, not saved: build_model recomputes them for max_seq_len.
        half = config["head_dim"] // 2
        inv_freq = config["rope_base"] ** (-torch.arange(half, dtype=torch.float32) / half)
        angles = torch.outer(torch.arange(config["max_seq_len"], dtype=torch.float32), inv_freq)
        self.register_buffer("cos", angles.cos()[None, :, None, :], persistent=False)
        self.register_buffer("sin", angles.sin()[None, :, None, :], persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        nn.init.normal_(self.wte.weight, std=1.0)
        nn.init.normal_(self.lm_head.weight, std=0.001)
        for block in self.blocks:
            for lin in (block.attn.q, block.attn.k, block.attn.v, block.mlp.fc):
                nn.init.normal_(lin.weight, std=lin.in_features**-0.5)
            nn.init.zeros_(block.attn.proj.weight)  # each block starts as the identity
            nn.init.zeros_(block.mlp.proj.weight)

    def forward(self, idx, targets=None):
        T = idx.size(1)
        cos, sin = self.cos[:, :T].to(self.wte.weight.dtype), self.sin[:, :T].to(self.wte.weight.dtype)
        x = norm(self.wte(idx))
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.head(norm(x), targets)

    def head(self, x, targets=None):
        logits = self.lm_head(x).float()
        cap = self.config["logit_softcap"]
        if cap > 0:
            logits = cap * torch.tanh(logits / cap)
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def build_model(config: dict) -> nn.Module:
    """Rebuild the model described by a saved config (on CPU, freshly initialised)."""
    return GPT(config)


def make_config(vocab_size, eval_seq_len):
    """The model's config from the hyperparameters at the top; saved with the weights for `build_model`."""
    model_dim = math.ceil(DEPTH * ASPECT_RATIO / HEAD_DIM) * HEAD_DIM
    return {
        "vocab_size": vocab_size,
        "padded_vocab_size": math.ceil(vocab_size / 64) * 64,  # extra logit columns are ignored
        "n_layer": DEPTH,
        "model_dim": model_dim,
        "n_head": model_dim // HEAD_DIM,
        "head_dim": HEAD_DIM,
        "max_seq_len": max(SEQ_LEN, eval_seq_len),
        "logit_softcap": LOGIT_SOFTCAP,
        "rope_base": ROPE_BASE,
    }


# ----------------------------------------------------------------------------------------------------
# Optimizers and schedule


class Muon(torch.optim.Optimizer):
    """Muon: Nesterov momentum, then each matrix's update orthogonalised by a Newton-Schulz iteration (the
    same rule as torch.optim.Muon). Matrices of one shape are stacked and orthogonalised together, so a
    step is a few large kernels instead of dozens of small ones per matrix. The iteration runs in bf16 on a
    GPU, as torch.optim.Muon's does, and in fp32 elsewhere (`ns_dtype` overrides): a CPU without bf16
    matrix instructions (AVX2 only, as in most laptops) runs it 30-100x slower in bf16."""

    def __init__(self, params, lr, momentum=0.95, weight_decay=0.0, ns_steps=5, ns_dtype=None):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, ns_steps=ns_steps,
                                      ns_dtype=ns_dtype))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            dtype = group["ns_dtype"]
            by_shape = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault(p.shape, []).append(p)
            for (rows, cols), params in by_shape.items():
                grads = [p.grad for p in params]
                bufs = [self.state[p].setdefault("momentum_buffer", torch.zeros_like(p)) for p in params]
                torch._foreach_lerp_(bufs, grads, 1 - momentum)
                if dtype is None:
                    dtype = torch.bfloat16 if params[0].is_cuda else torch.float32
                updates = orthogonalize(torch.stack(torch._foreach_lerp(grads, bufs, momentum)), group["ns_steps"],
                                        dtype)
                if decay:
                    torch._foreach_mul_(params, 1 - lr * decay)
                torch._foreach_add_(params, list(updates.to(params[0].dtype).unbind(0)),
                                    alpha=-lr * max(1.0, rows / cols) ** 0.5)


def orthogonalize(g, steps, dtype=torch.bfloat16, eps=1e-7):
    """Newton-Schulz iteration towards the nearest orthogonal matrix of each matrix in the stack `g`, in
    `dtype`, with the quintic coefficients that torch.optim.Muon uses."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.to(dtype)
    tall = g.size(-2) > g.size(-1)
    if tall:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


def make_optimizers(model, device):
    matrices = [p for p in model.blocks.parameters() if p.ndim == 2]
    seen = {id(p) for p in matrices} | {id(model.wte.weight), id(model.lm_head.weight)}
    others = [p for p in model.parameters() if id(p) not in seen]
    scale = (model.config["model_dim"] / 768) ** -0.5  # AdamW LRs were tuned at width 768
    groups = [
        dict(params=[model.wte.weight], lr=EMBED_LR * scale),
        dict(params=[model.lm_head.weight], lr=HEAD_LR * scale),
        dict(params=others, lr=SCALAR_LR),
    ]
    groups = [g for g in groups if g["params"]]
    fused = {"fused": True} if device.type == "cuda" else {}
    adamw = torch.optim.AdamW(groups, betas=ADAM_BETAS, eps=1e-10, weight_decay=0.0, **fused)
    muon = Muon(matrices, lr=MATRIX_LR, momentum=MUON_MOMENTUM, weight_decay=WEIGHT_DECAY)
    optimizers = [adamw, muon]
    for opt in optimizers:
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
    return optimizers


def lr_multiplier(progress):
    """LR factor at `progress` = training seconds spent / budget: warmup, constant, linear warmdown."""
    if progress < WARMUP_FRAC:
        return progress / WARMUP_FRAC
    if progress < 1.0 - WARMDOWN_FRAC:
        return 1.0
    frac = min((1.0 - progress) / WARMDOWN_FRAC, 1.0)
    return FINAL_LR_FRAC + (1.0 - FINAL_LR_FRAC) * max(frac, 0.0)


# ----------------------------------------------------------------------------------------------------
# Data: random windows of SEQ_LEN + 1 tokens from the training stream


class Batches:
    def __init__(self, path, batch, seq_len, seed, device):
        self.tokens = np.load(path, mmap_mode="r")
        if len(self.tokens) <= seq_len + 1:
            sys.exit(f"train.py: {path} holds {len(self.tokens)} tokens, under SEQ_LEN + 1 = {seq_len + 1}")
        self.batch, self.seq_len, self.device = batch, seq_len, device
        self.rng = np.random.default_rng(seed)

    def next(self):
        starts = self.rng.integers(0, len(self.tokens) - self.seq_len - 1, size=self.batch)
        window = np.stack([self.tokens[s : s + self.seq_len + 1] for s in starts]).astype(np.int64)
        window = torch.from_numpy(window)
        if self.device.type == "cuda":
            window = window.pin_memory().to(self.device, non_blocking=True)
        else:
            window = window.to(self.device)
        return window[:, :-1], window[:, 1:]


# ----------------------------------------------------------------------------------------------------
# Training


def env(name, cast=str, default=None):
    value = os.environ.get(name)
    if value is None or value == "":
        if default is not None:
            return default
        sys.exit(f"train.py: required environment variable {name} is not set (see docs/contract.md)")
    try:
        return cast(value)
    except ValueError:
        sys.exit(f"train.py: environment variable {name}={value!r} is not a valid {cast.__name__}")


def report(event, **fields):
    print("@autoresearch " + json.dumps({"event": event, **fields}), flush=True)


def harness_stop():
    """An event set when the harness says the budget is spent: a `stop` line on stdin (docs/contract.md)."""
    stop = threading.Event()

    def listen():
        for line in sys.stdin:
            if line.strip() == "stop":
                stop.set()
                return

    threading.Thread(target=listen, daemon=True).start()
    return stop


def pick_device():
    """The device and profile chosen with the hyperparameters at the top, checked."""
    if DEVICE not in ("cpu", "cuda", "mps"):
        sys.exit(f"train.py: AUTORESEARCH_DEVICE must be cpu, cuda or mps, not {DEVICE!r}")
    if PROFILE not in PROFILES:
        sys.exit(f"train.py: AUTORESEARCH_PROFILE must be one of {sorted(PROFILES)}, not {PROFILE!r}")
    return torch.device(DEVICE), PROFILE


def attention_backends():
    """Fastest SDPA kernels first on CUDA (cuDNN beats flash on Hopper); other devices keep the default."""
    fastest = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION]
    order = fastest + [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    try:
        return sdpa_kernel(order, set_priority=True)
    except TypeError:  # older torch without priorities: at least allow all of them
        return sdpa_kernel(order)


def train_step(model, optimizers, batches, accum_steps, autocast):
    """One optimizer step over `accum_steps` micro-batches; returns the mean loss (a tensor)."""
    total = 0.0
    for _ in range(accum_steps):
        x, y = batches.next()
        with autocast:
            loss = model(x, y)
        (loss / accum_steps).backward()
        total = total + loss.detach()
    for opt in optimizers:
        opt.step()
    model.zero_grad(set_to_none=True)
    return total / accum_steps


def compile_and_warm_up(model, optimizers, batches, autocast):
    """Compile each block (identical blocks share one compiled graph) and the head, run two throw-away
    steps so compilation happens now, then restore the initial weights and optimizer state."""
    for block in model.blocks:
        block.compile()
    model.head = torch.compile(model.head)
    weights = copy.deepcopy(model.state_dict())
    states = [copy.deepcopy(opt.state_dict()) for opt in optimizers]
    for _ in range(2):
        train_step(model, optimizers, batches, 1, autocast)
    model.load_state_dict(weights)
    for opt, state in zip(optimizers, states, strict=True):
        opt.load_state_dict(state)


def peak_memory_bytes(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated()
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    except ImportError:  # Windows
        return 0


def main():
    budget = env("AUTORESEARCH_TIME_BUDGET", float)
    seed = env("AUTORESEARCH_SEED", int)
    train_path = env("AUTORESEARCH_TRAIN_TOKENS")
    vocab_size = env("AUTORESEARCH_VOCAB_SIZE", int)
    env("AUTORESEARCH_BOS_ID", int)  # every document starts with BOS; this baseline needs nothing more
    eval_seq_len = env("AUTORESEARCH_EVAL_SEQ_LEN", int)
    out_dir = env("AUTORESEARCH_OUTPUT_DIR")
    device, profile = pick_device()

    torch.manual_seed(seed)
    if device.type == "cpu":
        cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
        torch.set_num_threads(len(cores))
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for any fp32 matmul
    # bf16 autocast on CUDA; fp32 elsewhere (on CPUs bf16 is slower)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    sync = {"cuda": torch.cuda.synchronize, "mps": torch.mps.synchronize}.get(device.type, lambda: None)

    config = make_config(vocab_size, eval_seq_len)
    model = build_model(config).to(device)
    optimizers = make_optimizers(model, device)
    n_params = sum(p.numel() for p in model.parameters())
    n_embed = model.wte.weight.numel()  # the lm_head counts as a matrix
    flops_per_token = 6 * (n_params - n_embed) + 12 * config["n_layer"] * config["model_dim"] * SEQ_LEN
    accum_steps = max(1, TOKENS_PER_STEP // (DEVICE_BATCH * SEQ_LEN))
    tokens_per_step = accum_steps * DEVICE_BATCH * SEQ_LEN

    with attention_backends() if device.type == "cuda" else nullcontext():
        if COMPILE and device.type != "mps":
            warm_up = Batches(train_path, DEVICE_BATCH, SEQ_LEN, seed + 1, device)
            compile_and_warm_up(model, optimizers, warm_up, autocast)
        batches = Batches(train_path, DEVICE_BATCH, SEQ_LEN, seed, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        stop = harness_stop()
        sync()
        t_start = time.time()
        startup = round(t_start - T_PROCESS_START, 2)
        report("start", params=n_params, params_non_embedding=n_params - n_embed, flops_per_token=flops_per_token,
               device=device.type, profile=profile, startup_seconds=startup)  # fmt: skip

        step, elapsed, last_log, last_tokens, loss, queued = 0, 0.0, 0.0, 0, None, None
        while True:
            multiplier = lr_multiplier(elapsed / budget)
            for opt in optimizers:
                for group in opt.param_groups:
                    group["lr"] = group["initial_lr"] * multiplier
            running = train_step(model, optimizers, batches, accum_steps, autocast)  # a GPU only queues it
            if queued is not None:  # read the step before back while this one runs, so the GPU never waits
                loss = queued.item()
            queued = running
            step += 1
            elapsed = time.time() - t_start
            done = elapsed >= budget or stop.is_set()
            if done:  # wait for the last step, so that the time and the loss are its own
                loss = queued.item()
                sync()
                elapsed = time.time() - t_start
            if loss is not None and not math.isfinite(loss):
                sys.exit(f"train.py: the training loss is {loss} by step {step}; stopping")
            if loss is not None and (done or elapsed - last_log >= LOG_EVERY_S):
                tokens = step * tokens_per_step
                rate = (tokens - last_tokens) / max(elapsed - last_log, 1e-9)
                report("step", step=step, elapsed=round(elapsed, 3), train_loss=round(loss, 4), tokens=tokens,
                       tokens_per_s=round(rate, 1))  # fmt: skip
                last_log, last_tokens = elapsed, tokens
            if done:
                break

    peak = peak_memory_bytes(device)
    report("done", steps=step, tokens=step * tokens_per_step, training_seconds=round(elapsed, 3),
           peak_memory_bytes=peak)  # fmt: skip
    path = os.path.join(out_dir, "model.pt")
    os.makedirs(out_dir, exist_ok=True)
    torch.save({"config": config, "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}}, path)
    print(f"{profile} profile on {device.type}: {n_params / 1e6:.2f}M params, {step} steps, "
          f"{step * tokens_per_step / 1e6:.2f}M tokens in {elapsed:.1f}s (+{startup:.1f}s start-up), "
          f"final train loss {loss:.4f}, peak memory {peak / 2**30:.2f} GiB; saved {path}")  # fmt: skip


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # everything is saved and flushed: skip the interpreter's slow teardown of torch (~0.6 s)
