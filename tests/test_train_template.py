"""The baseline train.py keeps the harness contract (docs/contract.md), checked with real processes."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

VOCAB = 257  # byte tokens plus BOS
BOS = 256
EVAL_SEQ_LEN = 320  # longer than the cpu profile's training length: the rotary tables must cover it
BUDGET = 3.0


def template_path() -> Path:
    in_repo = Path(__file__).parents[1] / "src" / "autoresearch" / "template" / "train.py"
    if in_repo.exists():
        return in_repo
    from importlib.resources import files

    return Path(str(files("autoresearch") / "template" / "train.py"))


TRAIN_PY = template_path()


def load_template(path: Path = TRAIN_PY, name: str = "train_template_under_test", profile: str | None = None):
    """train.py imported as a module; `profile` is its AUTORESEARCH_PROFILE while the top of the file picks the
    hyperparameters (unset: whatever the environment says)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    saved = os.environ.get("AUTORESEARCH_PROFILE")
    if profile is not None:
        os.environ["AUTORESEARCH_PROFILE"] = profile
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            os.environ.pop("AUTORESEARCH_PROFILE", None)
        else:
            os.environ["AUTORESEARCH_PROFILE"] = saved
    return module


VARIANTS_DIR = Path(__file__).parents[1] / "bench" / "variants"  # code changes for bench/gpu_sweep.sh
VARIANTS = sorted(VARIANTS_DIR.glob("*.patch"))


def patched_template(folder: Path, patch: Path):
    (folder / "train.py").write_text(TRAIN_PY.read_text())
    applied = subprocess.run(["git", "apply", str(patch)], cwd=folder, capture_output=True, text=True)
    assert applied.returncode == 0, f"{patch.name} no longer applies to the template: {applied.stderr}"
    return load_template(folder / "train.py", f"train_variant_{patch.stem}", profile="h100")


def base_env(tmp: Path, tokens: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTORESEARCH_")}
    env.update(
        AUTORESEARCH_TIME_BUDGET=str(BUDGET),
        AUTORESEARCH_SEED="0",
        AUTORESEARCH_TRAIN_TOKENS=str(tokens),
        AUTORESEARCH_VOCAB_SIZE=str(VOCAB),
        AUTORESEARCH_BOS_ID=str(BOS),
        AUTORESEARCH_EVAL_SEQ_LEN=str(EVAL_SEQ_LEN),
        AUTORESEARCH_OUTPUT_DIR=str(tmp / "out"),
        AUTORESEARCH_DEVICE="cpu",
        PYTHONUNBUFFERED="1",
    )
    return env


def run_train(env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TRAIN_PY)], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def events(stdout: str) -> list[dict]:
    prefix = "@autoresearch "
    return [json.loads(line[len(prefix) :]) for line in stdout.splitlines() if line.startswith(prefix)]


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    """A real token stream: UTF-8 bytes of standard-library sources, each file opened by BOS."""
    parts = []
    for source in sorted(Path(json.__file__).parents[1].glob("*.py"))[:40]:
        parts += [np.array([BOS], np.uint16), np.frombuffer(source.read_bytes(), np.uint8).astype(np.uint16)]
    path = tmp_path_factory.mktemp("data") / "train.npy"
    np.save(path, np.concatenate(parts))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tokens):
    """One short real training run; its stdout and saved model are shared by the tests below."""
    tmp = tmp_path_factory.mktemp("run")
    result = run_train(base_env(tmp, tokens), cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, tmp / "out" / "model.pt"


def test_importing_does_not_train(tmp_path):
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('t', {str(TRAIN_PY)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "assert callable(m.build_model)\n"
        "print('imported')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTORESEARCH_")}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"
    assert not list(tmp_path.iterdir())


def test_progress_lines(trained):
    result, _ = trained
    evs = events(result.stdout)
    kinds = [e["event"] for e in evs]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert kinds.count("start") == 1 and kinds.count("done") == 1 and "step" in kinds

    start, done = evs[0], evs[-1]
    for key in ("params", "params_non_embedding", "flops_per_token", "device", "profile", "startup_seconds"):
        assert key in start
    assert start["device"] == "cpu" and start["profile"] == "cpu"
    assert 0 < start["params_non_embedding"] < start["params"]
    assert start["flops_per_token"] >= 6 * start["params_non_embedding"]

    steps = [e for e in evs if e["event"] == "step"]
    for e in steps:
        assert {"step", "elapsed", "train_loss", "tokens", "tokens_per_s"} <= e.keys()
        assert math.isfinite(e["train_loss"]) and e["tokens_per_s"] > 0
    assert [e["elapsed"] for e in steps] == sorted(e["elapsed"] for e in steps)

    for key in ("steps", "tokens", "training_seconds", "peak_memory_bytes"):
        assert key in done
    assert steps[-1]["step"] == done["steps"] and steps[-1]["tokens"] == done["tokens"]
    assert BUDGET <= done["training_seconds"] < BUDGET + 30
    assert done["peak_memory_bytes"] > 0
    assert steps[-1]["train_loss"] < math.log(VOCAB)  # it learned something


def test_model_round_trips_through_model_pt(trained):
    _, model_path = trained
    checkpoint = torch.load(model_path, weights_only=True)
    config = checkpoint["config"]
    assert json.loads(json.dumps(config)) == config
    assert not any(key.startswith("_orig_mod.") or "._orig_mod." in key for key in checkpoint["state_dict"])

    train = load_template()
    model = train.build_model(json.loads(json.dumps(config)))
    model.load_state_dict(checkpoint["state_dict"], strict=True)
    model.eval()
    again = train.build_model(config)
    again.load_state_dict(torch.load(model_path, weights_only=True)["state_dict"], strict=True)
    again.eval()
    fresh = train.build_model(config).eval()

    idx = torch.randint(0, VOCAB, (2, EVAL_SEQ_LEN), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(idx)
        assert logits.shape[:2] == (2, EVAL_SEQ_LEN) and logits.shape[2] >= VOCAB
        assert torch.isfinite(logits).all()
        assert torch.equal(logits, again(idx))
        assert not torch.allclose(logits, fresh(idx))  # the trained weights were really loaded


def test_output_is_causal(trained):
    _, model_path = trained
    checkpoint = torch.load(model_path, weights_only=True)
    train = load_template()
    model = train.build_model(checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()

    gen = torch.Generator().manual_seed(1)
    idx = torch.randint(0, VOCAB, (1, 64), generator=gen)
    t = 40
    changed = idx.clone()
    changed[0, t + 1 :] = torch.randint(0, VOCAB, (64 - t - 1,), generator=gen)
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-5)
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


@pytest.mark.parametrize("missing", ["AUTORESEARCH_TIME_BUDGET", "AUTORESEARCH_TRAIN_TOKENS"])
def test_missing_env_var_is_named(tmp_path, tokens, missing):
    env = base_env(tmp_path, tokens)
    del env[missing]
    result = run_train(env, cwd=tmp_path, timeout=60)
    assert result.returncode != 0
    assert missing in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_profile_it_does_not_know_is_named(tmp_path, tokens):
    env = {**base_env(tmp_path, tokens), "AUTORESEARCH_PROFILE": "a100"}
    result = run_train(env, cwd=tmp_path, timeout=60)
    assert result.returncode != 0 and "AUTORESEARCH_PROFILE" in result.stderr and "'a100'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("profile", ["cpu", "h100"])
def test_the_constants_tune_edits_are_the_ones_the_profile_runs(profile):
    """Each profile runs the flat constants at the top, with its own block's in place of some: the `tune`
    agent must see the same values, or its edits would change nothing."""
    from autoresearch.agents.tune import find_constants

    train = load_template(profile=profile)
    found = find_constants(TRAIN_PY.read_text(), profile)
    assert train.PROFILE == profile and train.COMPILE is (profile == "h100")
    assert {c.name: getattr(train, c.name) for c in found} == {c.name: c.value for c in found}
    assert {"DEPTH", "SEQ_LEN", "MATRIX_LR", "WARMDOWN_FRAC"} <= {c.name for c in found}


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_stacked_muon_follows_torch_muon(weight_decay):
    """The template's Muon stacks matrices of one shape; its steps must match torch.optim.Muon's rule."""
    template = load_template()
    torch.manual_seed(0)
    shapes = [(32, 32), (32, 32), (128, 32), (32, 128), (128, 32), (16, 48)]
    ours = [torch.nn.Parameter(torch.randn(*s) * 0.1) for s in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    start = [p.detach().clone() for p in ours]
    a = template.Muon(ours, lr=0.02, momentum=0.95, weight_decay=weight_decay, ns_dtype=torch.bfloat16)
    b = torch.optim.Muon(theirs, lr=0.02, momentum=0.95, weight_decay=weight_decay)
    for _ in range(4):
        grads = [torch.randn(*s) for s in shapes]
        for params in (ours, theirs):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
        a.step()
        b.step()
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-5)
    assert all((p - s).abs().max() > 1e-3 for p, s in zip(ours, start, strict=True))  # the steps moved them
    state = a.state_dict()  # and it saves and restores like any optimizer (the CUDA warm-up relies on it)
    again = template.Muon(ours, lr=0.02, momentum=0.95, weight_decay=weight_decay)
    again.load_state_dict(state)
    assert len(again.state) == len(shapes)


def test_muon_orthogonalises_in_fp32_off_a_gpu_with_the_same_steps():
    """bf16 matrix products are 30-100x slower on CPUs without bf16 instructions: off a GPU the iteration runs
    in fp32, which takes the same steps up to bf16's rounding."""
    template = load_template()
    torch.manual_seed(0)
    shapes = [(64, 64), (64, 64), (256, 64)]
    start = [torch.randn(*s) * 0.1 for s in shapes]
    grads = [[torch.randn(*s) for s in shapes] for _ in range(3)]
    runs = {}
    for name, dtype in (("auto", None), ("fp32", torch.float32), ("bf16", torch.bfloat16)):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        opt = template.Muon(params, lr=0.02, ns_dtype=dtype)
        for step in grads:
            for p, g in zip(params, step, strict=True):
                p.grad = g.clone()
            opt.step()
        runs[name] = [p.detach() - s for p, s in zip(params, start, strict=True)]
    for auto, fp32, bf16 in zip(runs["auto"], runs["fp32"], runs["bf16"], strict=True):
        assert torch.equal(auto, fp32)  # fp32 is what a CPU gets
        assert not torch.equal(fp32, bf16)
        torch.testing.assert_close(fp32, bf16, rtol=0.05, atol=2e-4)  # the same steps, to bf16's precision


def small_h100_model(train, seed=0):
    """The h100 profile's model of `train` (loaded with profile="h100"), two blocks deep, for sequences of 64."""
    assert train.PROFILE == "h100"
    torch.manual_seed(seed)
    train.DEPTH, train.SEQ_LEN = 2, 64
    model = train.build_model(train.make_config(VOCAB, 64))
    for block in model.blocks:  # the zero-initialised projections would hide what comes before them
        torch.nn.init.normal_(block.attn.proj.weight, std=0.02)
        torch.nn.init.normal_(block.mlp.proj.weight, std=0.02)
    torch.nn.init.normal_(model.lm_head.weight, std=1.0)  # logits of about 10: the soft-cap bends them
    return model


@pytest.mark.parametrize("patch", VARIANTS, ids=lambda path: path.stem)
def test_each_code_variant_of_the_gpu_sweep_applies_and_trains(tmp_path, patch):
    """A variant that stopped applying would be found only on a GPU, whose time is scarce."""
    variant = patched_template(tmp_path, patch)
    model = small_h100_model(variant)
    x = torch.randint(0, VOCAB, (2, 64))
    loss = model(x, x)
    loss.backward()
    assert math.isfinite(loss.item()) and all(p.grad is not None for p in model.blocks.parameters())


def test_every_default_variant_of_the_gpu_sweep_is_written_and_trains(tmp_path):
    """The sweep combines patches and constant edits; a combination that stopped applying, or that no longer
    runs, would otherwise be found only on a GPU."""
    task = tmp_path / "task"
    task.mkdir()
    (task / "train.py").write_text(TRAIN_PY.read_text())
    (task / "autoresearch.toml").write_text("")
    env = {**os.environ, "TASK": str(task), "OUT": str(tmp_path / "out"), "DRY_RUN": "1"}
    sweep = subprocess.run(["bash", "bench/gpu_sweep.sh"], cwd=VARIANTS_DIR.parents[1], env=env, capture_output=True,
                           text=True, timeout=300)
    assert sweep.returncode == 0, sweep.stderr
    written = dict(line.split(": written to ") for line in sweep.stdout.splitlines() if ": written to " in line)
    assert "base" in written and len(written) >= 4, sweep.stdout
    for number, (variant, folder) in enumerate(written.items()):
        code = (Path(folder) / "train.py").read_text()
        assert (code == TRAIN_PY.read_text()) == (variant == "base"), variant
        for edit in variant.split(",") if variant != "base" else []:
            if edit.startswith("+"):
                patch = (VARIANTS_DIR / f"{edit[1:]}.patch").read_text().splitlines()
                added = [line[1:] for line in patch if line.startswith("+") and not line.startswith("+++")]
                assert all(line in code.splitlines() for line in added), (variant, edit)
            else:
                assert f"{edit}," in code or edit.replace("=", " = ") in code, (variant, edit)
        model = small_h100_model(load_template(Path(folder) / "train.py", f"train_sweep_{number}", profile="h100"))
        x = torch.randint(0, VOCAB, (2, 64))
        model(x, x).backward()
        assert all(p.grad is not None for p in model.parameters()), variant


@pytest.mark.parametrize("patch", ["fused_qkv", "fused_head"])
def test_a_fused_variant_computes_what_the_template_does(tmp_path, patch):
    """These variants only reorganise the work (one matrix product for q, k and v; the logits' gradient
    computed with the loss): the loss and every gradient must stay the template's."""
    template = small_h100_model(load_template(profile="h100"))
    fused = small_h100_model(patched_template(tmp_path, VARIANTS_DIR / f"{patch}.patch"))
    fused.load_state_dict(template.state_dict())
    x = torch.randint(0, VOCAB, (2, 64))
    a, b = template(x, x), fused(x, x)
    (a / 3).backward()  # as train_step scales the loss of a micro-batch
    (b / 3).backward()
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(template.named_parameters(), fused.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-7), name


def test_the_harness_stop_line_ends_training_early_and_the_model_is_saved(tmp_path, tokens):
    env = {**base_env(tmp_path, tokens), "AUTORESEARCH_TIME_BUDGET": "600"}
    proc = subprocess.Popen([sys.executable, str(TRAIN_PY)], env=env, cwd=tmp_path, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith('@autoresearch {"event": "step"'):
                break
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        rest, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    done = [e for e in events(rest) if e["event"] == "done"]
    assert proc.returncode == 0 and len(done) == 1 and done[0]["training_seconds"] < 60
    assert (tmp_path / "out" / "model.pt").exists()


def test_an_input_that_ends_at_once_does_not_stop_training(tmp_path, tokens):
    env = {**base_env(tmp_path, tokens), "AUTORESEARCH_TIME_BUDGET": "1.5"}
    result = subprocess.run([sys.executable, str(TRAIN_PY)], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=120)
    done = [e for e in events(result.stdout) if e["event"] == "done"]
    assert result.returncode == 0 and done[0]["training_seconds"] >= 1.5
