"""One generator round of the forgiver-first trainer: how the clients' verdicts reach G.

The exchange modes (``comm.exchange``) produce the same generator update (tested to 1e-5 in
float64 against a one-process reference):

* ``feedback``: every client scores the shared batch x with its D_k; the K x B scores are
  all-gathered; each client derives its own per-sample coefficient c_k = d loss / d D_k(x) from
  the gathered scores (every rank evaluates the same rule), back-propagates c_k through its D_k
  to get d loss / d x, and these gradients are reduce-summed onto the generator rank. The wire
  carries B scores and one image-sized gradient per client, whatever the size of D.
* ``params``: every client's discriminator parameters and buffers are all-gathered; the generator
  rank evaluates each D_k on x itself and back-propagates the rule's loss directly.
* ``secure``: F2A and mean from masked sums only (:mod:`ddgan.forgiver.secure`); the generator rank and
  the clients see sums over clients, never one client's scores or gradient.

``comm.robust`` turns feedback into the robust exchange (:mod:`ddgan.forgiver.robust`). A dedicated
generator rank (:mod:`ddgan.layout`) holds no client: it contributes an empty row to the gathers
and zeros to the sums. Every function here runs collectives and must be called by all ranks in
the same order; none reads a value on the host (see :mod:`ddgan.runtime.health` for NaNs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from ddgan.core.aggregate import RuleInputs, fake_weights
from ddgan.core.models import frozen_forward
from ddgan.forgiver.attacks import Attack
from ddgan.forgiver.layout import GENERATOR_RANK, Layout
from ddgan.roles import ClientGroup
from ddgan.runtime.comm import Comm, module_tensors, pack, packed_size, unpack

EXCHANGES = ("feedback", "params", "secure")       # ``comm.exchange``


@dataclass
class Verdict:
    """What one round decided. ``out``/``weights`` (K x B) are None on ranks that never see them."""

    d_losses: Tensor                 # K, every rank
    g_loss: Tensor                   # scalar, every rank (params: with its graph on the generator rank)
    scores_finite: Tensor            # K bools, every rank: whose scores of the batch were finite
    out: Tensor | None = None        # raw outputs D_k(x_i)
    weights: Tensor | None = None    # the rule's weight of client k on sample i
    grad_x: Tensor | None = None     # d loss / d x, summed over clients (generator rank)
    lam_grad: Tensor | None = None   # d loss / d lambda (generator rank; None where lambda is not learned here)
    states: list[dict[str, Tensor]] | None = None   # params: every client's D, on every rank
    active: Tensor | None = None     # robust: K bools, every rank, the clients not named (None: all count)
    logged: dict[str, Tensor] = field(default_factory=dict)   # more per-step values for metrics.jsonl (generator rank)


def by_feedback(comm: Comm, layout: Layout, group: ClientGroup | None, x: Tensor, d_losses: Tensor,
                rule: Callable, inputs: RuleInputs, attacks: list[Attack | None] | None = None) -> Verdict:
    """Collective (all_gather + reduce): the feedback exchange; see the module docstring. ``group``
    (this rank's clients, ``d_losses`` their D losses) is None on a dedicated generator rank.
    ``inputs.lam`` must hold the same value on every rank (it arrives with the batch) and requires
    grad when lambda descends the generator's loss. A co-hosted client's row is its own: the rank
    sends one row per client, and one gradient, the sum of its clients' ones."""
    b = x.shape[0]
    x_req = x.detach().requires_grad_(True)
    own = group.scores(x_req) if group is not None else x.new_zeros(0, b)
    sent, lying = own.detach(), any(attacks or [])
    if lying:
        sent = torch.stack([row if a is None else a.scores(row, comm.step) for row, a in zip(sent, attacks)])
    mine = x.new_zeros(layout.per_rank, b + 1)
    mine[:len(own)] = torch.cat([sent, d_losses.reshape(-1, 1)], 1)
    rows = layout.client_rows(comm.all_gather(mine, "realness scores"))
    out = rows[:, :b].clone().requires_grad_(True)
    g_loss, weights = rule(out, inputs)
    learn = inputs.lam is not None and inputs.lam.requires_grad
    grads = torch.autograd.grad(g_loss, [out, inputs.lam] if learn else [out])
    grad_x = torch.zeros_like(x)
    if group is not None:
        coef = grads[0][group.rows]
        if lying:                         # a liar transforms its own gradient: one backward per client
            for j, attack in enumerate(attacks):
                (g,) = torch.autograd.grad(own[j], x_req, coef[j], retain_graph=True)
                grad_x += g if attack is None else attack.gradient(g, comm.step)
        else:
            (grad_x,) = torch.autograd.grad(own, x_req, coef)
    comm.reduce_sum(grad_x, GENERATOR_RANK, "gradients w.r.t. the generated batch")
    return Verdict(rows[:, b], g_loss.detach(), torch.isfinite(out.detach()).all(1), out.detach(), weights,
                   grad_x=grad_x, lam_grad=grads[1] if learn else None)


def d_step_weights(comm: Comm, layout: Layout, group: ClientGroup | None, x: Tensor, rule: Callable,
                   inputs: RuleInputs) -> Tensor:
    """Collective (all_gather): ``algo.fake_weights: rule`` - before the D step every client scores
    the shared batch with its D_k as it stands (B scores each), the scores are all-gathered, and
    every rank evaluates the rule on them; the hosted clients' rows of :func:`fake_weights`
    (clients x B; empty on a dedicated generator rank). Honest scores only: the exchange modes
    that guard against lying or hide scores (robust, secure) do not offer it (ddgan.core.config)."""
    b = x.shape[0]
    mine = x.new_zeros(layout.per_rank, b)
    if group is not None:
        with torch.no_grad():
            mine[:len(group.ids)] = group.scores(x)
    rows = layout.client_rows(comm.all_gather(mine, "realness scores for the D step"))
    _, weights = rule(rows, inputs)
    weights = fake_weights(weights, inputs.shares)
    return weights[group.rows] if group is not None else weights[:0]


def packed_discriminators(layout: Layout, Ds: list[torch.nn.Module], template: torch.nn.Module,
                          extra: Tensor | None = None) -> Tensor:
    """This rank's contribution to a gather of discriminators: ``layout.per_rank`` rows, one packed
    D per hosted client (then that client's row of ``extra``, packed in a slot of its own), zeros
    where the rank hosts fewer."""
    rows = [pack(module_tensors(D).values()) for D in Ds]
    if extra is not None:
        rows = [torch.cat([row, pack([e])]) for row, e in zip(rows, extra)]
    width = packed_size(module_tensors(template).values()) + (packed_size([extra.new_empty(extra.shape[1:])]) if extra is not None else 0)
    out = torch.zeros(layout.per_rank, width, dtype=torch.uint8, device=next(template.parameters()).device)
    if rows:
        out[:len(rows)] = torch.stack(rows)
    return out


def gather_discriminators(comm: Comm, layout: Layout, Ds: list[torch.nn.Module], template: torch.nn.Module,
                          stats: Tensor | None = None) -> tuple[list[dict[str, Tensor]], Tensor | None]:
    """Collective (all_gather): every client's discriminator parameters and buffers, as one state
    dict per client (views into the gathered buffer; :func:`frozen_forward` never writes into them),
    and the clients' rows of ``stats`` (clients x s) sent along (None when none were sent).
    ``template`` is a D of the clients' shapes (a rank without clients sends only padding)."""
    rows = layout.client_rows(comm.all_gather(packed_discriminators(layout, Ds, template, stats),
                                              "discriminator parameters"))
    n = packed_size(module_tensors(template).values())
    like = stats.new_empty(stats.shape[1:]) if stats is not None else None
    all_stats = torch.stack([unpack(row[n:], [like])[0] for row in rows]) if stats is not None else None
    return discriminator_states(rows[:, :n], template), all_stats


def discriminator_states(rows: Tensor, D: torch.nn.Module) -> list[dict[str, Tensor]]:
    """The state dicts (views) of gathered packed discriminators, one row per client, shaped like ``D``'s."""
    own = module_tensors(D)
    return [dict(zip(own, unpack(row, list(own.values())))) for row in rows]


def by_params(comm: Comm, layout: Layout, group: ClientGroup | None, template: torch.nn.Module, x: Tensor | None,
              d_losses: Tensor, rule: Callable, inputs: RuleInputs) -> Verdict:
    """Collective (all_gather + broadcast): the params exchange; ``x`` is G's output on the
    generator rank (with its graph) and unused elsewhere, where the verdict's loss is ready for
    ``backward()``. ``template`` is a D of the clients' shapes (on a dedicated generator rank it is
    all the rank has)."""
    Ds = group.Ds if group is not None else []
    states, all_stats = gather_discriminators(comm, layout, Ds, template, d_losses.reshape(-1, 1))
    d_losses = all_stats[:, 0]
    # The others learn the loss and which clients' scores were finite, so a NaN stops every rank
    # at the same step with the same message.
    status = d_losses.new_zeros(1 + layout.clients)
    g_loss = out = weights = lam_grad = None
    if comm.rank == GENERATOR_RANK:
        out = torch.stack([frozen_forward(template, x, state=state) for state in states])
        g_loss, weights = rule(out, inputs)
        if inputs.lam is not None and inputs.lam.requires_grad:
            (lam_grad,) = torch.autograd.grad(g_loss, inputs.lam, retain_graph=True)
        status = torch.cat([g_loss.detach().reshape(1), torch.isfinite(out.detach()).all(1).to(status.dtype)])
    comm.broadcast(status, GENERATOR_RANK, "generator loss")
    return Verdict(d_losses, g_loss if g_loss is not None else status[0], status[1:] > 0,
                   None if out is None else out.detach(), weights, lam_grad=lam_grad, states=states)
