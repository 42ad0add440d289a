"""DQN's Q-network (agents/dqn.py): an encoder (agents/encoders.py) and a head of plain, dueling (Wang et al. 2016),
distributional (C51, Bellemare et al. 2017) and noisy (Fortunato et al. 2018) variants, combinable as in Rainbow
(Hessel et al. 2018)."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from agents.accel import autocast, nhwc
from agents.noisy import NoisyLinear


class QNetwork(nn.Module):
    """Encoder + linear head; the dueling head splits it into V(s) + A(s, a) - mean_a A(s, a) (Wang et al. 2016).

    With a `support` (C51, Bellemare et al. 2017) the head gives num_atoms logits per action, the dueling streams
    combine per atom before the softmax over atoms (Hessel et al. 2018), and Q is the mean of the distribution.
    With `noisy_sigma0` the head's layers (and the value layer) are NoisyLinear (agents/noisy.py); the encoder,
    Nature CNN's 512-unit layer included, stays deterministic. amp="bf16" runs the forward pass under bf16
    autocast; Q-values and log-probabilities come out fp32, the softmax computed in fp32."""

    def __init__(
        self,
        encoder: nn.Module,
        n_actions: int,
        dueling: bool = False,
        amp: str = "none",
        support: torch.Tensor | None = None,
        noisy_sigma0: float | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.n_actions, self.dueling, self.amp = n_actions, dueling, amp
        self.num_atoms = 1 if support is None else len(support)
        # the atoms' values come from the config, not the checkpoint
        self.register_buffer("support", support, persistent=False)
        linear = nn.Linear if noisy_sigma0 is None else partial(NoisyLinear, sigma0=noisy_sigma0)
        self.head = linear(encoder.output_dim, n_actions * self.num_atoms)
        if dueling:
            self.value = linear(encoder.output_dim, self.num_atoms)

    def forward(self, obs: torch.Tensor, log_probs: bool = False) -> torch.Tensor:
        """Q(s, .) (B, A); with log_probs (C51 only) the log-probabilities of the atoms instead (B, A, atoms)."""
        with autocast(self.amp, obs.device.type):
            h = self.encoder(nhwc(obs))  # (B, features); images channels-last, as the weights (make_q_network)
            logits = self.head(h).view(-1, self.n_actions, self.num_atoms)  # (B, A, atoms); atoms = 1 without C51
            if self.dueling:  # Wang et al. 2016, eq. (9): the mean keeps V and A identifiable
                value = self.value(h).view(-1, 1, self.num_atoms)  # (B, 1, atoms)
                logits = value + logits - logits.mean(dim=1, keepdim=True)
        logits = logits.float()
        if self.support is None:
            return logits.squeeze(2)
        if log_probs:
            return logits.log_softmax(dim=2)
        return (logits.softmax(dim=2) * self.support).sum(dim=2)  # Q = E[Z] (B, A)

    def dist(self, obs: torch.Tensor) -> torch.Tensor:
        """C51's log-probabilities (B, A, atoms), through __call__ so that a compiled forward serves the update too."""
        return self(obs, log_probs=True)
