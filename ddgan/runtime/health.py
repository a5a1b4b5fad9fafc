"""Non-finite losses: noticed on the device every step, reported at the next log record or checkpoint.

Reading a loss on the host every step would stall a GPU's stream. Instead every rank keeps, on its
device, the first step whose losses were not finite together with what was wrong then, updated
from values every rank holds alike (the exchange brings them); at each log record and before each
checkpoint every rank reads that record once and, if it is set, raises the same
:class:`TrainingError` naming the step and the clients. So every rank stops at the same step with
the same message, and no checkpoint holds a model trained past a NaN.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ddgan.core.errors import TrainingError


class Health:
    def __init__(self, clients: int, device: torch.device, hidden: bool = False):
        """``hidden``: secure aggregation, where only sums are known (one "client", the sum)."""
        self.k, self.hidden = clients, hidden
        # [first bad step (0 = none yet), generator loss, K discriminator losses, K "scores not finite" flags]
        self.record = torch.zeros(2 + 2 * clients, dtype=torch.float64, device=device)

    def observe(self, step: int, d_losses: Tensor, g_loss: Tensor, scores_finite: Tensor) -> None:
        """No host sync: keep this step's values if they are the first non-finite ones."""
        now = torch.cat([torch.full((1,), float(step), dtype=torch.float64, device=self.record.device),
                         g_loss.detach().double().reshape(1), d_losses.detach().double().reshape(-1),
                         (~scores_finite.reshape(-1)).double()])
        bad = ~torch.isfinite(now[1:2 + self.k]).all()
        self.record = torch.where(bad & (self.record[0] == 0), now, self.record)

    def check(self) -> None:
        """Host sync: raise on every rank alike if a non-finite loss was observed."""
        step, g_loss, *rest = self.record.tolist()
        if step == 0:
            return
        d_losses, scores_bad = rest[:self.k], rest[self.k:]
        kept = "stopping, the newest complete checkpoint is kept"
        if self.hidden:
            raise TrainingError(f"step {int(step)}: a client's discriminator loss or scores were not finite or left "
                                f"the fixed-point range (secure aggregation hides whose); {kept}", same_on_all_ranks=True)
        bad_d = [k for k, v in enumerate(d_losses) if not math.isfinite(v)]
        if bad_d:
            raise TrainingError(f"step {int(step)}: the discriminator loss of client(s) {bad_d} is "
                                f"{d_losses[bad_d[0]]}; {kept}", same_on_all_ranks=True)
        culprits = [k for k, flag in enumerate(scores_bad) if flag]
        why = f": client(s) {culprits} scored the generated batch with non-finite values" if culprits else ""
        raise TrainingError(f"step {int(step)}: the generator loss is {g_loss}{why}; {kept}", same_on_all_ranks=True)
