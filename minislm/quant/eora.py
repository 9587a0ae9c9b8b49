"""EoRA: training-free low-rank compensation of a compressed weight, in the
eigenspace of its calibration activations.

Liu et al. 2024, "EoRA: Fine-tuning-free Compensation for Compressed LLM with
Eigenspace Low-Rank Approximation"; thesis §3.5.1, eqs. 3.10–3.11.

With ΔW = W − Ŵ [out, in] and the input statistic X̃ᵀX̃ = Q Λ Qᵀ [in, in]
(eigendecomposition, negative eigenvalues from round-off clamped):

    Q' = Q √Λ                                        projection scaled by √λ
    ΔW' = ΔW Q' = U Σ Vᵀ                             (3.10), then truncated SVD
    B = U_r √Σ_r                 [out, r]
    A = √Σ_r V_rᵀ Q'⁻¹           [r, in],   Q'⁻¹ = Λ^(−½) Qᵀ
    h = Ŵ x + B A x                                  (3.11)

Because Q' Q'ᵀ = X̃ᵀX̃, the activation-weighted error equals a plain Frobenius
norm in the projected space:  ‖(ΔW − BA) X̃ᵀ‖²_F = ‖(ΔW − BA) Q'‖²_F, so BA is the
*best* rank-r correction for the layer output (Eckart–Young), never worse than
the plain SVD of ΔW, which is optimal only for ‖ΔW − BA‖_F.

The statistic can be H = 2 X Xᵀ / n from GPTQ: a positive multiple of X̃ᵀX̃ gives
the same B A (the scale cancels between Q' and Q'⁻¹).

`eora` compensates one weight; `compensate_model` drives it over every quantized
linear of a model (the pipeline's `eora` stage; `quantize_model(..., eora_rank=r)`
does the same inside its own calibration pass).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..calibration import collect
from ..errors import ConfigError, InputError
from ..model import families


@dataclass(frozen=True)
class EoRAResult:
    """Factors A [r, in], B [out, r] and ‖ΔW X‖² / n before, with EoRA and with plain SVD."""
    A: np.ndarray            # float32 [r, in]
    B: np.ndarray            # float32 [out, r]
    error_before: float      # ‖ΔW X‖² / n without compensation
    error_eora: float        # ‖(ΔW − BA) X‖² / n
    error_svd: float         # ‖(ΔW − B_svd A_svd) X‖² / n, plain rank-r SVD of ΔW


def _weighted_error(D: np.ndarray, H: np.ndarray) -> float:
    """½ tr(D H Dᵀ) = ‖D X‖² / n for H = 2 X Xᵀ / n."""
    return float(0.5 * np.sum((D @ H) * D))


def eora(W: np.ndarray, W_hat: np.ndarray, H: np.ndarray, rank: int,
         eig_floor: float = 1e-8) -> EoRAResult:
    """Rank-r compensation B A of ΔW = W − Ŵ (both [out, in]) for inputs with statistic H [in, in].

    Eigenvalues below `eig_floor · max λ` are raised to it, so Q'⁻¹ stays finite on
    input directions the calibration data never excites.
    """
    if W.shape != W_hat.shape or W.ndim != 2 or H.shape != (W.shape[1], W.shape[1]):
        raise InputError(f"eora: W and Ŵ must be (out, in) and H (in, in); found {W.shape}, "
                         f"{W_hat.shape}, {H.shape}")
    if not 1 <= rank <= min(W.shape):
        raise InputError(f"eora: rank must be between 1 and {min(W.shape)}, found {rank}")
    H = H.astype(np.float64)
    dW = W.astype(np.float64) - W_hat.astype(np.float64)                 # [out, in]
    lam, Q = np.linalg.eigh(H)                                            # H = Q Λ Qᵀ
    lam = np.maximum(lam, eig_floor * max(float(lam.max()), 1e-30))
    sqrt_lam = np.sqrt(lam)
    Q_proj = Q * sqrt_lam                                                 # Q' = Q √Λ   [in, in]
    Q_proj_inv = Q.T / sqrt_lam[:, None]                                  # Λ^(−½) Qᵀ   [in, in]
    U, sigma, Vt = np.linalg.svd(dW @ Q_proj, full_matrices=False)        # ΔW' = U Σ Vᵀ
    root = np.sqrt(sigma[:rank])
    B = U[:, :rank] * root                                                # [out, r]
    A = (root[:, None] * Vt[:rank]) @ Q_proj_inv                          # [r, in]

    U0, s0, Vt0 = np.linalg.svd(dW, full_matrices=False)                  # plain SVD baseline
    low_rank_svd = (U0[:, :rank] * s0[:rank]) @ Vt0[:rank]
    return EoRAResult(A=A.astype(np.float32), B=B.astype(np.float32),
                      error_before=_weighted_error(dW, H),
                      error_eora=_weighted_error(dW - B @ A, H),
                      error_svd=_weighted_error(dW - low_rank_svd, H))


def compensate_model(quantized, reference, calib_ids: np.ndarray, rank: int,
                     progress: bool = False):
    """A new model: every quantized linear of `quantized` gets EoRA's rank-r term B A.

    ΔW = W − Ŵ takes W from `reference`, the float model the quantization started
    from, and H = 2 XᵀX / n from the inputs each linear sees in the *quantized*
    model (one calibration pass over calib_ids [n, T]; the codes stay as they are).
    The rank is capped at min(out, in) of each layer.
    """
    targets = {name: w for name, w in quantized.params.items() if hasattr(w, "eora_A")}
    stats = collect(quantized, calib_ids, stats=("xtx",), names=list(targets),
                    progress=progress)
    params = dict(quantized.params)
    for lin in families.linear_layers(quantized.config, quantized.prefix):
        qt = targets.get(lin.name)
        if qt is None:
            continue
        if qt.eora_A is not None:
            raise ConfigError(f"eora: {lin.name} already carries an EoRA term (quantized "
                              "with eora_rank > 0); compensate once")
        W = np.asarray(reference.params[lin.name], dtype=np.float32)
        W = W.T if lin.orientation == "in_out" else W                       # [out, in]
        comp = eora(W, qt.effective_out_in(), stats[lin.name].hessian(), min(rank, *W.shape))
        params[lin.name] = dataclasses.replace(qt, eora_A=comp.A, eora_B=comp.B)
    extra = dict(quantized.extra_config)
    extra["quantization_config"] = {**extra.get("quantization_config", {}), "eora_rank": rank}
    return quantized.replace(params=params, extra_config=extra)
