"""One generator round of the forgiver-first trainer: how the clients' verdicts reach G.

Two exchange modes produce the same generator update (tested to 1e-5 in float64):

* ``feedback``: every client scores the shared batch x with its D_k; the K x B scores are
  all-gathered; each client derives its own per-sample coefficient c_k = d loss / d D_k(x) from
  the gathered scores (every rank evaluates the same rule), back-propagates c_k through its D_k
  to get d loss / d x, and these gradients are reduce-summed onto the generator rank. The wire
  carries B scores and one image-sized gradient per client, whatever the size of D.
* ``params``: every client's discriminator parameters and buffers are all-gathered; the generator
  rank evaluates each D_k on x itself and back-propagates the rule's loss directly.

Every function here runs collectives and must be called by all ranks in the same order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ddgan.aggregate import RuleInputs
from ddgan.errors import TrainingError
from ddgan.exchange import Comm, module_tensors, pack, unpack
from ddgan.models import frozen_forward


@dataclass
class Verdict:
    """What one round decided. ``out``/``weights`` (K x B) are None on ranks that never see them."""

    d_losses: Tensor                 # K, every rank
    stats: Tensor                    # K x S per-client statistics sent along (d_loss first)
    g_loss: Tensor                   # scalar, every rank
    out: Tensor | None = None        # raw outputs D_k(x_i)
    weights: Tensor | None = None    # the rule's weight of client k on sample i
    grad_x: Tensor | None = None     # feedback: d loss / d x, summed over clients (generator rank)
    lam_grad: Tensor | None = None   # feedback: d loss / d lambda (generator rank)
    states: list[dict[str, Tensor]] | None = None   # params: every client's D, on every rank


def check_finite(step: int, d_losses: Tensor, g_loss: Tensor, score_finite: Tensor) -> None:
    """Raise TrainingError (on every rank alike) when a loss is NaN or infinite, naming the clients."""
    bad = [k for k, v in enumerate(d_losses.tolist()) if not math.isfinite(v)]
    if bad:
        raise TrainingError(f"step {step}: the discriminator loss of client(s) {bad} is "
                            f"{d_losses[bad[0]].item()}; stopping, the newest complete checkpoint is kept",
                            same_on_all_ranks=True)
    if not torch.isfinite(g_loss):
        culprits = [k for k, ok in enumerate(score_finite.tolist()) if not ok]
        why = f": client(s) {culprits} scored the generated batch with non-finite values" if culprits else ""
        raise TrainingError(f"step {step}: the generator loss is {g_loss.item()}{why}; stopping, "
                            f"the newest complete checkpoint is kept", same_on_all_ranks=True)


def by_feedback(comm: Comm, D: torch.nn.Module, x: Tensor, stats: Tensor,
                rule: Callable, inputs: RuleInputs) -> Verdict:
    """Collective (all_gather + reduce): the feedback exchange; see the module docstring.

    ``inputs.lam`` must hold the same value on every rank (it arrives with the batch) and
    requires grad when lambda is learned.
    """
    b = x.shape[0]
    x_req = x.detach().requires_grad_(True)
    own = frozen_forward(D, x_req)
    rows = comm.all_gather(torch.cat([own.detach(), stats.to(own.dtype)]), "realness scores")
    out = rows[:, :b].clone().requires_grad_(True)
    g_loss, weights = rule(out, inputs)
    verdict = Verdict(rows[:, b], rows[:, b:], g_loss.detach(), out.detach(), weights)
    check_finite(comm.step, verdict.d_losses, verdict.g_loss, torch.isfinite(out.detach()).all(1))
    learn = inputs.lam is not None and inputs.lam.requires_grad
    grads = torch.autograd.grad(g_loss, [out, inputs.lam] if learn else [out])
    (grad_x,) = torch.autograd.grad(own, x_req, grads[0][comm.rank])
    verdict.grad_x = comm.reduce_sum(grad_x, 0, "gradients w.r.t. the generated batch")
    verdict.lam_grad = grads[1] if learn else None
    return verdict


def gather_discriminators(comm: Comm, D: torch.nn.Module, stats: Tensor | None = None
                          ) -> tuple[list[dict[str, Tensor]], Tensor | None]:
    """Collective (all_gather): every client's discriminator parameters and buffers, as one state
    dict per client (views into the gathered buffer; :func:`frozen_forward` never writes into them),
    and the K x S ``stats`` sent along (None when none were sent)."""
    own = module_tensors(D)
    packed = pack(own.values())
    packed_stats = pack([stats]) if stats is not None else packed.new_empty(0)
    rows = comm.all_gather(torch.cat([packed, packed_stats]), "discriminator parameters")
    n = rows.shape[1] - packed_stats.numel()       # the stats sit in their own padded slot at the end
    states = [dict(zip(own, unpack(row[:n], list(own.values())))) for row in rows]
    all_stats = torch.stack([unpack(row[n:], [stats])[0] for row in rows]) if stats is not None else None
    return states, all_stats


def by_params(comm: Comm, D: torch.nn.Module, x: Tensor | None, stats: Tensor,
              rule: Callable, inputs: RuleInputs) -> Verdict:
    """Collective (all_gather + broadcast): the params exchange; ``x`` is G's output on rank 0
    (with its graph) and unused elsewhere. The verdict's loss is ready for ``backward()`` on rank 0.
    """
    states, all_stats = gather_discriminators(comm, D, stats)
    # The others learn the loss and which clients' scores were finite, so a NaN stops every rank
    # at the same step with the same message.
    status = torch.zeros(1 + comm.world, dtype=stats.dtype, device=stats.device)
    g_loss = out = weights = None
    if comm.rank == 0:
        out = torch.stack([frozen_forward(D, x, state=state) for state in states])
        g_loss, weights = rule(out, inputs)
        status = torch.cat([g_loss.detach().reshape(1), torch.isfinite(out.detach()).all(1).to(status.dtype)])
    comm.broadcast(status, 0, "generator loss")
    check_finite(comm.step, all_stats[:, 0], status[0], status[1:])
    return Verdict(all_stats[:, 0], all_stats, g_loss if comm.rank == 0 else status[0],
                   None if out is None else out.detach(), weights, states=states)
