"""A tabular MDP prepared once for repeated Bellman backups, shared by the planners (planning.py) and the
gamma-1 machinery (ssp.py); the notation for P, R and gamma is planning.py's."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import torch

Tensor = torch.Tensor
ENDS = 1e-6  # a row of P summing to less than 1 - ENDS can end the episode (load_npz's tolerance for 1)


class Model(NamedTuple):
    """An MDP prepared once for repeated backups: P as a (A*S, S) matrix, dense or sparse CSR."""

    P: Tensor  # dense (1 or B, A*S, S) or sparse CSR (A*S, S)
    R: Tensor  # (B, S, A)
    gamma: Tensor  # (B,)
    leak: Tensor  # (B,) bool: some row sums to less than 1 (episodes can end)
    row_sums: Tensor  # (1 or B, S, A): sum_s' P(s'|s, a), so that backup(V + c) = backup(V) + gamma c row_sums
    batched: bool  # whether the caller passed a batch (outputs keep the B axis)


def prepare(P: Tensor, R: Tensor, gamma: float | Tensor) -> Model:
    """Reshape P to (A*S, S) rows (sparse: CSR, built from COO indices in O(nnz)), broadcast the batch."""
    batched = R.dim() == 3 or (P.dim() == 4) or (torch.is_tensor(gamma) and gamma.dim() == 1)
    S, A = R.shape[-2:]
    if P.is_sparse or P.layout == torch.sparse_csr:
        if P.dim() == 3:  # (A, S, S) COO -> (A*S, S): row = a*S + s
            P = P.coalesce()
            a, s, s2 = P.indices()
            P = torch.sparse_coo_tensor(torch.stack([a * S + s, s2]), P.values(), (A * S, S), check_invariants=False)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": CSR @ dense is all we use
            warnings.simplefilter("ignore", UserWarning)
            P = P.to_sparse_csr() if P.layout != torch.sparse_csr else P
    else:
        P = P.reshape(-1, A * S, S) if P.dim() == 4 else P.reshape(1, A * S, S)
    row_sums = matmul(P, torch.ones(1, S, dtype=R.dtype, device=R.device))  # (1 or B, A*S)
    B = max(
        P.shape[0] if P.layout == torch.strided else 1,
        R.shape[0] if R.dim() == 3 else 1,
        gamma.numel() if torch.is_tensor(gamma) else 1,
    )
    gamma = torch.as_tensor(gamma, dtype=R.dtype, device=R.device).reshape(-1).expand(B)
    leak = (row_sums < 1 - ENDS).any(-1).expand(B)
    row_sums = row_sums.reshape(-1, A, S).transpose(1, 2)
    return Model(P, R.reshape(-1, S, A).expand(B, S, A), gamma, leak, row_sums, batched)


def matmul(P: Tensor, V: Tensor) -> Tensor:
    """P V for every row a*S + s: dense (1 or B, A*S, S) or sparse (A*S, S) P, V (B, S) -> (B, A*S)."""
    if P.layout != torch.strided:
        return (P @ V.T.contiguous()).T
    if P.shape[0] == 1:  # one P for the whole batch: a single pass over its bytes serves every column
        return _rows_in_parallel(P[0], V.T).T
    return (P @ V.unsqueeze(-1)).squeeze(-1)


_POOL: ThreadPoolExecutor | None = None


def _rows_in_parallel(M: Tensor, X: Tensor) -> Tensor:
    """M (N, S) @ X (S, B) with the rows split over torch's CPU threads when B is small: MKL's
    matrix-vector product runs on one thread, and one core does not saturate memory bandwidth
    (S=2000, A=8 float64 on 2 cores: 14-19 ms on one thread, 9 ms split; scripts/bench_planning.py)."""
    threads = torch.get_num_threads()
    if M.device.type != "cpu" or threads == 1 or X.shape[1] > 4 or M.shape[0] < 4096 * threads:
        return M @ X
    global _POOL
    if _POOL is None or _POOL._max_workers != threads:
        _POOL = ThreadPoolExecutor(threads, thread_name_prefix="planning")
    out = torch.empty(M.shape[0], X.shape[1], dtype=torch.promote_types(M.dtype, X.dtype))
    jobs = [_POOL.submit(torch.mm, rows, X, out=part) for rows, part in zip(M.chunk(threads), out.chunk(threads))]
    for job in jobs:
        job.result()  # torch ops release the GIL: the chunks run at once
    return out


def backup(model: Model, V: Tensor) -> Tensor:
    """One Bellman backup (Puterman eq. 6.2.1): Q(s, a) = r(s, a) + gamma sum_s' P(s'|s, a) V(s').
    V (B, S) -> Q (B, S, A)."""
    B, S, A = model.R.shape
    PV = matmul(model.P, V)  # (B, A*S)
    return model.R + model.gamma[:, None, None] * PV.reshape(B, A, S).transpose(1, 2)


def _policy_rows(model: Model, policy: Tensor) -> tuple[Tensor, Tensor]:
    """P_pi (B, S, S) and r_pi (B, S) of a deterministic policy (B, S), from a dense P."""
    B, S, A = model.R.shape
    rows = policy * S + torch.arange(S, device=policy.device)  # (B, S): row a*S + s
    P = model.P.expand(B, -1, -1)
    P_pi = torch.gather(P, 1, rows.unsqueeze(-1).expand(B, S, S))  # (B, S, S)
    r_pi = model.R.gather(2, policy.unsqueeze(-1)).squeeze(-1)  # (B, S)
    return P_pi, r_pi


def evaluate(model: Model, policy: Tensor, method: str, tolerance: float, max_iterations: int) -> Tensor:
    """V_pi (B, S) of a deterministic policy (B, S)."""
    B, S, A = model.R.shape
    if method == "exact":
        if model.P.layout != torch.strided:
            raise ValueError(
                "exact policy evaluation solves a dense linear system: use method='iterative' for a sparse P"
            )
        P_pi, r_pi = _policy_rows(model, policy)
        eye = torch.eye(S, dtype=P_pi.dtype, device=P_pi.device)
        return torch.linalg.solve(eye - model.gamma[:, None, None] * P_pi, r_pi)  # (I - gamma P_pi)^-1 r_pi
    if method != "iterative":
        raise ValueError(f"method must be 'exact' or 'iterative', not {method!r}")
    V = torch.zeros(B, S, dtype=model.R.dtype, device=model.R.device)
    for _ in range(max_iterations):  # v <- r_pi + gamma P_pi v (Puterman eq. 6.2.8), a gamma-contraction
        V_new = backup(model, V).gather(2, policy.unsqueeze(-1)).squeeze(-1)
        done = bool(((V_new - V).abs().amax(1) < tolerance).all())
        V = V_new
        if done:
            return V
    raise RuntimeError(f"iterative policy evaluation did not converge in {max_iterations} iterations")
