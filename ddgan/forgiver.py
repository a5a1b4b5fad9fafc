"""The forgiver-first trainer: one generator, K client discriminators, one rank per client.

    torchrun --standalone --nproc_per_node 5 -m ddgan.train --config configs/default.yaml

Rank 0 is also the generator rank. Per step, on every rank, in this order:
  1. generate  - rank 0 draws z and x = G(z); x (and lambda) are broadcast to every client;
  2. D step    - client k updates D_k on a real batch of its shard and on x;
  3. G step    - the clients' verdicts on x reach G through the exchange mode
                 (:mod:`ddgan.verdicts`) and rank 0 updates G (and lambda) by the rule;
  4. swap      - every ``algo.swap_every`` steps the Ds move along a seeded permutation (MD-GAN);
  5. upkeep    - metrics, sample grids and checkpoints.
Only scores, gradients w.r.t. x, the generated batch and (in params mode or a swap) discriminator
weights cross the wire; real images never leave their rank.
"""
from __future__ import annotations

import sys
import time

import torch
from torch import Tensor

from ddgan import checkpoint, rundir, seeds
from ddgan.aggregate import RuleInputs
from ddgan.algorithms import ALGORITHMS, lambda_objective
from ddgan.config import Config
from ddgan.distributed import Dist
from ddgan.exchange import Comm, module_tensors, pack, unpack
from ddgan.models import BATCH_DEPENDENT_NORMS
from ddgan.preemption import StopRequest
from ddgan.roles import DTYPES, Client, GeneratorSide
from ddgan.shard import client_shards, load_shard
from ddgan.temperature import distributed_lambda_grad
from ddgan.verdicts import Verdict, by_feedback, by_params


def rule_inputs(cfg: Config, lam: Tensor, shares: Tensor) -> RuleInputs:
    return RuleInputs(loss=cfg.algo.loss, lam=lam, tau=cfg.algo.tau, sinkhorn_iters=cfg.algo.sinkhorn_iters,
                      shares=shares, gman_penalty=cfg.algo.gman_penalty)


def client_shares(cfg: Config, sizes: list[int], dtype: torch.dtype) -> Tensor:
    """f2u_balanced's target share of the batch per client."""
    sizes_t = torch.tensor(sizes, dtype=dtype)
    return sizes_t / sizes_t.sum() if cfg.algo.balance == "shard_size" else torch.full_like(sizes_t, 1 / len(sizes))


def share_batch(comm: Comm, x_gen: Tensor | None, lam: Tensor | None, shape: tuple[int, ...],
                like: Tensor) -> tuple[Tensor, Tensor]:
    """Collective (broadcast): the generated batch and the current lambda, from rank 0 to all."""
    numel = int(torch.Size(shape).numel())
    if x_gen is not None:
        payload = torch.cat([x_gen.detach().reshape(-1), lam.detach().reshape(1)])
    else:
        payload = torch.empty(numel + 1, dtype=like.dtype, device=like.device)
    comm.broadcast(payload, 0, "generated batch")
    return payload[:numel].view(shape), payload[numel]


def swap_discriminators(comm: Comm, client: Client, step: int, seed: int) -> None:
    """Collective (point to point): MD-GAN's swap - D_k, with its optimiser state, moves to the
    client perm[k] of a permutation seeded by (seed, step); the shards stay where they are."""
    perm = torch.randperm(comm.world, generator=seeds.torch_generator(seed, "swap", step)).tolist()
    dest, src = perm[comm.rank], perm.index(comm.rank)
    if dest == comm.rank:
        return
    tensors = list(module_tensors(client.D).values())
    tensors += [v for p in client.D.parameters() for v in client.opt.state[p].values() if torch.is_tensor(v)]
    incoming = torch.empty_like(pack(tensors))
    comm.exchange({dest: pack(tensors)}, {src: incoming}, "discriminator swap")
    with torch.no_grad():
        for t, new in zip(tensors, unpack(incoming, tensors)):
            t.copy_(new)


class Interval:
    """Statistics accumulated on rank 0 between two log records."""

    def __init__(self, k: int):
        self.k, self.steps, self.start = k, 0, time.perf_counter()
        self.sums: dict[str, Tensor] = {}

    def add(self, verdict: Verdict, lam: float, comm_seconds: float) -> None:
        k = self.k
        forgiver = torch.bincount(verdict.out.argmax(0), minlength=k).double() / verdict.out.shape[1]
        for key, value in (("d_loss", verdict.d_losses.double()), ("g_loss", verdict.g_loss.detach().double()),
                           ("forgiver_share", forgiver), ("weight_share", verdict.weights.double().mean(1)),
                           ("lambda", torch.tensor(lam, dtype=torch.double)),
                           ("bytes_sent", verdict.stats[:, 1].double()),
                           ("comm_seconds", torch.tensor(comm_seconds, dtype=torch.double))):
            self.sums[key] = self.sums.get(key, 0) + value.cpu()
        self.steps += 1

    def record(self, step: int) -> dict:
        elapsed = time.perf_counter() - self.start
        out = {"step": step, "steps_per_s": self.steps / elapsed, "step_time": elapsed / self.steps}
        out.update({key: (v / self.steps).tolist() for key, v in self.sums.items()})
        self.__init__(self.k)
        return out


def train(cfg: Config, d: Dist, comm: Comm) -> dict:
    """Run the forgiver-first algorithm ``cfg.algo.name`` to ``cfg.train.steps``; returns the last record."""
    algo = ALGORITHMS[cfg.algo.name]
    run = rundir.prepare(cfg, d.is_main)
    source, shards = client_shards(cfg)
    client = Client.build(cfg, d.rank, load_shard(cfg, d.rank, d.device, DTYPES[cfg.train.dtype], source), d.device)
    objective = lambda_objective(cfg)
    gen = GeneratorSide.build(cfg, d.device, objective is not None) if d.is_main else None
    shares = client_shares(cfg, [len(s) for s in shards], DTYPES[cfg.train.dtype]).to(d.device)
    start = _resume(run, cfg, comm, client, gen)
    shape = (cfg.train.batch_size, *client.shard.images.shape[1:])
    if d.is_main and algo.compares_samples and cfg.model.d_norm in BATCH_DEPENDENT_NORMS:
        print(f"warning: model.d_norm = {cfg.model.d_norm} makes each client's score of a sample depend on the rest "
              f"of its batch, and {algo.name} compares those scores across clients per sample; use "
              f"model.d_norm=spectral (README, \"Discriminator normalisation\")", file=sys.stderr, flush=True)
    log, interval, record, step_bytes = rundir.MetricsLog(run, d.is_main), Interval(d.world), {}, 0
    stop, step = StopRequest(run, cfg.run.stop_check_every, d.is_main), start
    for step in range(start + 1, cfg.train.steps + 1):
        comm.step, bytes_at_start, comm_at_start = step, comm.bytes_sent, comm.seconds
        # -- 1. generate: rank 0 draws the batch, every client receives it
        x_gen = gen.generate(cfg.train.batch_size) if gen is not None else None
        x, lam = share_batch(comm, x_gen, gen.lam if gen is not None else None, shape, client.shard.images)
        # -- 2. D step: each client trains its own D_k on private data and the shared fakes
        d_loss = client.d_step(x)
        # -- 3. G step: the verdicts reach G by the exchange mode; rank 0 applies the rule's update
        stats = torch.stack([d_loss, torch.tensor(float(step_bytes), dtype=d_loss.dtype, device=d_loss.device)])
        if cfg.comm.exchange == "feedback":
            inputs = rule_inputs(cfg, lam.clone().requires_grad_(objective == "generator"), shares)
            verdict = by_feedback(comm, client.D, x, stats, algo.rule, inputs)
        else:
            inputs = rule_inputs(cfg, gen.lam if gen is not None and objective == "generator" else lam, shares)
            verdict = by_params(comm, client.D, x_gen, stats, algo.rule, inputs)
        lam_grad = verdict.lam_grad
        if objective == "discriminator":
            lam_grad = distributed_lambda_grad(comm, client, verdict, lam, cfg.algo.loss)
        if gen is not None:
            if cfg.comm.exchange == "feedback":
                gen.step(x_gen, grad_x=verdict.grad_x, lam_grad=lam_grad)
            else:
                gen.step(x_gen, loss=verdict.g_loss, lam_grad=lam_grad)
        # -- 4. MD-GAN swap
        if cfg.algo.swap_every and step % cfg.algo.swap_every == 0:
            swap_discriminators(comm, client, step, cfg.train.seed)
        # -- 5. upkeep: metrics and progress (rank 0), sample grids, checkpoints (every rank)
        if gen is not None:
            interval.add(verdict, float(lam), comm.seconds - comm_at_start)
        last = step == cfg.train.steps
        if gen is not None and (step % cfg.run.log_every == 0 or last):
            record = interval.record(step)
            log.write(record)
            print(rundir.progress_line(step, cfg.train.steps, record["steps_per_s"], {
                "d_loss": sum(record["d_loss"]) / d.world, "g_loss": record["g_loss"], "lambda": record["lambda"]}),
                flush=True)
        if gen is not None and (step % cfg.run.sample_every == 0 or last):
            rundir.save_grid(gen.samples(), run / "samples" / f"step_{step:07d}.png")
        stopping = stop.check(comm, step)
        if step % cfg.run.checkpoint_every == 0 or last or stopping:
            checkpoint.save(run, step, _state(step, client, gen), cfg, comm, cfg.run.keep_checkpoints)
        if stopping:
            stop.clear()
            break
        step_bytes = comm.bytes_sent - bytes_at_start
    log.close()
    if gen is not None:
        print(rundir.final_line(step, cfg.train.steps, run), flush=True)
    return record


def _state(step: int, client: Client, gen: GeneratorSide | None) -> dict:
    state = {"step": step, "client": client.state_dict()}
    if gen is not None:
        state["generator"] = gen.state_dict()
    return state


def _resume(run, cfg: Config, comm: Comm, client: Client, gen: GeneratorSide | None) -> int:
    """Collective: restore every role from the newest complete checkpoint; the step to continue after."""
    state = checkpoint.resume_or_start(run, cfg, comm)
    if state is None:
        return 0
    client.load_state_dict(state["client"])
    if gen is not None:
        gen.load_state_dict(state["generator"])
    return int(state["step"])
