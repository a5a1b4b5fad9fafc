"""The forgiver-first trainer: one generator, K client discriminators, one or more clients per rank.

    torchrun --standalone --nproc_per_node 5 -m ddgan.train --config configs/default.yaml
    torchrun --standalone --nproc_per_node 1 -m ddgan.train --config configs/default.yaml train.client_ranks=1

Rank 0 holds the generator (and the first clients, unless ``train.generator_rank: dedicated`` gives
it a rank of its own); each client rank hosts a contiguous group of clients (``train.client_ranks``;
:mod:`ddgan.forgiver.layout`). Per step, on every rank, in this order:
  1. generate  - rank 0 draws x = G(z); x (and lambda) are broadcast to every client rank;
  2. D step    - client k updates D_k on a real batch of its shard and on x (a rank's clients together;
                 with ``algo.fake_weights: rule`` each sample of x weighted by the rule's weight of k on it,
                 from the clients' scores of x all-gathered first);
  3. verdicts  - the clients' verdicts on x reach rank 0 through the exchange mode
                 (:mod:`ddgan.forgiver.exchange`, :mod:`ddgan.forgiver.secure`, :mod:`ddgan.forgiver.robust`);
  4. G step    - rank 0 updates G (and lambda) by the rule;
  5. swap      - every ``algo.swap_every`` steps the Ds move along a seeded permutation (MD-GAN);
  6. upkeep    - metrics, sample grids and checkpoints.
With ``train.pipeline`` rank 0 draws the batch of step t + 1 before step t's verdicts arrive and
sends it right after them, before its G step: the clients' next D step overlaps G's update, and G
learns from feedback one step stale. Only scores, gradients w.r.t. x, the generated batch and (in
params mode, a swap or lambda's discriminator-side objective) discriminator weights cross the
wire; real images never leave their rank. No value is read on the host between log records.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from ddgan.core import seeds
from ddgan.core.aggregate import RuleInputs
from ddgan.core.algorithms import ALGORITHMS, lambda_objective
from ddgan.core.config import Config
from ddgan.core.models import BATCH_DEPENDENT_NORMS
from ddgan.data.shard import client_shards
from ddgan.forgiver.attacks import Attack
from ddgan.forgiver.exchange import Verdict, by_feedback, by_params, d_step_weights
from ddgan.forgiver.layout import GENERATOR_RANK, Layout
from ddgan.forgiver.robust import Counted, Defence, Plan, by_robust, checks
from ddgan.forgiver.secure import Masks, by_secure
from ddgan.forgiver.temperature import DiscriminatorCopies, distributed_lambda_grad
from ddgan.roles import (
    DTYPES,
    ClientGroup,
    Drawn,
    GeneratorSide,
    build_discriminator,
    load_role_state,
    role_state,
)
from ddgan.runtime import checkpoint, rundir
from ddgan.runtime.comm import Comm, copy_into
from ddgan.runtime.distributed import Dist
from ddgan.runtime.health import Health
from ddgan.runtime.preemption import StopRequest


def rule_inputs(cfg: Config, lam: Tensor, shares: Tensor) -> RuleInputs:
    return RuleInputs(loss=cfg.algo.loss, lam=lam, tau=cfg.algo.tau, sinkhorn_iters=cfg.algo.sinkhorn_iters,
                      shares=shares, gman_penalty=cfg.algo.gman_penalty)


def client_shares(cfg: Config, sizes: list[int], dtype: torch.dtype) -> Tensor:
    """f2u_balanced's target share of the batch per client."""
    sizes_t = torch.tensor(sizes, dtype=dtype)
    return sizes_t / sizes_t.sum() if cfg.algo.balance == "shard_size" else torch.full_like(sizes_t, 1 / len(sizes))


@dataclass
class Batch:
    """A generated batch as the clients see it (every rank) and as G made it (the generator rank)."""

    x: Tensor
    lam: Tensor
    drawn: Drawn | None
    plan: Plan | None = None      # robust: where the checks hide in x (generator rank)


def share_batch(comm: Comm, drawn: Drawn | None, lam: Tensor | None, shape: tuple[int, ...], like: Tensor,
                defence: Defence | None = None) -> Batch:
    """Collective (broadcast): the generated batch (robust: with its hidden checks) and the lambda it
    is judged with, from rank 0."""
    numel, plan = int(torch.Size(shape).numel()), None
    if drawn is not None:
        x = drawn.x.detach()
        if defence is not None:
            x, plan = defence.compose(x, comm.step)
        payload = torch.cat([x.reshape(-1), lam.detach().reshape(1)])
    else:
        payload = torch.empty(numel + 1, dtype=like.dtype, device=like.device)
    comm.broadcast(payload, GENERATOR_RANK, "generated batch")
    return Batch(payload[:numel].view(shape), payload[numel], drawn, plan)


def swap_discriminators(comm: Comm, layout: Layout, group: ClientGroup | None, step: int, seed: int) -> None:
    """Point to point: MD-GAN's swap - D_k, with its optimiser state, moves to the client perm[k] of
    a permutation seeded by (seed, step); the shards stay where they are. Between co-hosted clients
    it is a local copy; to each other rank one message carries the Ds of every client moving there."""
    perm = seeds.swap_permutation(seed, step, layout.clients)
    if group is None:
        return
    mine = {k: group.tensors(j) for j, k in enumerate(group.ids)}
    leaving = {k: [t.clone() for t in mine[k]] for k in mine if perm[k] != k}
    sends: dict[int, list[Tensor]] = {}
    for k in sorted(leaving):             # in client order on both sides, so the messages unpack alike
        if layout.rank_of(perm[k]) != comm.rank:
            sends.setdefault(layout.rank_of(perm[k]), []).extend(leaving[k])
    arriving = {k: perm.index(k) for k in mine if perm[k] != k}       # client k receives the D of client src
    recvs: dict[int, list[Tensor]] = {}
    for k in sorted(arriving, key=arriving.get):
        if layout.rank_of(arriving[k]) != comm.rank:
            recvs.setdefault(layout.rank_of(arriving[k]), []).extend(mine[k])
    received = comm.send_recv_tensors(sends, recvs, "discriminator swap") if sends or recvs else {}
    for k in sorted(arriving, key=arriving.get):
        src = arriving[k]
        if src in leaving:
            copy_into(mine[k], leaving[src])
        else:
            got, n = received[layout.rank_of(src)], len(mine[k])
            copy_into(mine[k], got[:n])
            received[layout.rank_of(src)] = got[n:]


class Interval:
    """Statistics summed on the generator rank's device between two log records; the host reads
    them once per record."""

    def __init__(self, clients: int):
        self.k = clients
        self.reset()

    def reset(self) -> None:
        self.steps, self.start, self.sums = 0, time.perf_counter(), {}

    def add(self, verdict: Verdict, lam: Tensor) -> None:
        values = {"d_loss": verdict.d_losses, "g_loss": verdict.g_loss.detach(), "lambda": lam.detach()}
        if verdict.out is not None:
            clients = torch.arange(self.k, device=verdict.out.device)
            # a named client no longer forgives anything: the share is among the clients still counted
            out = verdict.out if verdict.active is None else verdict.out.masked_fill(~verdict.active[:, None], -torch.inf)
            values["forgiver_share"] = (out.argmax(0)[None] == clients[:, None]).double().mean(1)
        if verdict.weights is not None:
            values["weight_share"] = verdict.weights.double().mean(1)
        values.update(verdict.logged)
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0) + value.double()
        self.steps += 1

    def record(self, step: int) -> dict:
        elapsed = time.perf_counter() - self.start
        keys = list(self.sums)
        flat = torch.cat([self.sums[key].reshape(-1) for key in keys]) / self.steps   # one host read below
        values, out, pos = flat.tolist(), {}, 0
        for key in keys:
            n = self.sums[key].numel()
            out[key] = values[pos:pos + n] if self.sums[key].dim() else values[pos]
            pos += n
        record = {"step": step, "steps_per_s": self.steps / elapsed, "step_time": elapsed / self.steps, **out}
        self.reset()
        return record


def counters(comm: Comm, step: int) -> tuple[int, int, float, float]:
    """(step, bytes sent, seconds in collectives, CPU seconds of this process): where :func:`traffic`
    counts from."""
    return step, comm.bytes_sent, comm.seconds, time.process_time()


def traffic(comm: Comm, since: tuple[int, int, float, float], step: int) -> dict:
    """Collective (all_gather, monitoring only): every rank's bytes sent, seconds spent in
    collectives and CPU seconds (all its threads: ``cpu_seconds / step_time`` is the cores it kept
    busy) per step since ``since`` = :func:`counters` at the previous record."""
    now = counters(comm, step)
    mine = torch.tensor([b - a for a, b in zip(since[1:], now[1:])], dtype=torch.float64) / (step - since[0])
    rows = comm.all_gather(mine, "traffic counters").tolist()
    return {"bytes_sent": [r[0] for r in rows], "comm_seconds": [r[1] for r in rows], "cpu_seconds": [r[2] for r in rows]}


@dataclass
class Rank:
    """What this rank holds (:mod:`ddgan.layout`): a group of clients, the generator, or both."""

    layout: Layout
    group: ClientGroup | None
    generator: GeneratorSide | None
    D: torch.nn.Module              # a D of the clients' shapes: the first hosted one, or a template
    shares: Tensor                  # f2u_balanced's share of the batch per client
    attacks: list[Attack | None]    # per hosted client: the lie it tells (attack.*), or None
    defence: Defence | None = None  # the robust exchange's checks (generator rank)
    masks: list[Masks] | None = None   # the secure exchange's pairwise masks, one per hosted client
    copies: DiscriminatorCopies | None = None   # lambda's discriminator-side objective: the Ds it sees
    counted: Counted | None = None  # robust, with lambda's copies: the clients not named, on the host

    @classmethod
    def build(cls, cfg: Config, ctx: Dist) -> "Rank":
        layout, dtype = Layout.of(cfg), DTYPES[cfg.train.dtype]
        source, shards = client_shards(cfg)
        hosted = layout.clients_of(ctx.rank)
        group = ClientGroup.build(cfg, hosted, ctx.device, source, shards) if hosted else None
        generator = GeneratorSide.build(cfg, ctx.device, lambda_objective(cfg) is not None) if ctx.is_main else None
        D = group.Ds[0] if group is not None else build_discriminator(cfg, 0, ctx.device)
        defence = Defence(cfg, layout.clients, generator.G) if cfg.comm.robust and generator is not None else None
        copies = DiscriminatorCopies(cfg.algo.lambda_refresh) if lambda_objective(cfg) == "discriminator" else None
        counted = Counted(cfg, ctx.device) if cfg.comm.robust and copies is not None else None
        return cls(layout, group, generator, D, client_shares(cfg, [len(s) for s in shards], dtype).to(ctx.device),
                   [Attack.of(cfg, k) for k in hosted], defence, copies=copies, counted=counted)


def judge(cfg: Config, comm: Comm, rank: Rank, batch: Batch, d_losses: Tensor, inputs: RuleInputs) -> Verdict:
    """Collective: the clients' verdicts on ``batch`` reach the generator rank by the exchange mode;
    under lambda's discriminator-side objective, with its gradient."""
    rule, group = ALGORITHMS[cfg.algo.name].rule, rank.group
    if cfg.comm.robust:
        verdict = by_robust(comm, rank.layout, group, batch.x, d_losses, rule, inputs, rank.attacks, rank.defence,
                            batch.plan)
    elif cfg.comm.exchange == "feedback":
        verdict = by_feedback(comm, rank.layout, group, batch.x, d_losses, rule, inputs, rank.attacks)
    elif cfg.comm.exchange == "secure":
        verdict = by_secure(comm, rank.layout, group, batch.x, d_losses, cfg.algo.name, inputs, rank.masks)
    else:
        verdict = by_params(comm, rank.layout, group, rank.D, batch.drawn and batch.drawn.x, d_losses, rule, inputs)
    if lambda_objective(cfg) == "discriminator":
        verdict.lam_grad = distributed_lambda_grad(comm, rank.layout, rank.D, group, verdict, batch.lam,
                                                   cfg.algo.loss, cfg.defence.clip, rank.copies, rank.counted)
    return verdict


def train(cfg: Config, ctx: Dist, comm: Comm) -> dict:
    """Run the forgiver-first algorithm ``cfg.algo.name`` to ``cfg.train.steps``; returns the last record."""
    run, rank = rundir.prepare(cfg, ctx.is_main), Rank.build(cfg, ctx)
    group, generator, n = rank.group, rank.generator, cfg.train.batch_size
    start, in_flight = _resume(run, cfg, comm, rank)
    rank.masks = Masks.agree(comm, rank.layout) if cfg.comm.exchange == "secure" else None
    _warn_if_batch_dependent(cfg, ctx.is_main)
    shape, like = (n + checks(cfg), *rank.D.spec.image_shape), torch.empty(0, dtype=DTYPES[cfg.train.dtype],
                                                                           device=ctx.device)
    secure = cfg.comm.exchange == "secure"      # one sum over the clients, not K losses
    health = Health(1 if secure else rank.layout.clients, ctx.device, hidden=secure)
    log, interval = rundir.MetricsLog(run, ctx.is_main), Interval(rank.layout.clients)
    stop, step, record, since = StopRequest(run, cfg.run.stop_check_every, ctx.is_main), start, {}, counters(comm, start)
    batch = None
    if cfg.train.pipeline:   # the first batch in flight (after a resume: the one in flight at the checkpoint)
        if generator is not None and in_flight is None:
            in_flight = (generator.draw(n, stash=True), generator.lam)
        batch = share_batch(comm, *(in_flight or (None, None)), shape, like)
    for step in range(start + 1, cfg.train.steps + 1):
        comm.step = step
        # -- 1. generate: rank 0 draws a batch; without the pipeline the clients receive it now
        drawn = generator.draw(n, stash=cfg.train.pipeline) if generator is not None else None
        lam_now = generator.lam if generator is not None else None
        if not cfg.train.pipeline:
            batch = share_batch(comm, drawn, lam_now, shape, like, rank.defence)
        # -- 2. D step: each client trains its own D_k on private data and the shared fakes (each fake
        #       weighted by the rule's weight of the client on it, with algo.fake_weights: rule)
        weights = None
        if cfg.algo.fake_weights == "rule":
            weights = d_step_weights(comm, rank.layout, group, batch.x, ALGORITHMS[cfg.algo.name].rule,
                                     rule_inputs(cfg, batch.lam, rank.shares))
        d_losses = group.d_step(batch.x, weights) if group is not None else like.new_zeros(0)
        # -- 3. verdicts: the clients' judgement of the batch reaches rank 0 by the exchange mode
        inputs = rule_inputs(cfg, batch.lam.clone().requires_grad_(lambda_objective(cfg) == "generator"), rank.shares)
        verdict = judge(cfg, comm, rank, batch, d_losses, inputs)
        health.observe(step, verdict.d_losses, verdict.g_loss, verdict.scores_finite)
        # -- 4. G step; with the pipeline the next batch leaves first, so the clients' next D step overlaps it
        judged = batch
        if cfg.train.pipeline:
            batch = share_batch(comm, drawn, lam_now, shape, like)
        if generator is not None:
            generator.step(judged.drawn, grad_x=verdict.grad_x, lam_grad=verdict.lam_grad,
                           loss=verdict.g_loss if cfg.comm.exchange == "params" else None)
            interval.add(verdict, judged.lam)
        if rank.defence is not None:
            rank.defence.name_suspects(step)
        # -- 5. MD-GAN swap
        if cfg.algo.swap_every and step % cfg.algo.swap_every == 0:
            swap_discriminators(comm, rank.layout, group, step, cfg.train.seed)
        # -- 6. upkeep: metrics and progress, sample grids, NaN check, stop and checkpoints
        last = step == cfg.train.steps
        if step % cfg.run.log_every == 0 or last:
            health.check()
            moved, since = traffic(comm, since, step), counters(comm, step)
            if generator is not None:
                record = _log(cfg, log, step, {**interval.record(step), **moved}, rank.defence)
        if generator is not None and (step % cfg.run.sample_every == 0 or last):
            rundir.save_grid(generator.samples(), run / "samples" / f"step_{step:07d}.png")
        if checkpoint.at_step_end(run, cfg, comm, stop, step, lambda: _state(step, rank, batch, cfg), health.check):
            break
    log.close()
    if generator is not None:
        print(rundir.final_line(step, cfg.train.steps, run), flush=True)
    return record


def _log(cfg: Config, log: rundir.MetricsLog, step: int, record: dict, defence: Defence | None) -> dict:
    """The generator rank writes a metrics record and prints the progress line."""
    if defence is not None:
        record["named"] = dict(defence.named)
    log.write(record)
    print(rundir.progress_line(step, cfg.train.steps, record["steps_per_s"], {
        "d_loss": sum(record["d_loss"]) / len(record["d_loss"]), "g_loss": record["g_loss"],
        "lambda": record["lambda"]}), flush=True)
    return record


def _state(step: int, rank: Rank, batch: Batch, cfg: Config) -> dict:
    """This rank's checkpoint: its roles (each hosted client under its own number), and on the
    generator rank the batch in flight (pipeline) and the defence's state (robust)."""
    extra = {}
    if rank.generator is not None and cfg.train.pipeline:
        extra["in_flight"] = {"z": batch.drawn.z, "stash": {k: v.detach() for k, v in batch.drawn.stash.items()},
                              "lam": batch.lam}
    if rank.defence is not None:
        extra["defence"] = rank.defence.state_dict()
    if rank.copies is not None:
        extra["lambda_copies"] = rank.copies.state_dict()
    if rank.group is not None:
        extra["clients"] = rank.group.state_dict()
    return role_state(step, None, rank.generator, **extra)


def _warn_if_batch_dependent(cfg: Config, is_main: bool) -> None:
    algo = ALGORITHMS[cfg.algo.name]
    if is_main and algo.compares_samples and cfg.model.d_norm in BATCH_DEPENDENT_NORMS:
        print(f"warning: model.d_norm = {cfg.model.d_norm} makes each client's score of a sample depend on the rest "
              f"of its batch, and {algo.name} compares those scores across clients per sample; use "
              f"model.d_norm=spectral (docs/algorithms.md, \"Discriminator normalisation\")", file=sys.stderr, flush=True)


def _resume(run, cfg: Config, comm: Comm, rank: Rank) -> tuple[int, tuple[Drawn, Tensor] | None]:
    """Collective: restore every role from the newest complete checkpoint; the step to continue
    after, and (pipeline, generator rank) the batch in flight then with its lambda. Every client
    is saved under its own number, so the checkpoint resumes on another ``train.client_ranks``:
    each rank reads the generator rank's file (the generator, lambda's copies) and those of the
    ranks that hosted its clients."""
    def files(saved: Config) -> list[int]:
        before = Layout.of(saved)
        if before == rank.layout:
            return [comm.rank]
        return [GENERATOR_RANK, *sorted({before.rank_of(k) for k in rank.layout.clients_of(comm.rank)}
                                        - {GENERATOR_RANK})]

    loaded = checkpoint.resume_or_start(run, cfg, comm, files)
    if loaded is None:
        return 0, None
    state, clients = loaded[0], {}
    for part in loaded:
        clients.update(part.get("clients", {}))
    if "client" in state:        # written before co-hosting (one client per rank, same layout)
        clients[str(rank.layout.clients_of(comm.rank)[0])] = state["client"]
    if rank.group is not None:
        rank.group.load_state_dict(clients)
    generator, step = rank.generator, load_role_state(state, None, rank.generator)
    if rank.defence is not None:
        rank.defence.load_state_dict(state["defence"])
    if rank.copies is not None and "lambda_copies" in state:      # an older checkpoint: refreshed now
        rank.copies.load_state_dict(state["lambda_copies"], next(rank.D.parameters()).device)
    flight = state.get("in_flight")
    if generator is None or flight is None:
        return step, None
    device, dtype = generator.fixed_z.device, generator.fixed_z.dtype
    drawn = generator.redraw(flight["z"].to(device), {k: v.to(device) for k, v in flight["stash"].items()})
    return step, (drawn, flight["lam"].to(device=device, dtype=dtype))
