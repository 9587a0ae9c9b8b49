"""`minislm prune` end to end: every method writes a folder transformers loads."""
from __future__ import annotations

import numpy as np
import pytest

import minislm
from minislm.cli import main

from conftest import build_hf_model, hf_logits, save_hf_model, word_tokenizer


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    out = {}
    for family in ("gpt2", "llama"):
        folder = save_hf_model(build_hf_model(family, n_layer=4, d_ff=64 if family == "gpt2"
                                              else 48), root / family)
        word_tokenizer(101).save(str(folder / "tokenizer.json"))
        out[family] = folder
    rng = np.random.default_rng(0)
    calib = root / "calib.txt"
    calib.write_text(" ".join(f"w{i}" for i in rng.integers(1, 100, 3000)), encoding="utf-8")
    out["calib"] = calib
    return out


CASES = [  # (family, method, options): every method on LLaMA, the GPT-2 layouts where they differ
    ("llama", "depth", ["--importance", "ppl", "--remove-layers", "2", "--protect-first", "1",
                        "--protect-last", "1"]),
    ("llama", "depth", ["--importance", "block", "--remove-layers", "1"]),
    ("llama", "depth", ["--importance", "magnitude", "--remove-layers", "1"]),
    ("gpt2", "depth", ["--importance", "taylor", "--remove-layers", "1"]),
    ("gpt2", "depth", ["--importance", "middle", "--remove-layers", "2"]),
    ("llama", "depth", ["--layers", "0,1,1,3"]),
    ("llama", "width", ["--heads", "2", "--ffn", "32"]),
    ("llama", "width", ["--importance", "voice-thesis", "--heads", "2", "--ffn", "32"]),
    ("gpt2", "width", ["--hidden", "16", "--ffn", "32"]),   # GPT-2: heads move with the width
    ("llama", "magnitude", ["--sparsity", "0.4", "--scope", "global"]),
    ("gpt2", "magnitude", ["--nm", "2:4"]),
    ("llama", "wanda", ["--sparsity", "0.5"]),
    ("gpt2", "wanda", ["--nm", "4:8"]),
    ("llama", "sparsegpt", ["--nm", "2:4"]),
    ("gpt2", "sparsegpt", ["--sparsity", "0.5"]),
]


@pytest.mark.parametrize("family,method,extra", CASES)
def test_prune_command(setup, tmp_path, capsys, family, method, extra):
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "out"
    args = ["prune", "--model", str(setup[family]), "--method", method, "--out", str(out),
            "--calib", str(setup["calib"]), "--calib-samples", "4", "--calib-seqlen", "16"]
    assert main(args + extra) == 0
    printed = capsys.readouterr().out
    assert "parameters" in printed and "wrote" in printed
    pruned = minislm.load(out)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    ids = np.random.default_rng(1).integers(0, 101, size=(2, 9))
    np.testing.assert_allclose(hf_logits(hf, ids), minislm.forward(pruned, ids),
                               rtol=1e-4, atol=1e-4)
    if method in ("magnitude", "wanda", "sparsegpt"):
        assert (out / "masks.safetensors").exists()
    assert minislm.load(setup[family]).num_params() >= pruned.num_params()


@pytest.mark.parametrize("extra,message", [
    (["--method", "wanda"], "needs --sparsity"),
    (["--method", "depth"], "needs --remove-layers"),
    (["--method", "depth", "--remove-layers", "3", "--protect-first", "2"], "cannot remove"),
    (["--method", "width"], "at least one of"),
    (["--method", "width", "--ffn", "32", "--importance", "ppl"], "does not apply to --method"),
    (["--method", "depth", "--remove-layers", "1", "--importance", "minitron"], "expected one of"),
    (["--method", "wanda", "--nm", "2:3"], "multiple of M=3"),
    (["--method", "magnitude", "--sparsity", "2"], "sparsity must be"),
])
def test_prune_command_errors(setup, tmp_path, capsys, extra, message):
    args = ["prune", "--model", str(setup["llama"]), "--out", str(tmp_path / "o"),
            "--calib", str(setup["calib"]), "--calib-samples", "2", "--calib-seqlen", "8"]
    assert main(args + extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_width_importance_flag_chooses_the_formula(setup, tmp_path, capsys, monkeypatch):
    """`--importance` picks the width formula (default Minitron's, issue 13 item 11)."""
    from minislm.prune import width
    used = []
    real = width.width_importance
    monkeypatch.setattr(width, "width_importance",
                        lambda *a, **k: used.append(a[2]) or real(*a, **k))
    args = ["prune", "--model", str(setup["llama"]), "--method", "width", "--ffn", "32",
            "--calib", str(setup["calib"]), "--calib-samples", "2", "--calib-seqlen", "8"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b"), "--importance", "voice-thesis"]) == 0
    assert used == ["minitron", "voice-thesis"]
    assert "voice-thesis importance" in capsys.readouterr().out


def test_depth_refuses_an_impossible_removal_before_scoring(setup, tmp_path, capsys,
                                                            monkeypatch):
    """--remove-layers beyond what the model allows is refused before any calibration."""
    from minislm.prune import depth

    def no_scoring(*args, **kwargs):
        raise AssertionError("block importances were computed for an impossible removal")
    monkeypatch.setattr(depth, "importance", no_scoring)
    n_layer = minislm.load(setup["llama"]).config.n_layer
    args = ["prune", "--model", str(setup["llama"]), "--out", str(tmp_path / "o"), "--calib",
            str(setup["calib"]), "--method", "depth", "--importance", "ppl",
            "--remove-layers", str(n_layer)]
    assert main(args) == 2
    assert "can remove 1" in capsys.readouterr().err
