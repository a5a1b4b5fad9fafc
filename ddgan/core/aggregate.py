"""How the generator learns from K client discriminators: pure functions of their outputs.

Every rule takes ``out``, the K x B matrix of raw discriminator outputs on one generated batch
(client k's row is D_k(x)), and returns the generator's scalar loss plus a K x B matrix of
weights saying how much each client's judgement of each sample counts (logged as the client's
share). The loss is differentiable in ``out`` (and in the temperature ``lam`` where a rule has
one); the trainers take d loss / d out to tell each client what to back-propagate, so one
function serves the distributed exchange and the single-process reference alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ddgan.core.losses import g_loss, mixture_loss, realness


@dataclass
class RuleInputs:
    """What a rule may use besides the outputs; every rank builds the same one."""

    loss: str = "bce"
    lam: Tensor | None = None       # f2a / gman temperature, a 0-d tensor (requires_grad if learned)
    tau: float = 10.0               # f2u_balanced softmax temperature
    sinkhorn_iters: int = 10        # f2u_balanced balancing iterations
    shares: Tensor | None = None    # f2u_balanced target share per client (sums to 1); None = equal
    gman_penalty: float = 0.001     # gman: loss - gman_penalty * lam regulates lam (GMAN*)


def f2u(out: Tensor, inp: RuleInputs) -> tuple[Tensor, Tensor]:
    """Forgiver-First Update (Yonetani et al. 2019): per sample, fool only the most forgiving D_k.

    G minimises mean_i loss(max_k D_k(x_i)); the gradient reaches only the forgiver of each sample.
    """
    forgiver = out.argmax(dim=0)
    chosen = out.gather(0, forgiver[None]).squeeze(0)
    weights = (torch.arange(out.shape[0], device=out.device)[:, None] == forgiver).to(out.dtype)
    return g_loss(inp.loss, chosen).mean(), weights


def f2a(out: Tensor, inp: RuleInputs) -> tuple[Tensor, Tensor]:
    """Forgiver-First Aggregation: fool D_agg(x_i) = sum_k softmax_k(lam * r_k(x_i)) r_k(x_i).

    r_k is client k's realness (sigmoid(logit) for bce, the output for ls). lam -> 0 gives the
    plain average of the realness scores; lam -> inf gives F2U's max. The softmax weights are part
    of the graph, so G's gradient includes how it shifts the weights, and lam receives the gradient
    of the generator loss: dD_agg/dlam = Var_w(r) >= 0, so lam grows while the clients disagree
    about a sample and stops when they agree (docs/algorithms.md, "F2A's lambda").
    """
    weights = torch.softmax(inp.lam * realness(inp.loss, out), dim=0)
    return mixture_loss(inp.loss, out, weights).mean(), weights.detach()


def f2a_discriminator_loss(out: Tensor, lam: Tensor, loss: str, real: bool) -> Tensor:
    """F2A's aggregate D_agg judged as a discriminator: its mean loss on a batch that is all real
    (``real``) or all generated, for the K x B outputs ``out``. Lambda's objective under
    ``algo.lambda_objective: discriminator``: the real term on each client's own real batch, the
    fake term on the generated batch (see :mod:`ddgan.forgiver.temperature`)."""
    weights = torch.softmax(lam * realness(loss, out), dim=0)
    return mixture_loss(loss, out, weights, real).mean()


def mean(out: Tensor, inp: RuleInputs) -> tuple[Tensor, Tensor]:
    """MD-GAN's rule: the average of the clients' generator losses (feedback averaged after the loss).

    Not F2A at lam = 0, which averages realness before the loss. With K = 1 it is a plain GAN
    (the centralized baseline).
    """
    k = out.shape[0]
    return g_loss(inp.loss, out).mean(), torch.full_like(out, 1.0 / k).detach()


def gman(out: Tensor, inp: RuleInputs) -> tuple[Tensor, Tensor]:
    """GMAN* (Durugkar et al. 2017): softmax(lam * V)-weighted mean of the clients' batch losses V_k.

    lam = 0 is the mean, lam -> inf the harshest discriminator. G regulates lam itself by
    minimising the weighted loss minus gman_penalty * lam (without the bonus lam would sink to 0).
    """
    per_client = g_loss(inp.loss, out).mean(dim=1)
    w = torch.softmax(inp.lam * per_client, dim=0)
    loss = (w * per_client).sum() - inp.gman_penalty * inp.lam
    return loss, w.detach()[:, None].expand_as(out)


def balanced_assignment(scores: Tensor, shares: Tensor, tau: float, iters: int) -> Tensor:
    """Per sample, the client it is assigned to under a balanced transport plan.

    Start from softmax_k(tau * scores) per sample (K x B), then alternate Sinkhorn scalings so that
    client k carries ``shares[k]`` of the batch and each sample one unit; return the argmax client
    per sample. Log domain, so large tau cannot overflow.
    """
    log_p = torch.log_softmax(tau * scores, dim=0)              # K x B, each sample one unit
    log_rows = torch.log(shares * scores.shape[1])[:, None]     # client k carries shares[k] * B
    for _ in range(iters):
        log_p = log_p - torch.logsumexp(log_p, dim=1, keepdim=True) + log_rows
        log_p = log_p - torch.logsumexp(log_p, dim=0, keepdim=True)
    return log_p.argmax(dim=0)


def f2u_balanced(out: Tensor, inp: RuleInputs) -> tuple[Tensor, Tensor]:
    """F2U with balanced forgiveness (ours): fool a forgiving client, but spread samples over clients.

    Plain F2U lets G content itself with the clients that already forgive it; a client that is
    never the forgiver never sends G a signal, so its classes can vanish for good. Here each sample
    goes to the client with the largest weight in a transport plan between samples and clients
    that prefers forgiving clients (softmax(tau * realness)) but gives client k ``shares[k]`` of the
    batch. On MNIST Non-OVL this brought 9 of 10 classes where F2U generated 7.
    """
    k = out.shape[0]
    shares = inp.shares if inp.shares is not None else torch.full((k,), 1.0 / k, dtype=out.dtype, device=out.device)
    with torch.no_grad():
        target = balanced_assignment(realness(inp.loss, out.detach()), shares.to(out), inp.tau, inp.sinkhorn_iters)
    chosen = out.gather(0, target[None]).squeeze(0)
    weights = F.one_hot(target, k).T.to(out.dtype)
    return g_loss(inp.loss, chosen).mean(), weights


def fake_weights(weights: Tensor, shares: Tensor) -> Tensor:
    """``algo.fake_weights: rule``: how much each generated sample counts in each client's D step,
    from the rule's K x B weights on the batch: w_ki / (shares[k] B), with ``shares`` the clients'
    target shares of the batch (1/K, or by shard size under ``algo.balance: shard_size``).

    Why: D_k holds real images of its own classes only, yet learns from all of G's batch, of which
    about 1/K lies in its classes. Where G draws the mixture sum_k pi_k p_k of the clients' data and
    the weights are its responsibilities pi_k p_k / p_g, the samples D_k learns from are then
    distributed as p_k: every client plays a GAN against its own part of G. A client's fake term
    weighs sum_i w_ki / B over its target share: a client the rule gives more than its share learns
    harder from those samples and forgives less, one given less forgives more, so the shares return
    to their targets. (Normalising each client's weights to sum 1 instead makes a client with a small
    share the harshest judge of the few samples it gets, and it loses them all: on MNIST Non-OVL F2A
    lost two clients' classes by 1,500 steps; docs/algorithms.md, "What each discriminator learns
    from".) The mean rule's weights, 1/K, give every sample 1/B: the uniform fake term.
    """
    return weights / (shares[:, None] * weights.shape[1])
