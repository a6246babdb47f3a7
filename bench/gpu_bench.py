"""Training throughput of dmfr's engine against a plain PyTorch loop, side by side in one run.

For each IResNet (default r50 and r100, 112×112, batch 128, bf16 autocast + channels_last), two
loops train the same architecture on the same in-memory images:

  dmfr   dmfr's Trainer.train_step: Method (IResNet + CosFace MarginHead) built from a run
         config, seeded flips, autocast, clip-grad-norm 5, SGD, LR scheduler — the code a run uses;
  plain  a hand-written loop: the same IResNet module, a CosFace head written inline
         (normalised linear, s·(cos − m) on the target, cross-entropy), same clip and SGD.

Both take each batch from the same CPU tensor and copy it to the device, as a data loader would.
Reported per loop: samples/s (timed steps after warm-up, synchronised), peak device memory, the
analytic FLOPs of one training step (torch.utils.flop_counter on forward + backward), achieved
TFLOP/s and model FLOPs utilisation against the device's dense bf16 peak; and the dmfr/plain
ratio. `--device cpu --tiny` is a smoke mode (narrow r_tiny, 56×56, few steps, the same bf16 autocast
and channels_last on the CPU) for machines without a GPU, run by test/python/test_gpu_bench.py:
its figures say nothing about GPU speed.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

from dmfr.models import get_model  # noqa: E402
from dmfr.trainer import Trainer  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peaks from the vendor data sheets, TFLOP/s.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0,
                    "L40S": 362.0, "A10": 125.0, "L4": 121.0, "RTX 4090": 165.0}


def device_peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key in name:
            return PEAK_BF16_TFLOPS[key]
    return None


class MemoryImages:
    """The FaceDataset surface Trainer uses: labels, num_classes, load(indices) → CPU float32."""

    def __init__(self, n: int, size: int, num_classes: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 3, size, size, generator=g) * 2 - 1
        self.labels = np.random.default_rng(seed).integers(0, num_classes, n).astype(np.int32)
        self.domains = np.zeros(n, np.int16)
        self.pair = np.full(n, -1, np.int32)
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, indices: np.ndarray) -> torch.Tensor:
        return self.images[torch.from_numpy(np.asarray(indices, dtype=np.int64))]


def run_config(args, arch: str) -> dict:
    return {"name": "bench", "seed": 0, "method": {"name": "real"},
            "model": {"arch": arch, "width": args.width, "embedding_size": 512, "dropout": 0.0},
            "data": {"image_size": args.image_size},
            "head": {"type": "cosface", "s": 64.0, "m": 0.4, "m1": 1.0, "m2": 0.0, "m3": 0.0,
                     "partial_fc_sample_rate": 1.0},
            "optim": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "no_bn_decay": False,
                      "schedule": "constant", "milestones": [], "gamma": 0.1, "warmup_steps": 0,
                      "clip_grad_norm": 5.0},
            "train": {"steps": args.warmup + args.steps, "batch_size": args.batch_size, "nproc": 1,
                      "amp": args.amp, "channels_last": args.channels_last, "grad_accum": 1,
                      "log_every": 1, "checkpoint_every": 0, "keep_last": 1, "deterministic": False}}


def batches(data: MemoryImages, batch: int, count: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, len(data), batch).astype(np.int32) for _ in range(count)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step_fn, plan, warmup: int, device: torch.device) -> tuple[float, float | None]:
    """samples/s over the steps after `warmup`, and peak memory (GiB) over the whole loop."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    for k in range(warmup):
        step_fn(k, plan[k])
    sync(device)
    start = time.perf_counter()
    for k in range(warmup, len(plan)):
        step_fn(k, plan[k])
    sync(device)
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return (len(plan) - warmup) * len(plan[0]) / elapsed, peak


def dmfr_loop(args, arch: str, data: MemoryImages, device: torch.device):
    trainer = Trainer(run_config(args, arch), data, device=device)
    zeros = np.zeros(args.batch_size, np.int16)

    def step(k, idx):
        trainer.train_step(k, idx, zeros)

    return step, trainer.method


def plain_loop(args, arch: str, data: MemoryImages, device: torch.device):
    torch.manual_seed(0)
    model = get_model(arch, width=args.width, input_size=args.image_size).to(device)
    weight = torch.nn.Parameter(torch.normal(0, 0.01, (data.num_classes, 512), device=device))
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad] + [weight]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    labels_all = torch.from_numpy(data.labels.astype(np.int64))
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None

    def step(k, idx):
        idx_t = torch.from_numpy(idx.astype(np.int64))
        x = data.images[idx_t].to(device, non_blocking=True)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = labels_all[idx_t].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            emb = model(x)
        cos = F.linear(F.normalize(emb.float()), F.normalize(weight))
        cos = cos - 0.4 * F.one_hot(y, data.num_classes)
        loss = F.cross_entropy(64.0 * cos, y)
        opt.zero_grad(set_to_none=True)
        if scaler:  # fp16, as the trainer does it: scale, unscale before clipping, step, update
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()

    return step, model


def step_flops(args, arch: str, num_classes: int, device: torch.device) -> float:
    """FLOPs of one training step (forward + backward of backbone and head), counted by
    torch.utils.flop_counter on a batch of the benchmark size (convs and matmuls; the
    element-wise ops are a negligible remainder)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = get_model(arch, width=args.width, input_size=args.image_size).to(device)
    weight = torch.nn.Parameter(torch.normal(0, 0.01, (num_classes, 512), device=device))
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    y = torch.randint(0, num_classes, (args.batch_size,), device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        cos = F.linear(F.normalize(model(x)), F.normalize(weight))
        F.cross_entropy(64.0 * cos, y).backward()
    del model, weight, x
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return float(counter.get_total_flops())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--tiny", action="store_true", help="CPU smoke mode: r_tiny width 0.25, 56x56, batch 16")
    p.add_argument("--archs", default="r50,r100")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--num-classes", type=int, default=10000, help="identities of the CosFace head")
    p.add_argument("--amp", default="bf16", choices=["bf16", "fp16", "none"])
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--warmup", type=int, default=15)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: by GPU name)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.tiny:
        args.archs, args.width, args.image_size, args.batch_size = "r_tiny", 0.25, 56, 16
        args.num_classes, args.warmup, args.steps = min(args.num_classes, 100), 2, 4
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print("no CUDA device: run with --device cpu --tiny for a smoke test", file=sys.stderr)
            return 2
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
    else:
        name = "cpu"
    peak = device_peak_tflops(device, args.peak_tflops)
    print(f"device {name}; torch {torch.__version__}; batch {args.batch_size}; {args.image_size}x{args.image_size}; "
          f"amp {args.amp}; channels_last {args.channels_last}; {args.num_classes} classes; "
          f"{args.warmup} warm-up + {args.steps} timed steps; peak {peak or 'unknown'} TFLOP/s")
    data = MemoryImages(max(4 * args.batch_size, 256), args.image_size, args.num_classes)
    results = []
    for arch in args.archs.split(","):
        flops = step_flops(args, arch, args.num_classes, device)
        row = {"arch": arch, "gflops_per_step": flops / 1e9}
        for label, build in (("plain", plain_loop), ("dmfr", dmfr_loop)):
            step_fn, module = build(args, arch, data, device)
            plan = batches(data, args.batch_size, args.warmup + args.steps)
            rate, mem = timed(step_fn, plan, args.warmup, device)
            tflops = flops * rate / args.batch_size / 1e12
            row[label] = {"samples_per_s": rate, "peak_mem_gib": mem, "tflops": tflops,
                          "mfu": tflops / peak if peak else None}
            del step_fn, module
            if device.type == "cuda":
                torch.cuda.empty_cache()
        row["dmfr_over_plain"] = row["dmfr"]["samples_per_s"] / row["plain"]["samples_per_s"]
        results.append(row)

    def fmt(v, spec):
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

    print(f"{'arch':8} {'loop':6} {'samples/s':>10} {'peak GiB':>9} {'TFLOP/s':>8} {'MFU':>6}  GFLOP/step")
    for r in results:
        for label in ("plain", "dmfr"):
            d = r[label]
            print(f"{r['arch']:8} {label:6} {d['samples_per_s']:10.1f} {fmt(d['peak_mem_gib'], '9.2f'):>9} "
                  f"{d['tflops']:8.2f} {fmt(d['mfu'], '6.1%'):>6}  {r['gflops_per_step']:.1f}")
        print(f"{r['arch']:8} dmfr/plain samples/s ratio: {r['dmfr_over_plain']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "args": vars(args), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
