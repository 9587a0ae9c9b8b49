"""SparseGPT: the OBS sweep against a torch port of the reference loop; N:M; model round trip."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minislm
from minislm.errors import ConfigError
from minislm.model import families
from minislm.prune.masks import out_in, zeros_per_group
from minislm.prune.sparsegpt import sparsegpt, sparsegpt_matrix

from conftest import build_hf_model, hf_logits, save_hf_model


def problem(seed, out=6, d_in=16, n=64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d_in)) * rng.uniform(0.1, 3.0, d_in)   # uneven channels
    W = rng.standard_normal((out, d_in)).astype(np.float32)
    return W, 2 * X.T @ X / n


def reference_fasterprune(W, H, sparsity, prunen, prunem, blocksize, percdamp=0.01):
    """IST-DASLab/sparsegpt `SparseGPT.fasterprune` (exact-k variant of the adaptive mask)."""
    torch = pytest.importorskip("torch")
    W = torch.tensor(W, dtype=torch.float64)
    H = torch.tensor(H, dtype=torch.float64)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(H.shape[0], dtype=torch.float64)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    for i1 in range(0, W.shape[1], blocksize):
        i2 = min(i1 + blocksize, W.shape[1])
        W1, Q1, Err1 = W[:, i1:i2].clone(), torch.zeros_like(W[:, i1:i2]), \
            torch.zeros_like(W[:, i1:i2])
        Hinv1 = Hinv[i1:i2, i1:i2]
        if prunen == 0:
            tmp = W1 ** 2 / (torch.diag(Hinv1).reshape((1, -1))) ** 2
            k = int(tmp.numel() * sparsity)
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
            mask1.view(-1)[torch.argsort(tmp.flatten(), stable=True)[:k]] = True
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for i in range(i2 - i1):
            w, d = W1[:, i], Hinv1[i, i]
            if prunen != 0 and i % prunem == 0:
                tmp = W1[:, i:i + prunem] ** 2 / \
                    (torch.diag(Hinv1)[i:i + prunem].reshape((1, -1))) ** 2
                mask1.scatter_(1, i + torch.topk(tmp, prunen, dim=1, largest=False)[1], True)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return W.numpy()


@pytest.mark.parametrize("sparsity,nm", [(0.5, None), (0.3, None), (None, (2, 4)), (None, (4, 8))])
def test_matches_reference_loop(sparsity, nm):
    W, H = problem(0, out=5, d_in=32)
    H[7, :] = H[:, 7] = 0.0                       # a dead input channel
    got = sparsegpt_matrix(W, H, sparsity, nm, blocksize=16)
    ref = reference_fasterprune(W, H, sparsity or 0, *(nm or (0, 0)), blocksize=16)
    np.testing.assert_allclose(got.weight, ref.astype(np.float32), rtol=1e-5, atol=1e-5)
    assert got.weight.dtype == np.float32
    assert np.all(got.weight[~got.keep] == 0)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), nm=st.sampled_from([(1, 2), (2, 4), (4, 8), (8, 16)]))
def test_nm_pattern_and_reconstruction_helps(seed, nm):
    W, H = problem(seed, d_in=32)
    r = sparsegpt_matrix(W, H, nm=nm, blocksize=16)
    assert np.all(zeros_per_group(r.keep.astype(np.uint8), nm[1]) == nm[0])
    assert np.all(zeros_per_group((r.weight != 0).astype(np.uint8), nm[1]) >= nm[0])
    assert r.error <= r.error_no_update * (1 + 1e-6) + 1e-9


def test_unstructured_exact_count_per_block():
    W, H = problem(3, out=4, d_in=40)
    r = sparsegpt_matrix(W, H, sparsity=0.5, blocksize=16)
    for b0 in range(0, 40, 16):
        block = r.keep[:, b0:b0 + 16]
        assert (~block).sum() == int(block.size * 0.5)
    with pytest.raises(ConfigError):
        sparsegpt_matrix(W, H, nm=(2, 3))
    with pytest.raises(ConfigError):
        sparsegpt_matrix(W, H)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_sparsegpt_model_round_trip(tmp_path, family):
    transformers = pytest.importorskip("transformers")
    model = minislm.load(save_hf_model(build_hf_model(family, n_layer=2, d_ff=64 if family ==
                                                      "gpt2" else 48), tmp_path / "src"))
    before = {k: v.copy() for k, v in model.params.items()}
    ids = np.random.default_rng(0).integers(0, 101, size=(4, 12))
    pruned = sparsegpt(model, ids, nm="2:4")
    for k, v in before.items():
        np.testing.assert_array_equal(model.params[k], v)
    for lin in families.linear_layers(model.config, model.prefix):
        W = out_in(pruned.params[lin.name], lin.orientation)
        assert np.all(zeros_per_group((W != 0).astype(np.uint8), 4) >= 2)
    out = minislm.save(pruned, tmp_path / "out")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    test_ids = np.random.default_rng(1).integers(0, 101, size=(2, 9))
    np.testing.assert_allclose(hf_logits(hf, test_ids), minislm.forward(pruned, test_ids),
                               rtol=1e-4, atol=1e-4)
