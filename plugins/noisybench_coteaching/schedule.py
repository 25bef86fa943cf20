"""The forget-rate schedule of the Co-teaching family's code (Co-teaching+, JoCoR), shared by their plugins.

Their ``main.py`` builds ``rate_schedule = np.ones(n_epoch) * tau`` with its first T_k
entries replaced by ``np.linspace(0, tau ** c, T_k)``, and trains epoch ``e`` (their loop
runs e = 1 … n_epoch − 1 after an evaluation of the untrained networks as "epoch 0") with
``rate_schedule[e]``. noisybench counts epochs from 1 too, so its epoch e is theirs.
"""

from __future__ import annotations

import numpy as np


def authors_forget_rate(epoch: int, tau: float, num_gradual: int, exponent: float = 1.0) -> float:
    """The fraction of a batch left out in ``epoch`` (from 1): ``linspace(0, τ^c, T_k)[epoch]``
    while ``epoch < T_k``, then τ; computed with numpy, so it equals the authors' value bit for bit."""
    if epoch >= num_gradual:
        return float(tau)
    return float(np.linspace(0, tau ** exponent, num_gradual)[epoch])
