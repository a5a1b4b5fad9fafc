"""Secure aggregation (``comm.exchange: secure``): the clients reveal only sums.

In the feedback exchange every client sees every other client's score of every generated sample;
over many steps that tells it which images the others hold. F2A needs only sums over clients.
With r_k the realness of client k and w_k = exp(lambda (r_k - 1)) (F2A's softmax weight up to a
common factor), per sample:

    A = sum_k w_k,   N = sum_k w_k r_k,   Q = sum_k w_k r_k^2
    D_agg = N / A,   d D_agg / d lambda = Q / A - D_agg^2     (the softmax-weighted variance)

and client k's coefficient d loss / d out_k depends on A, N and its own r_k alone; G needs only
the sum over clients of the gradients w.r.t. x. (``mean``: each coefficient depends on the
client's own scores; only the loss, for the log, is a sum.) Per step:

1. every client encodes its per-sample A, N, Q terms, its D loss and two flags (a value that is not
   finite, a value out of range) in fixed point, adds its pairwise masks and an all_reduce forms
   the sums; every rank computes D_agg, the loss and lambda's gradient from them;
2. every client back-propagates its coefficient through D_k, encodes and masks its gradient
   w.r.t. x, and a reduce forms the sum on the generator rank.

**Fixed point.** v -> round(v * 2^32) as a 64-bit integer; a value must satisfy |v| < 2^24 (a
value that does not, or is not finite, raises the flag: the run stops at the next log record with a
message; gradients are clamped to |v| <= 2^23 and counted in ``secure_clamped``). Sums of up to
127 clients stay below 2^63. Each client's rounding moves a sum by at most 2^-33, so the sums
differ from the exact ones by at most K x 2^-33 (the generator update equals plain feedback F2A
within this; tested). F2A's weights are at least e^-lambda, so lambda_max <= 20 keeps every weight
above the resolution 2^-32 (the config check says so).

**Masks.** At start every client draws an X25519 key pair (the ``cryptography`` package), the
public keys are all-gathered, and every pair (k, j) derives a shared 256-bit key (HKDF-SHA256). For
message m of step t the pair's mask is the ChaCha20 key stream of that key at nonce (t, m), read as
64-bit integers: k adds it and j subtracts it, so the masks cancel in the sum modulo 2^64 exactly,
and what one client hands to the collective, alone, is uniformly distributed. Keys are fresh at
every launch and streams are addressed by (step, message), so no mask is ever used twice, a
resumed run included (its result does not depend on the masks).

**What it protects against.** Honest-but-curious clients and generator rank learn the sums and the
generated batch, nothing else: not another client's scores, D loss or gradient. It does not protect
against malicious clients (they can send anything; see ``comm.robust``, which needs per-client
gradients and so cannot be combined with this), nor survive a client that drops out mid-step: its
masks no longer cancel, the collective times out and the run stops with the usual message
(``comm.timeout_s``); restart it, resuming from the newest checkpoint.
"""
from __future__ import annotations

import struct

import numpy as np
import torch
from torch import Tensor

from ddgan.core.aggregate import RuleInputs
from ddgan.core.losses import g_loss, realness
from ddgan.core.transfer import upload
from ddgan.forgiver.exchange import Verdict
from ddgan.forgiver.layout import GENERATOR_RANK, Layout
from ddgan.roles import ClientGroup
from ddgan.runtime.comm import Comm

SCALE = 2.0 ** 32
RANGE = 2.0 ** 24
_SUMS, _GRADIENTS = 0, 1             # message ids within a step


def encode(values: Tensor) -> tuple[Tensor, Tensor]:
    """Fixed point, and a 0-d count of values that are not finite or out of range (encoded as 0)."""
    ok = torch.isfinite(values) & (values.abs() < RANGE)
    safe = torch.where(ok, values, torch.zeros_like(values))
    return torch.round(safe.double() * SCALE).to(torch.int64), (~ok).sum()


def decode(ints: Tensor, dtype: torch.dtype) -> Tensor:
    return (ints.double() / SCALE).to(dtype)


def public_bytes(private) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def pair_keys(me: int, private, publics: list[bytes]) -> dict[int, bytes]:
    """Client ``me``'s 256-bit key with every other client j: HKDF-SHA256 of the X25519 secret of
    ``private`` and j's public key, bound to the pair's indices."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    keys = {}
    for j, public in enumerate(publics):
        if j != me:
            shared = private.exchange(X25519PublicKey.from_public_bytes(public))
            info = b"ddgan secure aggregation %d-%d" % (min(me, j), max(me, j))
            keys[j] = HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(shared)
    return keys


class Masks:
    """One client's pairwise mask streams, from the keys it shares with every other client."""

    def __init__(self, me: int, keys: dict[int, bytes]):
        self.me, self.keys = me, keys

    @classmethod
    def agree(cls, comm: Comm, layout: Layout) -> "list[Masks]":
        """Collective (all_gather of 32-byte public keys): X25519 of each client this rank hosts
        with every other client; one :class:`Masks` per hosted client."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        hosted = layout.clients_of(comm.rank)
        privates = [X25519PrivateKey.generate() for _ in hosted]
        mine = torch.zeros(layout.per_rank, 32, dtype=torch.uint8)
        for j, private in enumerate(privates):
            mine[j] = torch.frombuffer(bytearray(public_bytes(private)), dtype=torch.uint8)
        publics = [bytes(row.tolist()) for row in layout.client_rows(comm.all_gather(mine, "public keys"))]
        return [cls(me, pair_keys(me, private, publics)) for me, private in zip(hosted, privates)]

    def stream(self, peer: int, step: int, message: int, n: int) -> np.ndarray:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

        nonce = struct.pack("<IQI", 0, step, message)         # block counter 0, then (step, message)
        encryptor = Cipher(algorithms.ChaCha20(self.keys[peer], nonce), mode=None).encryptor()
        return np.frombuffer(encryptor.update(bytes(8 * n)), dtype=np.uint64)

    def mask(self, step: int, message: int, n: int) -> Tensor:
        """The sum of this client's n-element masks, modulo 2^64, as int64: + for each higher peer,
        - for each lower one."""
        total = np.zeros(n, dtype=np.uint64)
        for peer in self.keys:
            s = self.stream(peer, step, message, n)
            total = total + s if peer > self.me else total - s        # uint64 arithmetic wraps modulo 2^64
        return torch.from_numpy(total.view(np.int64))


def _per_sample_loss(loss: str, agg: Tensor) -> Tensor:
    """G's loss against the aggregate realness D_agg (F2A's objective, per sample)."""
    return -torch.log(agg) if loss == "bce" else 0.5 * (agg - 1.0) ** 2


def by_secure(comm: Comm, layout: Layout, group: ClientGroup | None, x: Tensor, d_losses: Tensor, rule: str,
              inputs: RuleInputs, masks: list[Masks]) -> Verdict:
    """Collective (all_reduce, reduce): the secure exchange; ``group`` (this rank's clients, one
    :class:`Masks` each) is None on a dedicated generator rank. A rank adds its clients' masked
    values before they leave it: the masks between two co-hosted clients cancel there, and the
    host, which computes its guests' scores itself, learns nothing new. See the module docstring."""
    b, k, loss = x.shape[0], layout.clients, inputs.loss
    x_req = x.detach().requires_grad_(True)
    own = group.scores(x_req) if group is not None else x.new_zeros(0, b)
    lam = inputs.lam.detach()
    # -- 1. masked sums: F2A's A, N, Q per sample (mean: the G loss), the D loss, two flags
    width = 3 * b if rule == "f2a" else 1
    payload = torch.zeros(width + 3, dtype=torch.int64, device=x.device)
    for row, d_loss, mask in zip(own.detach(), d_losses, masks):
        r = realness(loss, row)
        w = torch.exp(lam * (r - 1.0))
        parts = [w, w * r, w * r * r] if rule == "f2a" else [_g_loss_sum(loss, row)]
        enc, bad = encode(torch.cat([*(p.reshape(-1) for p in parts), d_loss.reshape(1)]))
        payload += torch.cat([enc, bad.reshape(1), (~torch.isfinite(row)).any().long().reshape(1)])
        payload += upload(mask.mask(comm.step, _SUMS, payload.numel()), payload.device)
    total = comm.all_reduce(payload, "masked sums")
    sums, flags = decode(total[:width + 1], x.dtype), total[width + 1:]
    # -- 2. every rank: D_agg, G's loss and lambda's gradient from the sums alone
    ok = flags.sum() == 0
    if rule == "f2a":
        A, N, Q = sums[:b], sums[b:2 * b], sums[2 * b:3 * b]
        agg = N / A
        g_loss = _per_sample_loss(loss, agg).mean()
        slope = -1.0 / agg if loss == "bce" else agg - 1.0
        lam_grad = (slope * (Q / A - agg * agg)).mean() if inputs.lam.requires_grad else None
    else:
        g_loss, lam_grad = sums[0] / (k * b), None
    nan = torch.full((), float("nan"), dtype=x.dtype, device=x.device)
    d_losses = torch.where(ok, sums[width] / k, nan).reshape(1)
    verdict = Verdict(d_losses, torch.where(ok, g_loss, nan), ok.reshape(1), lam_grad=lam_grad)
    # -- 3. each client's gradient w.r.t. x, masked, summed on its rank, then on the generator rank
    grad = torch.zeros(x.numel() + 1, dtype=torch.int64, device=x.device)
    for j, mask in enumerate(masks):
        out = own[j].detach().requires_grad_(True)
        if rule == "f2a":
            r = realness(loss, out)
            w = torch.exp(lam * (r - 1.0))
            mine = (A - w.detach() + w, N - (w * r).detach() + w * r)      # the sums as functions of my scores
            mean_loss = _per_sample_loss(loss, mine[1] / mine[0]).mean()
        else:
            mean_loss = _g_loss_sum(loss, out) / (k * b)
        (coef,) = torch.autograd.grad(mean_loss, out)
        (grad_x,) = torch.autograd.grad(own[j], x_req, coef, retain_graph=j + 1 < len(masks))
        limit = RANGE / 2
        enc, bad = encode(grad_x.clamp(-limit, limit).reshape(-1))
        clamped = (grad_x.abs() > limit).sum() + bad
        grad += torch.cat([enc, clamped.reshape(1)]) + upload(mask.mask(comm.step, _GRADIENTS, x.numel() + 1), x.device)
    comm.reduce_sum(grad, GENERATOR_RANK, "masked gradients w.r.t. the generated batch")
    if comm.rank == GENERATOR_RANK:
        verdict.grad_x = decode(grad[:-1], x.dtype).view_as(x)
        verdict.logged["secure_clamped"] = grad[-1]
    return verdict


def _g_loss_sum(loss: str, out: Tensor) -> Tensor:
    return g_loss(loss, out).sum().reshape(1)
