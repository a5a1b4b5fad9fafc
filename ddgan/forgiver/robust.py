"""The robust exchange (``comm.robust: true``): a dishonest client can neither capture nor poison G.

F2U trusts every client's word, and the plain feedback exchange lets the generator rank see only
the sum of the clients' gradients. Here the generator rank is the only one that sees scores and
gradients, and it checks them:

1. **Hidden checks in the batch.** The broadcast batch holds, at positions only the generator rank
   knows, ``defence.canaries`` *canaries* (generated samples with their pixels scrambled: no honest
   D trained against G calls them real, and every client trains on them as fakes like the rest)
   and ``defence.probes`` *probes*: a fresh sample x_p and x_p +- eps u for a random unit direction
   u. A client's scores go to the generator rank alone (a gather); the rule runs there; each client
   receives only its own coefficients (a scatter) and returns its gradient w.r.t. the batch (a
   gather), with coefficient 1 on every probe centre. An honest client's gradient at x_p along u
   matches its own central difference (s(x_p + eps u) - s(x_p - eps u)) / 2 eps.
2. **Suspicion.** Per client and step, the evidence is the larger of two fractions: of the canaries
   it finds realer, by more than 1/2, than the median of the other clients does (*canaries*), and
   of the probes whose ratio of central difference to gradient lies outside [1/2, 2] (*probes*: a
   constant or random score fails it as surely as a scaled or flipped gradient). The suspicion is
   its exponential average (memory 0.9, about ten steps). It is logged (``suspicion`` in
   metrics.jsonl). After ``defence.warmup`` steps a client whose suspicion exceeds
   ``defence.threshold`` is *named*: one log line says who, when and by which check, and from then
   on its scores leave the rule and its gradients are discarded (``named`` in metrics.jsonl). The
   generator rank looks every ``CHECK_EVERY`` steps (one host read).

   The canaries are judged against the peers, not against the client's own scores of G's samples:
   scrambled images are not reliably less real than a struggling G's samples. On the tests'
   3-client digits runs, honest Ds ranked the canaries above 90 % of their generated samples for
   tens of steps (an own-ranking check named two honest clients, suspicion 0.5-0.85), and once an
   inverted liar steered G, above all of them. A correlation with the peers fails too: under
   non-iid shards honest Ds' scores anti-correlate (Spearman -0.3 to -0.5 after 100 steps).

   **The swap check (MD-GAN, ``algo.swap_every``).** A D moves whole from one client to another at
   a swap, so on the same images it must answer alike on both sides of it: the batch after a swap
   holds the swap step's canaries and probes again, and the generator rank correlates each D's
   scores of them before (its last holder) and after (its new holder). A client whose two pairs
   (the D it gave, the D it got) both correlate negatively, while each partner's other pair agrees,
   is named at the next look, whatever the canaries say. On digits (5 clients) an inverted liar's
   pairs correlated at -0.94 to -0.995, honest pairs at +0.93 to +0.997. This catches a liar whose
   lie is a true function of x behind Ds too weak for the canaries (MD-GAN's Ds near p = 1/2 on
   everything): such an ``inverted`` liar was named after 550 steps without it (MNIST). A fixed
   point or a 2-cycle of the permutation convicts nobody (two clients accuse each other), so a swap
   convicts a given liar with probability 3/5 for 5 clients, the next swap with the same again.
3. **Gradient bound.** Every gradient row g_ki (client k, sample i) is divided by the coefficient
   c_ki it was asked for; the median of these norms over the active clients bounds each row at
   ``defence.clip`` x median x |c_ki|. A client that scales its gradient by 100 moves G no more
   than a client ``clip`` times steeper than the typical one.
4. **F2A's lambda** (discriminator-side objective, :mod:`ddgan.forgiver.temperature`): the clients' terms
   arrive separately (a gather of one number each), a named client's term, scores and D leave the
   objective, and each term is bounded at ``clip`` x the median magnitude. Before this, a named
   ``always_real`` client still dragged lambda from 2.6 to 0.9, towards averaging, and G lost
   most shapes (digits, 600 steps: honest-class fid_classifier 100, against 27.5 without the liar).

Cost: ``canaries + 3 probes`` more images per batch (every client's D step and scoring; 10 of 74
by default), and per step the generator rank receives K score rows and K gradient batches
separately (a gather instead of a reduce: the same bytes per client, K times the received bytes
at the generator rank), plus one scatter of K x N coefficients. The canary positions and probe
directions come from a stream only the generator rank knows (``defence.seed``, or the OS's
randomness); a client that learned to spot scrambled images or near-duplicate triples could
answer them honestly while lying elsewhere: the checks raise the bar, they do not prove honesty.
Needs a discriminator whose score of a sample depends on that sample alone (not d_norm batch).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor

from ddgan.core import seeds
from ddgan.core.aggregate import RuleInputs
from ddgan.core.losses import realness
from ddgan.core.models import frozen_forward
from ddgan.core.transfer import upload
from ddgan.forgiver.attacks import Attack
from ddgan.forgiver.exchange import Verdict
from ddgan.forgiver.layout import GENERATOR_RANK, Layout
from ddgan.roles import ClientGroup
from ddgan.runtime.comm import Comm

if TYPE_CHECKING:
    from ddgan.core.config import Config

MEMORY = 0.9          # suspicion's exponential average keeps 0.9 of yesterday: about ten steps
CHECK_EVERY = 10      # steps between the generator rank's host reads of the suspicion
PROBE_EPS = 1.0       # L2 norm of a probe's step (an image's norm is about 20 on MNIST)
PROBE_BAND = (0.5, 2.0)
CANARY_MARGIN = 0.5   # realness above the peers' median that makes a canary answer a lie
CHECKS = {"canaries": "it found canaries realer than its peers did",
          "probes": "its gradients disagree with its own scores on the probes"}
SWAP_CHECK = ("its scores after the swap contradict those its D's last holder gave, and its D's next "
              "holder contradicts its own")


def lower_median(x: Tensor) -> Tensor:
    """``x.median(0).values`` (the lower of the two middle values for an even count) through a sort:
    torch's median along a dimension has no deterministic CUDA kernel (train.deterministic)."""
    return x.sort(0).values[(x.shape[0] - 1) // 2]


@dataclass
class Echo:
    """The checks of a swap step, shown again in the next batch: each D's scores of them on both sides
    of the swap (generator rank only)."""

    step: int
    items: tuple[Tensor, Tensor, Tensor]   # canaries, probe centres, probe directions u
    scores: Tensor | None = None           # K x M: every client's scores of the check items at ``step``


@dataclass
class Plan:
    """Where the checks sit in one broadcast batch (generator rank only). Items in order: B generated,
    C canaries, P probe centres, P centres + eps u, P centres - eps u; ``perm[i]`` is item i's position."""

    perm: Tensor
    generated: int
    canaries: int
    probes: int
    u: Tensor                          # P x C x H x W unit directions

    def items(self, rows: Tensor) -> Tensor:
        """Per-client rows (K x N x ...) from batch order to item order."""
        return rows[:, self.perm]

    def split(self, items: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        b, c, p = self.generated, self.canaries, self.probes
        cuts = [b, c, p, p, p]
        return tuple(items.split(cuts, dim=1))


def positions(clients: list[int], device: torch.device) -> Tensor:
    """A set of clients as an index on the device: made once per set and kept, since a list index
    would be copied over at every use."""
    return upload(torch.tensor(clients, dtype=torch.long), device)


class Counted:
    """The clients still counted (not named), as every rank's host knows them, for what selects
    their discriminators on the host (lambda's copies). Names change only when the generator rank
    looks (:meth:`Defence.name_suspects`, every CHECK_EVERY steps after the warm-up), so the
    verdict's flags are read on the step after each look, and at a run's first step (a resumed
    run may have named clients before), not every step."""

    def __init__(self, cfg: "Config", device: torch.device):
        self.warmup, self.device = cfg.defence.warmup, device
        self.ids: list[int] | None = None       # set, with ``index``, by the first update
        self.index: Tensor | None = None

    def update(self, step: int, active: Tensor) -> list[int]:
        """The counted clients at ``step``, from ``active`` (K flags, every rank) where they may have changed."""
        looked = step - 1 > self.warmup and (step - 1) % CHECK_EVERY == 0
        if self.ids is None or looked:
            ids = [k for k, counted in enumerate(active.tolist()) if counted]
            if ids != self.ids:
                self.ids, self.index = ids, positions(ids, self.device)
        return self.ids


def checks(cfg: "Config") -> int:
    """Images the robust exchange adds to every batch."""
    return cfg.defence.canaries + 3 * cfg.defence.probes if cfg.comm.robust else 0


class Defence:
    """The generator rank's side: the secret stream, the checks, the suspicion and who is named."""

    def __init__(self, cfg: "Config", clients: int, G: torch.nn.Module):
        self.cfg, self.k, self.G = cfg.defence, clients, G
        self.swap_every, self.swap_seed = cfg.algo.swap_every, cfg.train.seed
        seed = cfg.defence.seed if cfg.defence.seed >= 0 else int.from_bytes(os.urandom(8), "little") >> 1
        self.rng = torch.Generator().manual_seed(seed)
        self.suspicion = torch.zeros(clients, dtype=torch.float64, device=next(G.parameters()).device)
        self.named: dict[int, int] = {}            # client -> the step it was named at
        # each check's own exponential average, only to say in the log line which check named a client
        self.by_check = {name: torch.zeros_like(self.suspicion) for name in CHECKS}
        self.echo: Echo | None = None
        self.contradicted = torch.zeros(clients, dtype=torch.bool, device=self.suspicion.device)   # since the last look
        self._rows: dict[tuple[int, ...], Tensor] = {}

    @property
    def active(self) -> list[int]:
        return [k for k in range(self.k) if k not in self.named]

    def rows(self, clients: list[int]) -> Tensor:
        """``clients`` as an index on the device (:func:`positions`), kept per set: the sets change
        only when a client is named."""
        key = tuple(clients)
        if key not in self._rows:
            self._rows[key] = positions(clients, self.suspicion.device)
        return self._rows[key]

    def swaps(self, step: int) -> bool:
        return self.swap_every > 0 and step % self.swap_every == 0

    def echoes(self, step: int) -> bool:
        """Whether ``step``'s batch repeats the checks of the swap just before it."""
        return self.echo is not None and self.echo.step == step - 1

    def compose(self, x: Tensor, step: int) -> tuple[Tensor, Plan]:
        """The broadcast batch: the generated ``x`` with canaries and probes hidden in it (right after
        an MD-GAN swap, the swap step's own, so that every D scores them on both sides of the swap)."""
        if self.echoes(step):
            scrambled, centres, u = self.echo.items
        else:
            scrambled, centres, u = self._draw_checks(x)
        if self.swaps(step):
            self.echo = Echo(step, (scrambled, centres, u))
        with torch.no_grad():
            items = torch.cat([x.detach(), scrambled, centres, centres + PROBE_EPS * u, centres - PROBE_EPS * u])
        perm = upload(torch.randperm(len(items), generator=self.rng), x.device)
        batch = torch.empty_like(items)
        batch[perm] = items
        return batch, Plan(perm, x.shape[0], len(scrambled), len(centres), u)

    @torch.no_grad()
    def _draw_checks(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Fresh canaries (scrambled samples of ``x``), probe centres from G and unit directions."""
        b, c, p = x.shape[0], self.cfg.canaries, self.cfg.probes
        pixels = x[0].numel()
        picks = torch.randint(b, (c,), generator=self.rng)
        orders = torch.stack([torch.randperm(pixels, generator=self.rng) for _ in range(c)]) if c else None
        scrambled = x[upload(picks, x.device)].flatten(1).gather(1, upload(orders, x.device)).view(c, *x.shape[1:]) \
            if c else x[:0]
        z = upload(torch.randn(p, self.G.spec.z_dim, generator=self.rng, dtype=torch.float32), x.device).to(x.dtype)
        centres = frozen_forward(self.G, z) if p else x[:0]
        u = upload(torch.randn(p, *x.shape[1:], generator=self.rng, dtype=torch.float32), x.device).to(x.dtype)
        u = u / u.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
        return scrambled.detach(), centres, u

    def observe(self, loss: str, plan: Plan, scores: Tensor, grads: Tensor, step: int) -> None:
        """No host read: fold this step's evidence (K x N scores, K x N x image gradients, item order)
        into the suspicion."""
        checked = scores[:, plan.generated:]
        if self.echoes(step) and checked.shape[1]:
            caught = self._contradicted(self.echo.scores, checked, seeds.swap_permutation(self.swap_seed, step - 1, self.k))
            self.contradicted |= caught
            self.suspicion = torch.where(caught, torch.ones_like(self.suspicion), self.suspicion)
        if self.swaps(step):
            self.echo.scores = checked.detach()
        _, canary, _, plus, minus = plan.split(scores)
        evidence = {name: torch.zeros_like(self.suspicion) for name in CHECKS}
        if plan.canaries and len(self.active) > 1:
            r = realness(loss, canary)
            # the median of the other active clients: a weak honest D may find canaries half real,
            # but not much realer than its peers do
            peers = torch.stack([lower_median(r[self.rows([j for j in self.active if j != k])]) for k in range(self.k)])
            evidence["canaries"] = (r - peers > CANARY_MARGIN).double().mean(1)
        if plan.probes:
            start = plan.generated + plan.canaries
            g_centre = grads[:, start:start + plan.probes].flatten(2)                    # K x P x pixels
            along = (g_centre * plan.u.flatten(1)[None]).sum(-1)                        # K x P
            ratio = (plus - minus) / (2 * PROBE_EPS) / along
            off = ~((ratio > PROBE_BAND[0]) & (ratio < PROBE_BAND[1]))                  # NaN and inf are off too
            evidence["probes"] = off.double().mean(1)
        for name, e in evidence.items():
            self.by_check[name] = MEMORY * self.by_check[name] + (1 - MEMORY) * e
        strongest = torch.stack(list(evidence.values())).max(0).values
        self.suspicion = MEMORY * self.suspicion + (1 - MEMORY) * strongest

    def _contradicted(self, before: Tensor, after: Tensor, perm: list[int]) -> Tensor:
        """The clients a swap convicts. Pair a: D_a, scored by client a before the swap and by perm[a]
        after it; the pair agrees when the two score vectors correlate positively. A client whose
        two pairs (the D it gave, the D it got) both disagree, while each of its two partners has
        another pair that agrees, is the one who lied (a fixed point or a 2-cycle convicts nobody)."""
        dev = lambda s: s - s.mean(1, keepdim=True)        # noqa: E731
        b, a = dev(before), dev(after[perm])
        agree = (b * a).sum(1) > 0                         # the sign of the correlation of pair k
        inv = [perm.index(k) for k in range(self.k)]       # the pair whose D client k received
        moved = torch.tensor([perm[k] != k and inv[k] != perm[k] for k in range(self.k)], device=agree.device)
        # the giver's other pair is the one whose D it received; the receiver's, the one of the D it gave
        partners_agree = agree[[inv[inv[k]] for k in range(self.k)]] & agree[[perm[k] for k in range(self.k)]]
        caught = moved & ~agree & ~agree[inv] & partners_agree
        caught[list(self.named)] = False
        return caught

    def name_suspects(self, step: int) -> None:
        """Host read, every CHECK_EVERY steps after the warm-up: name the clients above the threshold."""
        if step <= self.cfg.warmup or step % CHECK_EVERY:
            return
        contradicted, self.contradicted = self.contradicted.tolist(), torch.zeros_like(self.contradicted)
        for k, level in enumerate(self.suspicion.tolist()):
            if k not in self.named and (level > self.cfg.threshold or contradicted[k]) and len(self.active) > 1:
                self.named[k] = step
                if contradicted[k]:
                    why = f"the swap check: {SWAP_CHECK}"
                else:
                    check = max(CHECKS, key=lambda name: self.by_check[name][k].item())
                    why = f"suspicion {level:.2f} > defence.threshold = {self.cfg.threshold:g}: {CHECKS[check]}"
                print(f"defence: step {step}: client {k} named ({why}); its scores and gradients no longer reach G",
                      file=sys.stderr, flush=True)

    def bound(self, grads: Tensor, coef: Tensor, active: list[int]) -> Tensor:
        """Each row g_ki scaled down to at most clip x median_k'i'(|g_k'i'| / |c_k'i'|) x |c_ki|."""
        norms = grads.flatten(2).norm(dim=2)                                         # K x B
        steep = torch.where(coef != 0, norms / coef.abs(), torch.full_like(norms, float("nan")))
        typical = torch.nanmedian(steep[self.rows(active)])
        cap = self.cfg.clip * typical * coef.abs()
        scale = torch.where(norms > cap, cap / norms, torch.ones_like(norms))
        return grads * torch.nan_to_num(scale, nan=1.0).view(*scale.shape, *[1] * (grads.dim() - 2))

    def state_dict(self) -> dict:
        return {"rng": self.rng.get_state(), "suspicion": self.suspicion, "named": dict(self.named),
                "by_check": dict(self.by_check), "contradicted": self.contradicted,
                "echo": None if self.echo is None else vars(self.echo)}

    def load_state_dict(self, state: dict) -> None:
        self.rng.set_state(state["rng"])
        self.suspicion = state["suspicion"].to(self.suspicion)
        self.named = {int(k): int(v) for k, v in state["named"].items()}
        # a checkpoint from before the per-check averages resumes with them at zero (they only word the log line)
        by_check = state.get("by_check", {})
        self.by_check = {name: by_check.get(name, torch.zeros_like(self.suspicion)).to(self.suspicion)
                         for name in CHECKS}
        # and from before the swap check with no swap to check
        self.contradicted = state.get("contradicted", torch.zeros_like(self.contradicted)).to(self.contradicted)
        echo = state.get("echo")
        # checkpoints load on the CPU; the echoed checks rejoin the batch on the defence's device
        device = self.suspicion.device
        self.echo = None if echo is None else Echo(
            echo["step"], tuple(t.to(device) for t in echo["items"]),
            None if echo.get("scores") is None else echo["scores"].to(device))


def by_robust(comm: Comm, layout: Layout, group: ClientGroup | None, x: Tensor, d_losses: Tensor, rule: Callable,
              inputs: RuleInputs, attacks: list[Attack | None], defence: Defence | None, plan: Plan | None) -> Verdict:
    """Collective (gather, scatter, gather): the robust exchange; ``defence`` and ``plan`` live on
    the generator rank, ``group`` (this rank's clients) is None on a dedicated one. Co-hosted
    clients send a row and a gradient each, so the checks name a co-hosted liar like any other.
    See the module docstring."""
    n, k, per = x.shape[0], layout.clients, layout.per_rank
    x_req = x.detach().requires_grad_(True)
    own = group.scores(x_req) if group is not None else x.new_zeros(0, n)
    sent = torch.stack([row if a is None else a.scores(row, comm.step) for row, a in zip(own.detach(), attacks)]) \
        if attacks else own.detach()
    mine = x.new_zeros(per, n + 1)
    mine[:len(own)] = torch.cat([sent, d_losses.reshape(-1, 1)], 1)
    rows = comm.gather(mine, GENERATOR_RANK, "realness scores")
    # every client's row: its coefficients on the batch, then the round's status (so all ranks see
    # the same losses and stop together on a NaN, and know who is still counted)
    status_width = 1 + 3 * k
    out = weights = lam_grad = coef = scores = None
    to_send = None
    if comm.rank == GENERATOR_RANK:
        rows = layout.client_rows(rows)
        scores, d_losses = plan.items(rows[:, :n]), rows[:, n]
        out = scores[:, :plan.generated].clone().requires_grad_(True)
        active = defence.rows(defence.active)
        shares = inputs.shares[active] / inputs.shares[active].sum() if inputs.shares is not None else None
        g_loss, w_active = rule(out[active], replace(inputs, shares=shares))
        learn = inputs.lam is not None and inputs.lam.requires_grad
        grads = torch.autograd.grad(g_loss, [out, inputs.lam] if learn else [out])
        coef, lam_grad = grads[0], grads[1] if learn else None
        weights = out.new_zeros(out.shape)
        weights[active] = w_active
        probe = [coef.new_ones(k, plan.probes)] if plan.probes else []
        items = torch.cat([coef, coef.new_zeros(k, plan.canaries), *probe, coef.new_zeros(k, 2 * plan.probes)], 1)
        batch_coef = torch.empty_like(items)
        batch_coef[:, plan.perm] = items
        counted = torch.zeros_like(d_losses)
        counted[active] = 1
        status = torch.cat([g_loss.detach().reshape(1), d_losses, torch.isfinite(scores).all(1).to(d_losses.dtype),
                            counted])
        # a rank that hosts fewer clients (or none: a dedicated generator rank) still needs the status
        to_send = torch.cat([layout.rank_rows(batch_coef), status.expand(layout.world, per, -1)], 2)
    mine = comm.scatter(to_send, x.new_empty(per, n + status_width), GENERATOR_RANK, "coefficients")
    grads_x = x.new_zeros(per, *x.shape)
    for j, attack in enumerate(attacks):
        (grads_x[j],) = torch.autograd.grad(own[j], x_req, mine[j, :n], retain_graph=j + 1 < len(attacks))
        if attack is not None:
            grads_x[j] = attack.gradient(grads_x[j], comm.step)
    gathered = comm.gather(grads_x, GENERATOR_RANK, "gradients w.r.t. the generated batch")
    status = mine[0, n:]
    verdict = Verdict(status[1:1 + k], status[0], status[1 + k:1 + 2 * k] > 0, None if out is None else out.detach(),
                      weights, lam_grad=lam_grad, active=status[1 + 2 * k:] > 0)
    if comm.rank == GENERATOR_RANK:
        per_client = plan.items(layout.client_rows(gathered))
        defence.observe(inputs.loss, plan, scores, per_client, comm.step)
        bounded = defence.bound(per_client[:, :plan.generated], coef.detach(), defence.active)
        verdict.grad_x = bounded[defence.rows(defence.active)].sum(0)
        verdict.logged["suspicion"] = defence.suspicion
    return verdict
