"""The training loop of stage 04: the same code on one CPU process, DDP or FSDP2 over gloo on CPU, one GPU, multi-GPU
and multi-node (the launcher starts the processes; ``train.fsdp`` picks FSDP over DDP: :mod:`~.parallel`).

:func:`train` runs a :class:`~swallowlib.train.job.Job` (a fully resolved run: model source, data, schedule,
checkpoints) and resumes it exactly: model, optimizer, scheduler and RNG states come from the newest good checkpoint,
and the data is a pure function of the step (:mod:`swallowlib.train.data`), so a run killed at any moment and started
again ends with the weights an uninterrupted run has (bitwise on CPU). ``swallowlib.train.job`` builds a Job from the
profile config; ``swallowlib.train.gpu_check`` builds one on synthetic tokens.

Per step: ``batch_size / (micro_batch_size × processes)`` micro-batches (gradient sync only on the last), the loss
from the logits with one ``cross_entropy`` (compiled with the forward by ``torch.compile`` when ``compile`` is on),
global gradient-norm clipping, fused AdamW, the LR schedule. During an embedding-only warm-up the gradients of every
other parameter are dropped before the optimizer step (AdamW then leaves those weights bitwise untouched); dropping them
after the backward, rather than freezing, keeps DDP's gradient buckets identical in both phases.

Outputs in ``job.out_dir``: ``checkpoints/step-*/`` (resume, keep-last-N), ``milestones/step-*/`` and ``final/`` (HF
directories at the configured fractions of the token budget), ``metrics.jsonl``, ``tb/`` (TensorBoard),
``run.json`` (the run's fingerprint), ``provenance.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from swallowlib.config import steps_for_tokens
from swallowlib.provenance import peak_rss_mb, publish_dir, write_json_atomic, write_text_atomic
from swallowlib.train import checkpoint, memory, mfu, parallel
from swallowlib.train import model as modeling
from swallowlib.train.data import step_indices
from swallowlib.train.job import Job, TrainError, resolve_precision
from swallowlib.train.optim import build_optimizer, build_scheduler, scheduler_state

log = logging.getLogger(__name__)


def make_accelerator(precision: str, *, cpu: bool | None = None):
    """The Accelerator for this process (``cpu=True`` without CUDA, so torchrun's processes use gloo; ``cpu=True``
    on a CUDA machine keeps this process on the CPU)."""
    # Deferred: accelerate is slow to import, and the plan imports this module only for total_steps_of.
    from accelerate import Accelerator

    return Accelerator(
        cpu=not torch.cuda.is_available() if cpu is None else cpu,
        mixed_precision="bf16" if resolve_precision(precision) == "bf16" else "no",
    )


# ---------------------------------------------------------------------------------------------------------------
# Run identity


def identity_fields(job: Job, world_size: int) -> dict:
    """Everything that changes the trajectory of a run (a checkpoint is reused only when all of it matches)."""
    return {
        "model_init": job.model_init,
        "model_config": modeling.config_dict(job.model_config) if job.model_config is not None else None,
        "vocab_size": job.tokenizer_size,
        "tokens": job.tokens,
        "seq_len": job.seq_len,
        "micro_batch_size": job.micro_batch_size,
        "grad_accum": grad_accum_of(job, world_size),
        "world_size": world_size,
        "fsdp": job.fsdp,
        "optimizer": asdict(job.optimizer),
        "precision": job.precision,
        "compile": job.compile,
        "peft": asdict(job.peft) if job.peft else None,
        "new_rows_from": job.new_rows_from if job.peft else None,
        "embedding_warmup_steps": job.embedding_warmup_steps,
        "seed": job.seed,
        "mix": job.data.share(),
        **job.identity,
    }


def _hash(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


#: Identity fields that only say how the global batch is split over processes and micro-batches.
BATCH_SPLIT = ("world_size", "micro_batch_size", "grad_accum")


def _global_batch(fields: dict) -> int:
    return int(fields.get("world_size", 1)) * int(fields.get("micro_batch_size", 1)) * int(fields.get("grad_accum", 1))


def check_run_dir(out_dir: Path, fields: dict) -> None:
    """A run directory with checkpoints or a final model must come from the same run identity."""
    run_json = out_dir / "run.json"
    has_state = (out_dir / "final").is_dir() or checkpoint.list_checkpoints(out_dir / "checkpoints")
    if not run_json.is_file() or not has_state:
        return
    try:
        old = json.loads(run_json.read_text())["fields"]
    except (OSError, json.JSONDecodeError, KeyError):
        raise TrainError(f"{run_json}: unreadable; delete {out_dir} (or pass --restart) to start over") from None
    if _hash(old) == _hash(fields):
        return
    diff = sorted(k for k in set(old) | set(fields) if old.get(k) != fields.get(k))
    finished = summary_of(out_dir) is not None
    if set(diff) <= set(BATCH_SPLIT) and finished and _global_batch(old) == _global_batch(fields):
        # A finished run trained with the same global batch split differently over processes (e.g. 16 GPUs on two
        # nodes, now opened from one): the same training, so it stands. Resuming a killed one would need the
        # per-process RNG states of its own process count, so that still refuses below.
        return
    if "world_size" in diff and set(diff) <= set(BATCH_SPLIT):
        raise TrainError(
            f"{out_dir}: its checkpoints were written by {old.get('world_size')} process(es), this launch has "
            f"{fields.get('world_size')}: resume on {old.get('world_size')} (its RNG states and shards are per "
            "process), or delete the directory (or pass --restart) to train again"
        )
    if "vocab_size" in diff:
        raise TrainError(
            f"{out_dir}: its checkpoints have a vocabulary of {old.get('vocab_size')}, this run's tokenizer has "
            f"{fields['vocab_size']}; delete the directory (or pass --restart) to train again"
        )
    raise TrainError(
        f"{out_dir}: its checkpoints come from a different configuration (differs in: {', '.join(diff)}); "
        "restore the config, or delete the directory (or pass --restart) to train again"
    )


# ---------------------------------------------------------------------------------------------------------------
# Metrics


class Metrics:
    """``metrics.jsonl`` and TensorBoard, written by the main process only."""

    def __init__(self, out_dir: Path, enabled: bool, resume_step: int):
        self.enabled = enabled
        self.path = out_dir / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        # Rows after the resume point belong to the killed attempt: drop them (and any half-written last line).
        kept = []
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if row.get("step", 0) <= resume_step:
                    kept.append(line)
        write_text_atomic(self.path, "".join(line + "\n" for line in kept))
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tb"), purge_step=resume_step or None)
        except ImportError:  # tensorboard is a project dependency; a bare GPU image may lack it
            log.warning("tensorboard is not installed: metrics go to metrics.jsonl only")

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        self._f.write(json.dumps(row) + "\n")
        self._f.flush()
        if self.tb is not None:
            prefix = "valid" if row.get("event") == "milestone" else "train"
            for k, v in row.items():
                if isinstance(v, int | float) and k not in ("step", "event"):
                    self.tb.add_scalar(f"{prefix}/{k}", v, row["step"])
            self.tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._f.close()
            if self.tb is not None:
                self.tb.close()


# ---------------------------------------------------------------------------------------------------------------
# The loop


def _loss(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy. Labels arrive already shifted (packed ``L + 1`` windows), so no padded copy
    of the labels is built; the cross-entropy is in fp32 on bf16 logits (autocast would upcast them too; FSDP's bf16
    policy leaves them bf16)."""
    logits = model(input_ids=x, use_cache=False).logits
    return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), y.reshape(-1))


@torch.no_grad()
def evaluate(model, eval_data: dict[str, np.ndarray], device, strategy, micro_batch: int) -> dict[str, float]:
    """Mean validation loss per source (every process computes the same batches: FSDP needs all of them)."""
    model.eval()
    out = {}
    for name, arr in eval_data.items():
        total, n = 0.0, 0
        for i in range(0, len(arr), micro_batch):
            batch = torch.from_numpy(arr[i : i + micro_batch]).to(device)
            with strategy.autocast():
                loss = _loss(model, batch[:, :-1], batch[:, 1:])
            total += float(loss) * len(batch)
            n += len(batch)
        if n:
            out[f"valid_loss_{name}"] = total / n
    model.train()
    return out


def _publish_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes a copy of ``src`` (hard links: same bytes, no extra space), swapped in atomically."""
    tmp = dst.parent / f".tmp-{dst.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp, copy_function=os.link)
    except OSError:  # another filesystem: a real copy
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
    publish_dir(tmp, dst)


def summary_of(out_dir: Path) -> dict | None:
    """The summary of a finished run (``final/trainer_state.json``), None while it is not finished."""
    try:
        return json.loads((Path(out_dir) / "final" / "trainer_state.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


class Trainer:
    """The model, optimizer and schedule of a job on an Accelerator, and one optimizer step (:meth:`step`).

    :func:`train` drives it; ``benchmarks/bench_train.py`` times :meth:`step` against a plain transformers loop.
    """

    def __init__(self, job: Job, acc, total_steps: int):
        self.job, self.acc, self.total_steps = job, acc, total_steps
        self.world, self.rank = acc.num_processes, acc.process_index
        self.tokens_per_step = job.batch_size * job.seq_len
        self.grad_accum = grad_accum_of(job, self.world)
        device_type = acc.device.type
        if device_type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # fp32 leftovers outside autocast
        # FSDP over several processes: rank 0 alone builds or loads the weights and the others receive their shards
        # from it, so a node holds one full copy in CPU memory instead of one per GPU (PEFT wrappers: every rank).
        from_rank0 = job.fsdp and self.world > 1 and job.peft is None
        if from_rank0 and self.rank != 0:
            config = job.model_config if job.model_init == "scratch" else modeling.pretrained_config(
                job.model_init, local_files_only=job.local_files_only)  # fmt: skip
            model = modeling.meta_model(config)
        elif job.model_init == "scratch":
            model = modeling.scratch_model(job.model_config, job.seed)
        else:
            model = modeling.load_pretrained(job.model_init, local_files_only=job.local_files_only)
        modeling.check_vocab(model, job.tokenizer_size, job.model_init)
        self.base_config = model.config
        if device_type == "cuda":
            check_memory(job, model.config, self.world, torch.cuda.get_device_properties(acc.device).total_memory)
        if job.peft is not None:
            model = modeling.wrap_peft(model, job.peft, job.new_rows_from)
        self.counts = modeling.count_params(model)
        self.flops_per_token = modeling.flops_per_token(self.base_config, job.seq_len)
        from accelerate.utils import set_seed  # deferred: as in make_accelerator

        set_seed(job.seed)
        self.parallel = parallel.make(
            acc, fsdp=job.fsdp, precision=job.precision, activation_checkpointing=job.activation_checkpointing,
            from_rank0=from_rank0,
        )
        self.model, self.optimizer = self.parallel.setup(
            model, lambda m: build_optimizer(m, job.optimizer, device_type=device_type)
        )
        self.inner_opt = getattr(self.optimizer, "optimizer", self.optimizer)
        self.scheduler = build_scheduler(
            self.inner_opt,
            warmup_steps=job.optimizer.warmup_steps,
            total_steps=total_steps,
            min_lr_ratio=job.optimizer.min_lr_ratio,
        )
        self.raw_model = self.parallel.unwrap(self.model)
        self.frozen_in_warmup = [
            p for n, p in self.raw_model.named_parameters() if p.requires_grad and not modeling.is_embedding_param(n)
        ]
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.loss_fn = torch.compile(_loss) if job.compile else _loss
        self.clip = job.optimizer.grad_clip if job.optimizer.grad_clip > 0 else float("inf")
        self.model.train()

    def load(self, ckpt: checkpoint.Checkpoint) -> None:
        """Model, optimizer, scheduler and this process's RNG states from a resume checkpoint."""
        checkpoint.load(ckpt.path, self.model, self.inner_opt)
        sd = checkpoint.read_scheduler(ckpt.path)
        self.scheduler.load_state_dict({**sd, "lr_lambdas": [None] * len(self.inner_opt.param_groups)})
        rng = checkpoint.read_rng(ckpt.path, self.rank)
        if rng is None:
            raise TrainError(f"{ckpt.path}: no RNG state for process {self.rank} (written with another world size?)")
        checkpoint.set_rng_state(rng)

    def step(self, step: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        """One optimizer step on the global batch of ``step``: ``(summed micro-batch losses, grad norm, lr)``."""
        job, acc, model, accum = self.job, self.acc, self.model, self.grad_accum
        loss_sum = torch.zeros((), device=acc.device)
        for a in range(accum):
            ks = step_indices(step, a, self.rank, self.world, job.micro_batch_size, accum)
            batch = torch.from_numpy(job.data.batch(ks)).to(acc.device, non_blocking=True)
            with self.parallel.sync(model, a == accum - 1):
                with self.parallel.autocast():
                    loss = self.loss_fn(model, batch[:, :-1], batch[:, 1:])
                self.parallel.backward(loss / accum)
            loss_sum += loss.detach().float()
        if step < job.embedding_warmup_steps:
            for p in self.frozen_in_warmup:
                p.grad = None
        grad_norm = self.parallel.clip_grad_norm(self.trainable, self.clip)  # parameters without a gradient: skipped
        lr = float(self.inner_opt.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_sum, grad_norm, lr

    def save_hf(self, dirpath: Path, extra: dict) -> None:
        """An HF directory of the current weights (every process calls this; the main process writes)."""
        sd = checkpoint.model_state(self.model)  # collective
        if self.acc.is_main_process:
            tmp = dirpath.parent / f".tmp-{dirpath.name}"
            shutil.rmtree(tmp, ignore_errors=True)
            dtype = torch.bfloat16 if self.job.precision == "bf16" else torch.float32
            modeling.save_hf(self.raw_model, sd, tmp, tokenizer_dir=self.job.tokenizer_dir, dtype=dtype, extra=extra)
            publish_dir(tmp, dirpath)
        self.acc.wait_for_everyone()


def check_memory(job: Job, config, world: int, device_bytes: float) -> None:
    """Refuse a run whose memory estimate exceeds the device before the first step (a warning within 15 % of it)."""
    arch = memory.Arch(config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
                       getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
                       config.intermediate_size, config.vocab_size, bool(config.tie_word_embeddings))  # fmt: skip
    new_rows = max(0, job.tokenizer_size - (job.new_rows_from or job.tokenizer_size)) if job.peft else 0
    est = memory.estimate(arch, config.vocab_size, micro_batch_size=job.micro_batch_size, seq_len=job.seq_len,
                          processes=world, fsdp=job.fsdp, activation_checkpointing=job.activation_checkpointing,
                          precision=job.precision, peft=job.peft, new_rows=new_rows, run=job.name)  # fmt: skip
    if (line := memory.check_fits(est, device_bytes, headroom=0.0)) is not None:
        raise TrainError(f"{line} (swallowlib.train.memory; the estimate errs on the safe side)")
    if (line := memory.check_fits(est, device_bytes)) is not None:
        log.warning("%s: tight on memory: %s", job.name, line)


def total_steps_of(job: Job) -> int:
    """Optimizer steps that cover the job's token budget."""
    return steps_for_tokens(job.tokens, job.batch_size, job.seq_len)


def grad_accum_of(job: Job, world_size: int) -> int:
    """Micro-batches per process and step that keep the global batch at ``job.batch_size`` on ``world_size``."""
    per_step = job.micro_batch_size * world_size
    if job.batch_size % per_step:
        raise TrainError(
            f"{job.name}: a global batch of {job.batch_size} sequences does not split into micro-batches of "
            f"{job.micro_batch_size} on {world_size} process(es); launch on a process count that divides "
            f"{job.batch_size // job.micro_batch_size} or change train.micro_batch_size"
        )
    return job.batch_size // per_step



def milestone_steps(fractions: list[float], total_steps: int) -> dict[int, float]:
    """``{step: fraction}`` of a run's milestones (rounded, at least step 1; the first fraction of a step wins)."""
    out: dict[int, float] = {}
    for f in fractions:
        out.setdefault(max(1, round(f * total_steps)), f)
    return out


def train(job: Job, accelerator=None, *, max_steps: int | None = None, restart_if_changed: bool = False) -> dict:
    """Run (or resume, or skip when finished) one job; returns a summary dict (also saved in ``final/``).

    ``max_steps`` stops after that many optimizer steps of this invocation without saving (a simulated kill, for
    the GPU check); the run resumes from its last checkpoint next time. ``restart_if_changed`` deletes a run
    directory that belongs to a different run identity (new config, start weights or tokenizer) instead of refusing
    it - what a pipeline wants after an upstream stage was rebuilt; a killed run of the *same* identity still resumes.
    """
    acc = accelerator or make_accelerator(job.precision)
    total_steps = total_steps_of(job)
    fields = identity_fields(job, acc.num_processes)
    fp = _hash(fields)
    finished, ckpt = _open_run_dir(job, acc, fields, fp, restart_if_changed)
    if finished is not None:
        log.info("%s: already complete (%s); nothing to do", job.name, Path(job.out_dir) / "final")
        return {**finished, "skipped": True}

    tr = Trainer(job, acc, total_steps)
    start, elapsed_before = _resume(tr, ckpt)
    # Measured here, in this process, right before the steps (CPU; a datasheet value on CUDA): swallowlib.train.mfu.
    peak = mfu.peak(acc.device.type, tr.base_config, job.micro_batch_size * job.seq_len)
    milestones = milestone_steps(job.checkpoint_fractions, total_steps)
    if acc.is_main_process:
        _write_provenance(tr, peak, milestones, start, fp)
    steps = StepLog(tr, peak, start, elapsed_before)
    stop = total_steps if max_steps is None else min(total_steps, start + max(0, max_steps))
    for step in range(start, stop):
        loss_sum, grad_norm, lr = tr.step(step)
        steps.add(loss_sum)
        done = step + 1
        if done % job.log_every_steps == 0 or done == total_steps or done in milestones:
            steps.log(done, lr, grad_norm)
        with steps.saving():
            if done in milestones:
                _save_milestone(tr, done, milestones[done], steps.metrics)
            if done % job.save_every_steps == 0 or done == total_steps:
                _save_checkpoint(tr, done, fp, steps.elapsed())
    summary = steps.finish()
    if summary["completed"]:
        _save_final(tr, summary)
    steps.close()
    return summary


def _open_run_dir(
    job: Job, acc, fields: dict, fp: str, restart_if_changed: bool
) -> tuple[dict | None, checkpoint.Checkpoint | None]:
    """Start or resume: ``(summary, None)`` for a finished run, else ``(None, the checkpoint to resume from or None)``
    once the run directory is known to hold this run (else :class:`TrainError`) and ``run.json`` names it."""
    out = Path(job.out_dir)
    if restart_if_changed:
        if acc.is_main_process:
            try:
                check_run_dir(out, fields)
            except TrainError as e:
                log.warning("%s: %s -- starting over (restart_if_changed)", job.name, e)
                shutil.rmtree(out)
        acc.wait_for_everyone()
    check_run_dir(out, fields)  # every process checks (an error on one only would leave the others waiting)
    finished = summary_of(out)
    if finished is not None:
        return finished, None
    ckpt = checkpoint.latest(out / "checkpoints", fp)
    acc.wait_for_everyone()
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "run.json", {"fingerprint": fp, "fields": fields})
    return None, ckpt


def _resume(tr: Trainer, ckpt: checkpoint.Checkpoint | None) -> tuple[int, float]:
    """``(first step, seconds trained before)``: the checkpoint's state loaded into the trainer, or a fresh start."""
    if ckpt is None:
        return 0, 0.0
    log.info("%s: resuming from %s (step %d of %d)", tr.job.name, ckpt.path.name, ckpt.step, tr.total_steps)
    tr.load(ckpt)
    return ckpt.step, float(ckpt.state.get("elapsed_s", 0.0))


def _write_provenance(tr: Trainer, peak: dict, milestones: dict[int, float], start: int, fp: str) -> None:
    """``provenance.json`` and the run's opening log lines: how this launch trains (processes, device, parallelism,
    sizes, the MFU peak), beside what the job resolved (main process only)."""
    job, acc = tr.job, tr.acc
    prov = {
        **job.provenance,
        "run": job.name,
        "world_size": tr.world,
        "device": str(acc.device),
        "distributed_type": str(acc.distributed_type),
        "parallel": tr.parallel.name,
        "weights_from_rank0": getattr(tr.parallel, "from_rank0", False),
        "activation_checkpointing": job.activation_checkpointing,
        "total_steps": tr.total_steps,
        "tokens_per_step": tr.tokens_per_step,
        "milestone_steps": {str(s): f for s, f in milestones.items()},
        "params": tr.counts,
        "flops_per_token": tr.flops_per_token,
        "peak_flops_per_device": peak,
        "mix_share": job.data.share(),
        "resumed_from_step": start,
        "fingerprint": fp,
    }
    write_json_atomic(Path(job.out_dir) / "provenance.json", prov)
    log.info(
        "%s: %d steps x %d tokens (%s params, %s trainable), %d process(es) on %s, %s",
        job.name, tr.total_steps, tr.tokens_per_step, f"{tr.counts['total']:,}", f"{tr.counts['trainable']:,}",
        tr.world, acc.device, job.precision,
    )  # fmt: skip
    log.info("%s: MFU against the %s", job.name, mfu.describe(peak))


class StepLog:
    """The per-step log of one invocation of :func:`train`: the losses and times since the last row, the rows of
    ``metrics.jsonl`` / TensorBoard, the progress bar (or a log line now and then without one) and the summary."""

    def __init__(self, tr: Trainer, peak: dict, start: int, elapsed_before: float):
        self.tr, self.job, self.peak = tr, tr.job, peak
        self.start, self.elapsed_before = start, elapsed_before
        self.is_main = tr.acc.is_main_process
        self.ja_share = self.job.data.share().get("ja", 0.0)
        self.metrics = Metrics(Path(self.job.out_dir), self.is_main, start)
        self.pbar = tqdm(total=tr.total_steps, initial=start, desc=self.job.name, unit="step",
                         disable=not (self.is_main and self.job.progress))  # fmt: skip
        self.t_run = self.t_log = time.perf_counter()
        self.io_s = 0.0  # time spent saving since the last row (not counted in tokens/s)
        self.loss_acc = torch.zeros((), device=tr.acc.device)
        self.n_acc = self.since_log = self.steps_run = 0
        self.last: dict = {}
        if tr.acc.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def add(self, loss_sum: torch.Tensor) -> None:
        """Count one optimizer step and its summed micro-batch losses."""
        self.loss_acc += loss_sum
        self.n_acc += self.tr.grad_accum
        self.steps_run += 1
        self.since_log += 1
        self.pbar.update(1)

    def elapsed(self) -> float:
        """Seconds this run has trained, over every invocation."""
        return self.elapsed_before + time.perf_counter() - self.t_run

    @contextmanager
    def saving(self) -> Iterator[None]:
        """Time spent saving, left out of the next row's tokens/s."""
        t_io = time.perf_counter()
        yield
        self.io_s += time.perf_counter() - t_io

    def log(self, done: int, lr: float, grad_norm: torch.Tensor) -> None:
        """One row after step ``done`` (every process calls it: the loss is averaged over them)."""
        tr, job = self.tr, self.job
        mean_loss = float(tr.acc.reduce(self.loss_acc / max(1, self.n_acc), reduction="mean"))
        now = time.perf_counter()
        tps = self.since_log * tr.tokens_per_step / max(1e-9, now - self.t_log - self.io_s)
        achieved = tps * tr.flops_per_token / tr.world  # model FLOP/s per device
        row = {
            "step": done,
            "tokens": done * tr.tokens_per_step,
            "loss": mean_loss,
            "lr": lr,
            "grad_norm": float(grad_norm),
            "tokens_per_s": tps,
            "ja_chars_per_s": tps * self.ja_share * (job.ja_chars_per_token or 0.0),
            "mfu": mfu.utilisation(achieved, self.peak["flops"]),  # at most 1; None above the peak (mfu_note)
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "elapsed_s": self.elapsed_before + now - self.t_run,
            "phase": "embedding-warmup" if done - 1 < job.embedding_warmup_steps else "full",
        }
        if row["mfu"] is None:
            row["mfu_note"] = mfu.format_mfu(None, achieved, self.peak)
        if tr.acc.device.type == "cuda":
            row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        self.metrics.write(row)
        self.pbar.set_postfix(loss=f"{mean_loss:.3f}", tok_s=f"{tps:,.0f}")
        self._log_line(row)
        self.last = row
        self.loss_acc.zero_()
        self.n_acc = self.since_log = 0
        self.t_log, self.io_s = now, 0.0

    def _log_line(self, row: dict) -> None:
        """Without a bar (a notebook streaming a subprocess): a line per row, at most ~25 per run however often the
        metrics are logged (every row still goes to metrics.jsonl)."""
        total, done = self.tr.total_steps, row["step"]
        if not self.is_main or self.job.progress or (done % max(1, total // 25) and done != total):
            return
        log.info(
            "%s: step %d/%d  loss %.4f  lr %.2e  %s tokens/s  MFU %s",
            self.job.name, done, total, row["loss"], row["lr"], f"{row['tokens_per_s']:,.0f}",
            mfu.OVER_PEAK if row["mfu"] is None else f"{row['mfu']:.1%}",
        )  # fmt: skip

    def finish(self) -> dict:
        """Close the bar; the invocation's summary (returned by :func:`train`, kept in ``final/``)."""
        self.pbar.close()
        wall = time.perf_counter() - self.t_run
        end = self.start + self.steps_run
        return {
            "run": self.job.name,
            "start_step": self.start,
            "end_step": end,
            "total_steps": self.tr.total_steps,
            "tokens": end * self.tr.tokens_per_step,
            "final_loss": self.last.get("loss"),
            "wall_s": wall,
            "tokens_per_s": self.steps_run * self.tr.tokens_per_step / max(1e-9, wall),
            "elapsed_s": self.elapsed_before + wall,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "completed": end == self.tr.total_steps,
        }

    def close(self) -> None:
        self.metrics.close()


def _save_milestone(tr: Trainer, done: int, fraction: float, metrics: Metrics) -> None:
    """An HF directory at a fraction of the token budget, with its validation losses: the points of the study's
    learning curves (every process calls it)."""
    job = tr.job
    ev = evaluate(tr.model, job.eval_data, tr.acc.device, tr.parallel, job.micro_batch_size)
    extra = {"run": job.name, "step": done, "tokens": done * tr.tokens_per_step, "fraction": fraction}
    tr.save_hf(Path(job.out_dir) / "milestones" / checkpoint.step_name(done), {**extra, **ev})
    metrics.write({"event": "milestone", **extra, **ev})


def _save_checkpoint(tr: Trainer, done: int, fp: str, elapsed_s: float) -> None:
    """A resume checkpoint after step ``done``, what a killed run restarts from (every process calls it)."""
    checkpoint.save(
        Path(tr.job.out_dir) / "checkpoints",
        step=done,
        tokens=done * tr.tokens_per_step,
        model=tr.model,
        optimizer=tr.inner_opt,
        scheduler_sd=scheduler_state(tr.scheduler),
        fingerprint=fp,
        keep_last=tr.job.keep_last,
        extra={"elapsed_s": elapsed_s},
    )


def _save_final(tr: Trainer, summary: dict) -> None:
    """``final/``: the last milestone's directory with the summary in its ``trainer_state.json``; its presence marks
    the run finished (every process calls it)."""
    job, total = tr.job, tr.total_steps
    out = Path(job.out_dir)
    final_milestone = out / "milestones" / checkpoint.step_name(total)
    if not final_milestone.is_dir():  # resumed after the last step, or 1.0 not among the fractions
        tr.save_hf(final_milestone, {"run": job.name, "step": total, "tokens": summary["tokens"], "fraction": 1.0})
    if tr.acc.is_main_process:
        state = json.loads((final_milestone / "trainer_state.json").read_text())
        _publish_copy(final_milestone, out / "final")
        # A fresh file, not the hard link: the milestone keeps its own trainer_state.json.
        (out / "final" / "trainer_state.json").unlink()
        write_json_atomic(out / "final" / "trainer_state.json", {**state, **summary})
    tr.acc.wait_for_everyone()
