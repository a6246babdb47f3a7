"""The training loop of one rank, independent of the wire.

`Trainer.run` consumes an iterator of `PlanChunk`s — from the controller (dmfr.worker) or made
in-process (`local_plans`, `dmfr.worker --local-plans`) — so both paths train identically.
Per step: load the shard's images, flip a seeded half horizontally, forward the Method (wrapped in
DDP), backward over `train.grad_accum` micro-batches (no_sync on all but the last), clip the
gradient norm (arcface_torch: 5), optimizer and LR-scheduler step. AMP (`train.amp`) on any
device: fp16 with a GradScaler, bf16 without (arcface_torch uses fp16 + GradScaler).
"""
from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
import logging
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dmfr.errors import ConfigError
from dmfr.methods import Batch, build_method
from dmfr.optim import build_optimizer, build_scheduler
from dmfr.partial_fc import clip_grad_norm_sharded_, share_overflow_, sharded_parameter_names

log = logging.getLogger("dmfr.trainer")

CHECKPOINT_VERSION = 1


@dataclass
class PlanChunk:
    """One `plan` message for this rank (docs/protocol.md)."""
    first_step: int
    num_steps: int
    shard_size: int
    last: bool
    indices: np.ndarray  # int32 [num_steps, shard_size]
    domains: np.ndarray  # int16 [num_steps, shard_size]
    pair: np.ndarray | None = None  # int32 [num_steps, shard_size]: partner position in the shard, or -1
    meta_test: list[int] | None = None
    wait_s: float = 0.0  # how long the rank waited for this chunk (set by the source)

    @classmethod
    def from_message(cls, body: dict, buffers: dict[str, np.ndarray]) -> "PlanChunk":
        return cls(body["first_step"], body["num_steps"], body["shard_size"], body["last"],
                   buffers["indices"], buffers["domains"], buffers.get("pair"), body.get("meta_test"))


def local_plans(config: dict, labels: np.ndarray, rank: int, world_size: int, start_step: int = 0,
                chunk_steps: int | None = None) -> Iterator[PlanChunk]:
    """Plans made in-process, for `--local-plans`: each epoch a seeded permutation of all samples,
    cut into global batches (the tail that does not fill one is dropped) and split into equal shards."""
    total, global_batch = config["train"]["steps"], config["train"]["batch_size"]
    if global_batch % world_size:
        raise ConfigError(f"train.batch_size {global_batch} is not divisible by {world_size} ranks")
    shard = global_batch // world_size
    n = len(labels)
    per_epoch = n // global_batch
    if per_epoch < 1:
        raise ConfigError(f"train.batch_size {global_batch} exceeds the dataset's {n} samples")
    chunk_steps = chunk_steps or config["sampler"]["chunk_steps"]
    perms: dict[int, np.ndarray] = {}

    def batch_of(step: int) -> np.ndarray:
        epoch, pos = divmod(step, per_epoch)
        if epoch not in perms:
            perms.clear()
            perms[epoch] = np.random.default_rng([config["seed"], epoch]).permutation(n).astype(np.int32)
        return perms[epoch][pos * global_batch:(pos + 1) * global_batch]

    for first in range(start_step, total, chunk_steps):
        steps = range(first, min(total, first + chunk_steps))
        idx = np.stack([batch_of(k)[rank * shard:(rank + 1) * shard] for k in steps])
        yield PlanChunk(first, len(steps), shard, steps[-1] == total - 1, idx, np.zeros_like(idx, dtype=np.int16))


def flip_mask(seed: int, step: int, indices: np.ndarray, pair: np.ndarray | None = None) -> np.ndarray:
    """Which samples to flip horizontally: a hash of (seed, step, sample index), so the choice is
    reproducible and the same on any number of ranks (a resume on another rank count, and the
    DDP-equals-single-process check, see the same images).

    `pair` (the plan's partner positions in the shard, −1 for none): both sides of a Δc = 0 pair
    share one decision, keyed by the smaller of the two sample indices. L_flt (paper, "Filter-based
    DMFR") compares a synthetic sample with its own source so that the only difference is the
    modality ε; an independent flip per side would add a mirror image to what F must learn.
    Pairs never cross a shard, so this stays independent of the shard split."""
    keys = np.asarray(indices, dtype=np.uint64)
    if pair is not None:
        p = np.asarray(pair, dtype=np.int64)
        paired = (p >= 0) & (p < len(keys))
        keys = keys.copy()
        keys[paired] = np.minimum(keys[paired], keys[p[paired]])
    with np.errstate(over="ignore"):
        x = (keys * np.uint64(0x9E3779B97F4A7C15)
             + np.uint64((seed * 0x632BE59BD9B4E019 + step * 0xD1B54A32D192ED03) % 2**64))
        # splitmix64 finaliser
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(63)).astype(bool)


@dataclass
class StepStats:
    # Steps completed when the values were taken (the 0-based index of the step just run + 1), the
    # one step number of docs/protocol.md: a checkpoint saved then is step-%08d.pt of the same
    # number, as arcface_torch's global_step and TensorBoard's x-axis count.
    step: int
    loss: float
    terms: dict[str, float]
    lr: float
    samples_per_s: float
    plan_wait_s: float
    step_time_s: float


@dataclass
class RunResult:
    last_step: int  # last finished step, -1 if none
    reason: str  # "completed" | "stopped"
    losses: list[float] = field(default_factory=list)  # per logged step (rank-averaged)
    samples_per_s: float = 0.0  # over the whole run
    plan_wait_s: float = 0.0
    train_time_s: float = 0.0


def resolve_device(setting: str, local_rank: int) -> torch.device:
    if setting == "cpu":
        return torch.device("cpu")
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("runtime.device is 'cuda' but no CUDA device is available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        # per device; a host with fewer GPUs than the one that saved it restores those it has
        for index, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


class Trainer:
    def __init__(self, config: dict, dataset, device: torch.device | str = "cpu", rank: int = 0,
                 world_size: int = 1, checkpoint_dir: str | Path | None = None):
        self.config = config
        self.dataset = dataset
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        if self.checkpoint_dir is not None and rank == 0:  # rank 0 is the one writer
            from dmfr.checkpoint import remove_stale_temporaries

            for path in remove_stale_temporaries(self.checkpoint_dir):
                log.info("removed %s, left by a checkpoint write that was killed", path)
        train = config["train"]
        self.grad_accum = train.get("grad_accum", 1)
        self.log_every = train.get("log_every", 1)
        self.term_grad_norm_every = train.get("term_grad_norm_every", 100)
        self.checkpoint_every = train.get("checkpoint_every", 0)
        self.clip = config["optim"].get("clip_grad_norm", 5)  # arcface_torch clips at 5, as the schema default
        # AMP and channels_last follow the device rather than being CUDA-only: CPU autocast takes
        # bf16 and fp16 and GradScaler("cpu") exists (torch >= 2.3), which is also how the tests
        # run these paths without a GPU. A combination torch cannot do is an error, not float32.
        self.channels_last = bool(train.get("channels_last"))
        amp = train.get("amp", "none")
        self.amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(amp)
        if self.amp_dtype is not None:
            # torch warns and disables autocast for a dtype the device lacks (CUDA bf16 raises).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    # a probe matmul rather than torch.is_autocast_enabled(device_type), whose
                    # signature changed across torch versions
                    probe = torch.ones(2, 2, device=self.device)
                    with torch.autocast(self.device.type, dtype=self.amp_dtype):
                        supported = (probe @ probe).dtype == self.amp_dtype
                except RuntimeError:
                    supported = False
            if not supported:
                raise ConfigError(f"train.amp={amp}: torch {torch.__version__} has no {amp} autocast on "
                                  f"{self.device}; use train.amp=none or another dtype")

        # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's).
        torch.manual_seed(config["seed"])
        np.random.seed(config["seed"] % 2**32)
        random.seed(config["seed"])
        self.method = build_method(config, dataset.num_classes).to(self.device)
        if train.get("init"):
            # Start from a pretrained backbone (paper, "Training": every DMFR net starts from a
            # softmax-pretrained one); a resume's checkpoint then overrides it.
            from dmfr.backbone_io import load_init_backbone

            kind = load_init_backbone(self.method, train["init"])
            log.info("backbone initialised from %s (%s)", train["init"], kind)
        if self.channels_last:
            self.method = self.method.to(memory_format=torch.channels_last)
        self.method.train()
        self.model: nn.Module = self.method
        # Partial FC's class centres (each rank its own block; empty otherwise): DDP must neither
        # broadcast nor average them, and clipping and fp16 overflow checks must see all ranks'.
        self._sharded: list[nn.Parameter] = []
        self._replicated = list(self.method.parameters())
        if dist.is_available() and dist.is_initialized() and world_size > 1:
            sharded = sharded_parameter_names(self.method)
            params = dict(self.method.named_parameters())
            self._sharded = [params[name] for name in sharded]
            self._replicated = [p for name, p in params.items() if name not in sharded]
            if sharded:
                DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self.method, sharded)
            # arcface_torch's settings: 16 MB buckets, no buffer broadcast before every forward
            # (each rank keeps its BatchNorm running statistics; rank 0's are checkpointed).
            self.model = DistributedDataParallel(
                self.method, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False, bucket_cap_mb=16,
                find_unused_parameters=getattr(self.method, "find_unused_parameters", False))
        self.optimizer = build_optimizer(config, self.method)
        self.scheduler = build_scheduler(config, self.optimizer)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        self.next_step = 0
        self._agree_group = None
        # steps since the last logged one, and how many of them clipping fired on (a device
        # tensor, read only on logged steps so the loop never waits for the GPU for it)
        self._window_steps = 0
        self._clip_hits = torch.zeros((), device=self.device)

    # ---- one step ------------------------------------------------------------------------------

    def load_shard(self, step: int, indices: np.ndarray, pair: np.ndarray | None = None) -> torch.Tensor:
        """The shard's images on the CPU, with the seeded horizontal flip applied (one decision
        per Δc = 0 pair, `flip_mask`)."""
        n = len(self.dataset)
        if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= n):
            bad = int(indices.max()) if int(indices.max()) >= n else int(indices.min())
            raise ValueError(f"plan for step {step}: sample index {bad} is outside the dataset's {n} samples")
        images = self.dataset.load(indices)
        flip = torch.from_numpy(flip_mask(self.config["seed"], step, indices, pair))
        if flip.any():
            images[flip] = images[flip].flip(-1)
        if self.device.type == "cuda":
            images = images.pin_memory()  # lets the copy to the GPU run asynchronously
        return images

    def _batch(self, images: torch.Tensor, indices: np.ndarray, domains: np.ndarray, pair: np.ndarray | None,
               meta_test: int | None) -> Batch:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = torch.from_numpy(np.asarray(self.dataset.labels)[indices].astype(np.int64)).to(self.device)
        doms = torch.from_numpy(np.asarray(domains, dtype=np.int64)).to(self.device)
        pr = None if pair is None else torch.from_numpy(np.asarray(pair, dtype=np.int64)).to(self.device)
        return Batch(images, labels, doms, pr, meta_test)

    def train_step(self, step: int, indices: np.ndarray, domains: np.ndarray, pair: np.ndarray | None = None,
                   meta_test: int | None = None, images: torch.Tensor | None = None,
                   diagnostics: bool = False) -> dict[str, float]:
        """One optimizer step on this rank's shard; returns this rank's loss terms (not averaged).
        `images`: the shard already loaded by `load_shard` (prefetched), else loaded here.
        `diagnostics`: a logged step's gradient norm and clip fraction (`_diagnostics`), and on every
        `train.term_grad_norm_every`-th step the per-term gradient norms."""
        terms = self._train_step(step, indices, domains, pair, meta_test, images, diagnostics)
        return {k: float(v) for k, v in terms.items()}

    def _train_step(self, step: int, indices: np.ndarray, domains: np.ndarray, pair: np.ndarray | None,
                    meta_test: int | None, images: torch.Tensor | None,
                    diagnostics: bool = False) -> dict[str, torch.Tensor]:
        """As `train_step`, the terms left as tensors on the device: reading them back would
        synchronise with the GPU every step, so the loop does it only on logged steps."""
        n = len(indices)
        if n % self.grad_accum:
            raise ConfigError(f"the per-rank shard of {n} samples does not split into train.grad_accum="
                              f"{self.grad_accum} equal micro-batches")
        if images is None:
            images = self.load_shard(step, indices, pair)
        micro = n // self.grad_accum
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, torch.Tensor] = {}
        term_grads: dict[str, list[torch.Tensor]] = {}
        for j in range(self.grad_accum):
            lo, hi = j * micro, (j + 1) * micro
            mpair = None
            if pair is not None:  # partner positions are relative to the shard: re-base, drop those outside
                p = np.asarray(pair[lo:hi], dtype=np.int64)
                mpair = np.where((p >= lo) & (p < hi), p - lo, -1)
            batch = self._batch(images[lo:hi], indices[lo:hi], domains[lo:hi], mpair, meta_test)
            sync = j == self.grad_accum - 1 or not isinstance(self.model, DistributedDataParallel)
            with (contextlib.nullcontext() if sync else self.model.no_sync()):
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    out = self.model(batch)
                if diagnostics and self._term_grad_step(step):
                    self._accumulate_term_grads(out, term_grads)
                # Each micro-batch loss is a mean over its samples: scale by 1/grad_accum so the
                # accumulated gradient is that of the mean over the whole shard.
                loss = out["loss"] / self.grad_accum
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            for name, value in out.items():
                v = value.detach().float() / self.grad_accum
                totals[name] = totals[name] + v if name in totals else v
        if self.scaler:
            if self._sharded:
                share_overflow_(self._sharded)
            self.scaler.unscale_(self.optimizer)
        # The total norm comes free with clipping; without clipping it is computed on logged steps only.
        total_norm = None
        if self.clip > 0 or diagnostics:
            max_norm = self.clip if self.clip > 0 else float("inf")  # inf: measure, scale by 1
            if self._sharded:
                total_norm = clip_grad_norm_sharded_(self._replicated, self._sharded, max_norm)
            else:
                total_norm = torch.nn.utils.clip_grad_norm_(self.method.parameters(), max_norm)
        self._window_steps += 1
        if self.clip > 0:
            self._clip_hits += (total_norm > self.clip).to(self._clip_hits.dtype)
        if diagnostics:
            totals.update(self._diagnostics(total_norm, term_grads))
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.next_step = step + 1
        return totals

    # ---- diagnostics (logged steps only) -----------------------------------------------------------

    def _term_grad_step(self, step: int) -> bool:
        return self.term_grad_norm_every > 0 and (step + 1) % self.term_grad_norm_every == 0

    def _accumulate_term_grads(self, out: dict[str, torch.Tensor], term_grads: dict[str, list[torch.Tensor]]) -> None:
        """Add each loss term's gradient (unweighted, this rank's shard, before DDP's averaging and
        before clipping) to `term_grads`. Only for methods of several terms: a one-term method's
        term gradient is the total gradient, logged as `grad_norm`. An extra backward per term,
        which is why it runs only every `train.term_grad_norm_every` steps (bench/grad_diagnostics.py
        measures it: ≈ 2.4× a filter step when taken)."""
        names = self.method.terms if len(self.method.terms) > 1 else ()
        params = [p for p in self.method.parameters() if p.requires_grad]
        for name in names:
            term = out[name]
            if term.requires_grad:  # a term absent from this shard (e.g. meta's L_te) is a constant 0
                scale = self.scaler.get_scale() if self.scaler else 1.0
                grads = torch.autograd.grad(term * (scale / self.grad_accum), params, retain_graph=True, allow_unused=True)
                grads = [torch.zeros_like(p) if g is None else g.detach() / scale for p, g in zip(params, grads)]
            else:
                grads = [torch.zeros_like(p) for p in params]
            if name in term_grads:
                for acc, g in zip(term_grads[name], grads):
                    acc.add_(g)
            else:
                term_grads[name] = grads

    def _diagnostics(self, total_norm: torch.Tensor, term_grads: dict[str, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
        """What explains a result (issue #10): `grad_norm` (the total gradient norm before clipping,
        the one `optim.clip_grad_norm` compares), `clip_fraction` (the share of steps since the last
        logged step on which clipping fired) and `grad_norm_<term>` per loss term."""
        out = {"grad_norm": total_norm.detach().float().reshape(())}
        if self.clip > 0:
            out["clip_fraction"] = self._clip_hits / max(self._window_steps, 1)
            self._clip_hits = torch.zeros((), device=self.device)
        self._window_steps = 0
        for name, grads in term_grads.items():
            out[f"grad_norm_{name}"] = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
        return out

    def _distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized() and self.world_size > 1

    def _average(self, terms: dict[str, torch.Tensor]) -> dict[str, float]:
        """Mean over ranks (a collective: every rank calls it at the same steps)."""
        names = sorted(terms)
        t = torch.stack([terms[k].reshape(()) for k in names]).double()
        if self._distributed():
            t = t.to(self.device if dist.get_backend() == "nccl" else "cpu")
            dist.all_reduce(t)
            t /= self.world_size
        return dict(zip(names, t.tolist()))

    def _agree(self, have_step: bool) -> bool:
        """True when every rank has the next step to run (a MIN all-reduce over a CPU gloo group,
        so it never synchronises with the GPU)."""
        if not self._distributed():
            return have_step
        if self._agree_group is None:
            self._agree_group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD
        flag = torch.tensor([1 if have_step else 0], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN, group=self._agree_group)
        return bool(flag.item())

    # ---- checkpoints -----------------------------------------------------------------------------

    def _sharded_heads(self) -> list[tuple[str, "torch.nn.Module"]]:
        from dmfr.partial_fc import PartialFC

        return [(f"{name}.weight" if name else "weight", m) for name, m in self.method.named_modules()
                if isinstance(m, PartialFC)]

    def method_state(self) -> dict:
        """The method's state_dict with Partial FC centres gathered whole, so a checkpoint holds
        every class and resumes on any rank count. Collective when a head is sharded: every rank
        must call it."""
        state = self.method.state_dict()
        for key, head in self._sharded_heads():
            state[key] = head.gather_weight().cpu()
        return state

    def state_dict(self, method_state: dict | None = None) -> dict:
        return {"version": CHECKPOINT_VERSION, "step": self.next_step, "config": self.config,
                "num_classes": self.dataset.num_classes,
                "method": self.method.state_dict() if method_state is None else method_state,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None, "rng": rng_state(),
                "sampler": {"next_step": self.next_step}}

    def load_state_dict(self, state: dict) -> int:
        """Restore a checkpoint's state; returns the step to resume at."""
        if state.get("version") != CHECKPOINT_VERSION:
            raise ConfigError(f"checkpoint version {state.get('version')!r} is not {CHECKPOINT_VERSION}")
        if state["num_classes"] != self.dataset.num_classes:
            raise ConfigError(f"checkpoint has {state['num_classes']} classes, the dataset {self.dataset.num_classes}")
        method = dict(state["method"])
        sharded = self._sharded_heads()
        for key, head in sharded:  # this rank's block of the whole centres
            method[key] = method[key][head.class_start:head.class_start + head.num_local]
        self.method.load_state_dict(method)
        self.optimizer.load_state_dict(state["optimizer"])
        for _, head in sharded:
            # Rank 0's momentum of its own block does not belong to this rank's: start it afresh.
            self.optimizer.state.pop(head.weight, None)
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.next_step = int(state["sampler"]["next_step"])
        return self.next_step

    def save_checkpoint(self, method_state: dict | None = None) -> tuple[Path, int]:
        from dmfr.checkpoint import save_checkpoint  # atomic write + retention

        if self.checkpoint_dir is None:
            raise ConfigError("no checkpoint directory (set DMFR_RUN_DIR or --run-dir)")
        path = Path(save_checkpoint(self.checkpoint_dir, self.next_step, self.state_dict(method_state),
                                    keep_last=self.config["train"].get("keep_last", 3)))
        return path, path.stat().st_size

    # ---- the loop --------------------------------------------------------------------------------

    def run(self, chunks: Iterator[PlanChunk], start_step: int = 0, *,
            on_metrics: Callable[[StepStats], None] | None = None,
            on_checkpoint: Callable[[int, Path, int], None] | None = None,
            on_step: Callable[[int], None] | None = None,
            stop_at: Callable[[], int | None] | None = None,
            final_checkpoint: bool | Callable[[RunResult], bool] = True) -> RunResult:
        """Train on `chunks` from `start_step`. `stop_at()` returns the final step of a requested
        stop (or None); `on_step(k)` is called after each finished step (heartbeats)."""
        result = RunResult(last_step=start_step - 1, reason="completed")
        global_batch = None
        window_start = time.perf_counter()
        window_steps, window_wait, window_compute = 0, 0.0, 0.0
        run_start = time.perf_counter()
        total_samples = 0
        # data.num_workers > 0: threads load (decode, flip) the next steps of the chunk while this
        # one trains, as arcface_torch's DataLoader workers do; a chunk is never waited for early.
        workers = int(self.config["data"].get("num_workers", 0))
        pool = ThreadPoolExecutor(workers, thread_name_prefix="dmfr-load") if workers > 0 else None
        source = iter(chunks)
        chunk: PlanChunk | None = None
        i = 0
        pending: dict[int, Future] = {}
        try:
            while True:
                if chunk is None or i >= chunk.num_steps:
                    if chunk is not None and chunk.last:
                        break  # every rank holds the same final chunk: no agreement needed
                    for f in pending.values():
                        f.cancel()
                    pending = {}
                    chunk = next(source, None)
                    if chunk is not None:
                        window_wait += chunk.wait_s
                        result.plan_wait_s += chunk.wait_s
                        global_batch = chunk.shard_size * self.world_size
                        i = max(0, self.next_step - chunk.first_step)  # skip steps already trained (resume)
                        if i >= chunk.num_steps:
                            continue
                step = chunk.first_step + i if chunk is not None else self.next_step
                final = stop_at() if stop_at else None
                have_step = chunk is not None and (final is None or step <= final)
                # Ranks agree before each step whether all of them will run it, so a rank that has
                # been told to stop (or has no plan left) never leaves another waiting in the
                # step's all-reduce.
                if not self._agree(have_step):
                    break
                if pool is not None:
                    for j in range(i, min(chunk.num_steps, i + workers + 1)):
                        if j not in pending:
                            pending[j] = pool.submit(self.load_shard, chunk.first_step + j, chunk.indices[j],
                                                     None if chunk.pair is None else chunk.pair[j])
                t0 = time.perf_counter()
                images = pending.pop(i).result() if pool is not None else None
                is_last = chunk.last and i == chunk.num_steps - 1
                logged = (step + 1) % self.log_every == 0 or is_last or self._term_grad_step(step)
                terms = self._train_step(step, chunk.indices[i], chunk.domains[i],
                                         None if chunk.pair is None else chunk.pair[i],
                                         None if chunk.meta_test is None else chunk.meta_test[i], images,
                                         diagnostics=logged)
                window_steps += 1
                total_samples += global_batch
                result.last_step = step
                i += 1
                if logged:
                    # the scheduler has already advanced: report the lr this step ran at
                    lr = self.scheduler.base_lrs[0] * self.scheduler.lr_lambdas[0](step)
                    averaged = self._average(terms)
                    window_compute += time.perf_counter() - t0
                    elapsed = time.perf_counter() - window_start
                    stats = StepStats(step + 1, averaged.pop("loss"), averaged, lr,
                                      window_steps * global_batch / max(elapsed, 1e-9), window_wait,
                                      window_compute / max(window_steps, 1))
                    result.losses.append(stats.loss)
                    if on_metrics:
                        on_metrics(stats)
                    window_start, window_steps, window_wait, window_compute = time.perf_counter(), 0, 0.0, 0.0
                else:
                    window_compute += time.perf_counter() - t0
                if on_step:
                    on_step(step)
                if self.checkpoint_every and (step + 1) % self.checkpoint_every == 0 and not is_last:
                    self._checkpoint(on_checkpoint)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        if result.last_step < self.config["train"]["steps"] - 1:
            result.reason = "stopped"  # a stop, or the plans ended early
        result.train_time_s = time.perf_counter() - run_start
        result.samples_per_s = total_samples / max(result.train_time_s, 1e-9)
        want_final = final_checkpoint(result) if callable(final_checkpoint) else final_checkpoint
        if want_final and self.checkpoint_dir is not None and result.last_step >= start_step:
            self._checkpoint(on_checkpoint)
        return result

    def _checkpoint(self, on_checkpoint) -> None:
        """Every rank calls this (gathering sharded centres is collective); rank 0 writes."""
        method_state = self.method_state()
        if self.rank != 0:
            return
        path, size = self.save_checkpoint(method_state)
        log.info("checkpoint step %d: %s (%d bytes)", self.next_step, path, size)
        if on_checkpoint:
            on_checkpoint(self.next_step, path, size)  # steps completed, as the file name
