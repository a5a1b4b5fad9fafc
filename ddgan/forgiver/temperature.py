"""F2A's temperature lambda under the discriminator-side objective (``algo.lambda_objective:
discriminator``).

The poster says lambda is "updated via backprop to better fit to given data". Read on the
discriminator side, lambda makes the aggregate D_agg(x) = sum_k softmax_k(lambda r_k(x)) r_k(x) a
better discriminator of real data (the union of the clients' shards) against G's samples:

    L_D(lambda) = mean_j E_{x ~ client j's real batch}[loss(D_agg(x), real)]
                + E_{x ~ G's batch}[loss(D_agg(x), fake)]

Real data never moves. Every client receives every discriminator (one all_gather of their
parameters every ``algo.lambda_refresh`` steps, :class:`DiscriminatorCopies`, reused in between;
the params exchange refreshes them from the Ds it gathers anyway), evaluates them on the first
``REAL_SAMPLES`` images of the real batch of its own D step and sends one number, its real term's
d L_D / d lambda, to the generator rank (a reduce; under the robust exchange a gather, so that the
terms can be checked one by one: :func:`robust_lambda_grad`); the generator rank adds the fake term
from the K x B scores it already has and updates lambda. What crosses the wire beyond the exchange
mode's own traffic: in feedback mode the discriminators' parameters once per refresh (1 /
``lambda_refresh`` of the params exchange's bytes per step, on average) and one scalar per client.
Between refreshes the real term is computed with discriminators up to ``lambda_refresh`` - 1 steps
old: lambda moves by about 0.01 per step, the Ds' verdicts on real data slowly. A client holding
every D could probe them for the others' data; use the generator-side objective where that matters
(and in ``comm.exchange: secure``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ddgan.core.aggregate import f2a_discriminator_loss
from ddgan.core.models import frozen_forward
from ddgan.forgiver.exchange import Verdict, discriminator_states, packed_discriminators
from ddgan.forgiver.layout import GENERATOR_RANK, Layout
from ddgan.forgiver.robust import Counted
from ddgan.roles import ClientGroup
from ddgan.runtime.comm import Comm, pack


def lambda_grad(lam: Tensor, loss: str, real_out: Tensor | None, fake_out: Tensor | None) -> Tensor:
    """d L_D / d lambda of the terms given: ``real_out`` (K x B_r, every D on one client's real
    batch) and/or ``fake_out`` (K x B, every D on G's batch). Pure; the reference uses it too."""
    lam = lam.detach().clone().requires_grad_(True)
    total = lam.new_zeros(())
    for out, real in ((real_out, True), (fake_out, False)):
        if out is not None:
            total = total + f2a_discriminator_loss(out.detach(), lam, loss, real)
    (grad,) = torch.autograd.grad(total, lam)
    return grad


# The real term is estimated on this many samples of each client's real batch: all 64 made a
# client's step 1.5x as long on MNIST (K discriminator forwards per sample), and 5 clients x 16
# samples per step are plenty for a temperature that moves by about 0.01 per step.
REAL_SAMPLES = 16


class DiscriminatorCopies:
    """Every client's D as lambda's real term sees it: all-gathered at steps 1, 1 + every, 1 + 2 every,
    ... and reused in between. The gathered rows are part of the checkpoint, so a resumed run
    computes with the copies the uninterrupted one would."""

    def __init__(self, every: int):
        self.every, self.rows = every, None

    def states(self, comm: Comm, layout: Layout, Ds: list[torch.nn.Module], template: torch.nn.Module,
               fresh: list[dict[str, Tensor]] | None = None) -> list[dict[str, Tensor]]:
        """One state dict per client. At a refresh step a collective (all_gather of this rank's
        clients' ``Ds``), unless ``fresh`` holds every client's D already (the params exchange
        gathered them): then a local copy."""
        if self.rows is None or (comm.step - 1) % self.every == 0:
            self.rows = torch.stack([pack(state.values()) for state in fresh]) if fresh is not None else \
                layout.client_rows(comm.all_gather(packed_discriminators(layout, Ds, template),
                                                   "discriminator copies for lambda"))
        return discriminator_states(self.rows, template)

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.rows = None if state["rows"] is None else state["rows"].to(device)


def robust_lambda_grad(lam: Tensor, loss: str, real_grads: Tensor, fake_out: Tensor, active: Tensor,
                       clip: float) -> Tensor:
    """d L_D / d lambda under the robust exchange, from the clients' real terms (K) and every D's
    scores of G's batch (K x B): only the ``active`` clients (not named) count, and each real term
    is bounded at ``clip`` x their median magnitude, so one client can neither drag lambda with its
    scores after it is named nor push it with the one number it sends; ``active`` is a mask or the
    positions of the counted clients. Pure."""
    real_grads, fake_out = real_grads[active], fake_out[active]
    cap = clip * real_grads.abs().median()
    return real_grads.clamp(-cap, cap).mean() + lambda_grad(lam, loss, None, fake_out)


def distributed_lambda_grad(comm: Comm, layout: Layout, template: torch.nn.Module, group: ClientGroup | None,
                            verdict: Verdict, lam: Tensor, loss: str, clip: float, copies: DiscriminatorCopies,
                            counted: Counted | None = None) -> Tensor | None:
    """Collective (at a refresh, an all_gather of the Ds unless the params exchange brought them;
    then a reduce, or a gather under the robust exchange): d L_D / d lambda on the generator rank,
    None elsewhere. ``group`` is this rank's clients (None on a dedicated generator rank),
    ``template`` a D of the clients' shapes; ``clip`` bounds the clients' terms under the robust
    exchange (:func:`robust_lambda_grad`), where ``counted`` says who still counts."""
    states = copies.states(comm, layout, group.Ds if group is not None else [], template, verdict.states)
    if counted is not None:               # robust: a named client's D leaves the aggregate
        states = [states[k] for k in counted.update(comm.step, verdict.active)]
    real_grads = lam.new_zeros(layout.per_rank, 1)
    for j, client in enumerate(group.clients if group is not None else []):
        with torch.no_grad():
            real_out = torch.stack([frozen_forward(template, client.real[:REAL_SAMPLES], state=state)
                                    for state in states])
        real_grads[j] = lambda_grad(lam, loss, real_out, None)
    if counted is None:
        total = comm.reduce_sum(real_grads.sum(0), GENERATOR_RANK, "lambda gradient")
        if comm.rank != GENERATOR_RANK:
            return None
        return total[0] / layout.clients + lambda_grad(lam, loss, None, verdict.out)
    gathered = comm.gather(real_grads, GENERATOR_RANK, "lambda gradients")
    if comm.rank != GENERATOR_RANK:
        return None
    return robust_lambda_grad(lam, loss, layout.client_rows(gathered)[:, 0], verdict.out, counted.index, clip)
