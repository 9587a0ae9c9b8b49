"""Nothing lost, nothing untrusted run, resources checked, numerical hazards reported.

  * a process killed (SIGKILL) while writing a checkpoint leaves the old complete
    file or none under the final name — never half a file;
  * Ctrl-C (SIGINT) stops a long command with status 130 and no traceback;
  * `compress --resume` / `train --resume` continue after a kill and end with the
    same result as an uninterrupted run;
  * no command modifies its input files (sha256 of every file before and after);
  * a LLaMA-3.2-1B-shaped checkpoint on a 4 GB budget is refused before any
    allocation (header-only sparse file: no disk, no RAM used);
  * NaN/Inf activations are reported with the layer; GPTQ's Cholesky is retried
    with more damping; all-zero quantization groups get a usable scale.
"""
from __future__ import annotations

import json
import math
import contextlib
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minislm
from minislm import resources
from minislm.checkpoint import read_safetensors
from minislm.cli import main as cli_main
from minislm.config import Config
from minislm.errors import ConfigError, NumericalError, ResourceError
from minislm.model import families

from reliability_helpers import TEXT, make_checkpoint, tree_hashes

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(REPO))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("rel")


@pytest.fixture(scope="module")
def gpt2_dir(base):
    return make_checkpoint(base / "gpt2", "gpt2")


@pytest.fixture(scope="module")
def corpus(base):
    path = base / "corpus.txt"
    lines = [f"line {i}: {TEXT.splitlines()[i % 5]}" for i in range(240)]
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_for(condition, timeout=60.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def reaped(proc):
    """Yield proc; when the block ends (also by a failed assertion) it is killed if still
    running and waited for, so no test leaves a child process behind."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# =========================================================== killed mid-write
WRITER = textwrap.dedent("""
    import sys, numpy as np
    from minislm.checkpoint import write_safetensors
    target, i = sys.argv[1], 0
    while True:   # rewrite the same file forever, each version filled with its number
        write_safetensors(target, {"w": np.full((16, 1 << 20), i, np.float32)},
                          metadata={"version": str(i)})
        print(i, flush=True)
        i += 1
""")


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.03])
def test_sigkill_mid_write_leaves_old_file_or_none(base, delay):
    """SIGKILL while a 64 MB safetensors file is being rewritten: the final name holds a
    complete file (some finished version), the partial bytes only a hidden temp name."""
    folder = base / f"kill{delay}"
    folder.mkdir()
    target = folder / "model.safetensors"
    with reaped(subprocess.Popen([sys.executable, "-c", WRITER, str(target)], env=ENV,
                                 stdout=subprocess.PIPE, text=True)) as proc:
        assert proc.stdout.readline().strip() == "0"       # version 0 is complete
        temps = lambda: [p for p in folder.iterdir() if p.name.endswith(".tmp")]  # noqa: E731
        wait_for(lambda: any(p.stat().st_size > 0 for p in temps()), what="a partial write")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    tensors = read_safetensors(target)               # complete and parseable
    version = float(minislm.checkpoint.read_header(target)[1]["version"])
    assert tensors["w"].shape == (16, 1 << 20)
    assert np.all(tensors["w"] == version)           # not a mix of two versions
    leftovers = [p.name for p in folder.iterdir() if p != target]
    assert leftovers and all(n.startswith(f".model.safetensors.{proc.pid}.") and
                             n.endswith(".tmp") for n in leftovers)
    assert minislm.checkpoint.checkpoint_files(folder) == [target]   # temps are never read
    minislm.checkpoint.write_safetensors(target, {"w": np.zeros(2, np.float32)})
    assert [p.name for p in folder.iterdir()] == ["model.safetensors"]  # the dead writer's
    #                                                        temp is cleaned by the next write


SAVER = textwrap.dedent("""
    import sys, numpy as np, minislm
    model = minislm.load(sys.argv[1])
    big = model.params["transformer.wte.weight"]
    params = dict(model.params)
    # a 300-token vocabulary padded to 1M rows: a 64 MB model.safetensors
    params["transformer.wte.weight"] = np.resize(big, (1 << 20, big.shape[1]))
    model = model.replace(params=params, config=model.config.replace(vocab_size=1 << 20),
                          tokenizer=None)
    print("saving", flush=True)
    minislm.save(model, sys.argv[2])
    print("saved", flush=True)
""")


def test_sigkill_during_save_never_leaves_a_half_checkpoint(base, gpt2_dir):
    out = base / "killed-save"
    with reaped(subprocess.Popen([sys.executable, "-c", SAVER, str(gpt2_dir), str(out)],
                                 env=ENV, stdout=subprocess.PIPE, text=True)) as proc:
        assert proc.stdout.readline().strip() == "saving"
        wait_for(lambda: out.exists() and any(p.name.endswith(".tmp") and p.stat().st_size
                                              for p in out.iterdir()),
                 what="save's temp file")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    final = out / "model.safetensors"
    if final.exists():                                # finished before the kill landed
        assert read_safetensors(final)["transformer.wte.weight"].shape == (1 << 20, 16)
    else:                                             # the folder is refused clearly
        with pytest.raises(minislm.MinislmError):
            minislm.load(out)


def test_temp_files_of_live_writers_are_kept(base):
    folder = base / "live-writer"
    folder.mkdir()
    mine = folder / f".x.bin.{os.getpid()}.abc.tmp"           # this process: alive
    other = folder / ".x.bin.1.abc.tmp"                          # pid 1 (init): alive
    junk = folder / ".x.bin.notapid.abc.tmp"
    for p in (mine, other, junk):
        p.write_bytes(b"partial")
    minislm.checkpoint.atomic_write_bytes(folder / "x.bin", b"done")
    assert mine.exists() and other.exists() and junk.exists()
    assert (folder / "x.bin").read_bytes() == b"done"


def test_saving_without_masks_removes_stale_masks(base, gpt2_dir):
    model = minislm.load(gpt2_dir)
    name = "transformer.h.0.mlp.c_fc.weight"
    keep = (np.arange(model.params[name].size) % 2).reshape(model.params[name].shape)
    masked = model.replace(extra_tensors={"masks": {name: keep.astype(np.uint8)}})
    out = minislm.save(masked, base / "masked-then-dense")
    assert name in minislm.load(out).extra_tensors["masks"]
    minislm.save(model, out)                                     # same folder, no masks now
    assert "masks" not in minislm.load(out).extra_tensors


# =========================================================== Ctrl-C
def test_ctrl_c_stops_a_long_generation_with_status_130(base):
    """SIGINT during a 100k-token generation: exit 130, one line on stderr, no traceback."""
    folder = make_checkpoint(base / "long", "llama", max_position_embeddings=100_000,
                             eos_token_id=None, rope_scaling=None)
    with reaped(subprocess.Popen([sys.executable, "-m", "minislm", "generate", "--model",
                                  str(folder), "--prompt", "Return the", "--max-new-tokens",
                                  "99000"], env=ENV, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)) as proc:
        proc.stdout.read(12)                           # the prompt and first tokens streamed
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err


# =========================================================== inputs never modified
@pytest.fixture(scope="module")
def commands(base, gpt2_dir, corpus):
    toml = base / "pipe.toml"
    toml.write_text(textwrap.dedent("""
        [eval]
        ppl_data = "{corpus}"
        ppl_tokens = 64
        seqlen = 32
        toolcall = 0
        speed = false
        device = ""
        [[stage]]
        name = "quantize"
        method = "rtn"
        bits = 4
        group_size = 8
        [[stage]]
        name = "export"
        formats = ["hf"]
    """).format(corpus=corpus))
    sweep = base / "sweep.toml"
    sweep.write_text(toml.read_text().split("[[stage]]")[0] + textwrap.dedent("""
        [[sweep.axis]]
        name = "Quant"
        stage = "quantize"
        key = "bits"
        values = [0, 4]
        options = {method = "rtn", group_size = 8}
    """))
    m, o = str(gpt2_dir), base / "outputs"
    return {
        "generate": ["generate", "--model", m, "--prompt", "Return the", "--max-new-tokens", 8],
        "eval": ["eval", "--model", m, "--task", "ppl", "--data", corpus, "--seqlen", 32,
                 "--limit", 128, "--no-log", "--json"],
        "quantize": ["quantize", "--model", m, "--method", "rtn", "--group-size", 8,
                     "--out", o / "q"],
        "quantize-gptq": ["quantize", "--model", m, "--method", "gptq", "--group-size", 8,
                          "--calib", corpus, "--n-samples", 4, "--seq-len", 32, "--out",
                          o / "gptq"],
        "prune": ["prune", "--model", m, "--method", "magnitude", "--sparsity", 0.5,
                  "--out", o / "pruned"],
        "export-gguf": ["export-gguf", "--model", m, "--type", "q8_0", "--out", o / "m.gguf"],
        "cost": ["cost", "--model", m, "--device", "siracusa"],
        "compress": ["compress", "--config", toml, "--model", m, "--out", o / "c",
                     "--no-log", "--quiet"],
        "sweep": ["sweep", "--config", sweep, "--model", m, "--out", o / "s", "--no-log",
                  "--quiet"],
        "finetune": ["finetune", "--model", m, "--data", corpus, "--steps", 1,
                     "--batch-size", 2, "--max-len", 32, "--out", o / "ft"],
        "distill": ["distill", "--teacher", m, "--student", m, "--data", corpus, "--steps", 1,
                    "--batch-size", 2, "--max-len", 32, "--out", o / "kd"],
        "train": ["train", "--model", m, "--data", corpus, "--steps", 1, "--batch-size", 2,
                  "--seq-len", 16, "--eval-tokens", 64, "--sample-prompt", "",
                  "--no-progress", "--out", o / "tr"],
    }


COMMANDS = ["generate", "eval", "quantize", "quantize-gptq", "prune", "export-gguf", "cost",
            "compress", "sweep", "finetune", "distill", "train"]


@pytest.mark.parametrize("name", COMMANDS)
def test_commands_never_modify_their_inputs(commands, gpt2_dir, corpus, monkeypatch, base,
                                            capsys, name):
    monkeypatch.setenv("MINISLM_RUNS", str(base / "runs.jsonl"))
    monkeypatch.chdir(base)                    # anything written to the cwd lands here
    before = tree_hashes(gpt2_dir), corpus.read_bytes()
    rc = cli_main([str(a) for a in commands[name]])
    out, err = capsys.readouterr()
    assert rc == 0, err[-2000:]
    assert tree_hashes(gpt2_dir) == before[0], f"{name} modified the input checkpoint"
    assert corpus.read_bytes() == before[1], f"{name} modified the input corpus"


# =========================================================== outputs: never over a user's files
WRITERS = ["quantize", "prune", "export-gguf", "compress", "sweep", "finetune", "distill",
           "train"]


def _with_out(argv, out):
    argv = [str(a) for a in argv]
    argv[argv.index("--out") + 1] = str(out)
    return argv


def _refused(argv, capsys, *words):
    rc = cli_main(argv)
    err = capsys.readouterr().err
    assert rc == 2, f"{argv[0]} accepted {argv}: {err[-500:]}"
    line = err.strip().splitlines()[-1]
    assert line.startswith("minislm: error:") and all(w in line for w in words), err
    return line


@pytest.fixture()
def users_folder(tmp_path, gpt2_dir):
    """A folder holding another model and the files a save would replace or delete."""
    folder = make_checkpoint(tmp_path / "my-llama", "llama", seed=3)
    for name in ("masks.safetensors", "model.safetensors.index.json", "adapter_config.json",
                 "adapter_model.safetensors", "notes.txt"):
        (folder / name).write_text(f"the user's {name}\n")
    return folder


def test_export_gguf_never_overwrites_its_input(gpt2_dir, capsys):
    """issue 13 item 1: `export-gguf --out m/model.safetensors` destroyed the checkpoint."""
    before = tree_hashes(gpt2_dir)
    for target in ("model.safetensors", "config.json", "new.gguf"):
        _refused(["export-gguf", "--model", str(gpt2_dir), "--type", "q8_0", "--out",
                  str(gpt2_dir / target), "--overwrite"], capsys, "input")
    assert tree_hashes(gpt2_dir) == before
    from minislm.errors import InputError
    from minislm.quant.gguf_export import export_gguf
    with pytest.raises(InputError, match="input"):            # the library writer, too
        export_gguf(minislm.load(gpt2_dir), gpt2_dir / "model.safetensors", "q8_0")
    assert tree_hashes(gpt2_dir) == before


@pytest.mark.parametrize("name", WRITERS)
def test_writers_refuse_a_folder_minislm_did_not_write(commands, users_folder, capsys, name,
                                                       monkeypatch, base):
    """issue 13 item 2: writing into a folder holding another model replaced its config,
    weights and tokenizer and deleted masks.safetensors / the shard index."""
    monkeypatch.setenv("MINISLM_RUNS", str(base / "runs.jsonl"))
    before = tree_hashes(users_folder)
    target = users_folder / "model.gguf" if name == "export-gguf" else users_folder
    if name == "export-gguf":                  # a file that is not a GGUF file
        target.write_text("not a gguf\n")
        before = tree_hashes(users_folder)
    argv = _with_out(commands[name], target)
    if name == "finetune":
        argv += ["--lora-rank", "2"]           # the adapter_config.json case
    _refused(argv, capsys, "--overwrite")
    assert tree_hashes(users_folder) == before, f"{name} touched the user's folder"


def test_overwrite_and_rerun(commands, users_folder, tmp_path, capsys):
    """--overwrite lets a command replace a user's folder; minislm's own output is
    recognised by its marker, so running the same command again needs no --overwrite."""
    assert cli_main(_with_out(commands["quantize"], users_folder) + ["--overwrite"]) == 0
    assert minislm.load(users_folder).config.family == "gpt2"
    fresh = tmp_path / "q"
    for _ in range(2):
        assert cli_main(_with_out(commands["quantize"], fresh)) == 0
    assert (fresh / "minislm_output.json").is_file()
    capsys.readouterr()


def test_compress_never_deletes_a_user_file_in_a_stage_folder(commands, tmp_path, capsys):
    """issue 13 item 2: compress ran rmtree on stages/NN/model/ holding a user file."""
    out = tmp_path / "c"
    argv = _with_out(commands["compress"], out)
    assert cli_main(argv) == 0
    stage = out / "stages" / "01_quantize" / "model"
    (stage / "minislm_output.json").unlink()            # a folder the user made ...
    (stage / "thesis-results.txt").write_text("mine\n")  # ... holding a user's file
    _refused(argv, capsys, "stage folder", "--overwrite")
    assert (stage / "thesis-results.txt").read_text() == "mine\n"
    assert cli_main(argv + ["--overwrite"]) == 0
    capsys.readouterr()


def test_outputs_inside_or_around_inputs_are_refused(commands, gpt2_dir, corpus, base,
                                                     capsys):
    """issue 13 item 3: `finetune --out m`, `compress --model m --out m` and
    `quantize --out m/q` were accepted and modified the input."""
    before = tree_hashes(gpt2_dir), corpus.read_bytes()
    cases = [("finetune", gpt2_dir, ["--lora-rank", "2"]), ("compress", gpt2_dir, []),
             ("quantize", gpt2_dir / "q", []), ("prune", gpt2_dir.parent, []),
             ("train", base, []), ("distill", corpus, []), ("sweep", gpt2_dir / "s", []),
             ("export-gguf", gpt2_dir / "m.gguf", [])]
    for name, out, extra in cases:
        _refused(_with_out(commands[name], out) + extra + ["--overwrite"], capsys, "input")
    assert tree_hashes(gpt2_dir) == before[0] and corpus.read_bytes() == before[1]
    assert not (gpt2_dir / "q").exists() and not (gpt2_dir / "s").exists()


def test_two_compress_runs_cannot_share_an_out(commands, tmp_path, capsys):
    """issue 13 item 19: two concurrent `compress` runs on one --out both exited 0 and
    mixed their reports. While one run holds the lock a second is refused; the lock of
    a killed run is stale and taken over, also when its pid now names another process."""
    out = tmp_path / "c"
    holder = textwrap.dedent(f"""
        import time
        from minislm.outputs import mark_output, output_lock
        with output_lock(mark_output({str(out)!r}, "compress"), "compress"):
            print("held", flush=True)
            time.sleep(120)
    """)
    with reaped(subprocess.Popen([sys.executable, "-c", holder], env=ENV, text=True,
                                 stdout=subprocess.PIPE)) as other:
        assert other.stdout.readline() == "held\n"
        _refused(_with_out(commands["compress"], out), capsys, f"pid {other.pid}")
        assert not (out / "stages").exists()
        other.kill()                                  # SIGKILL: the lock file stays behind
        other.wait()
    assert (out / "minislm.lock").exists()
    assert cli_main(_with_out(commands["compress"], out)) == 0
    assert not (out / "minislm.lock").exists()        # released at the end
    with reaped(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])) as p:
        (out / "minislm.lock").write_text(f"{p.pid} 1 minislm compress\n")  # a reused pid
        assert cli_main(_with_out(commands["compress"], out)) == 0
    capsys.readouterr()


# =========================================================== resume after a kill
def _kill_when(argv, condition, what, sig=signal.SIGKILL):
    """Run `minislm argv` in a subprocess and send `sig` once condition() holds.
    Returns (exit status, stderr)."""
    with reaped(subprocess.Popen([sys.executable, "-m", "minislm"] + [str(a) for a in argv],
                                 env=ENV, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)) as proc:
        wait_for(lambda: condition() or proc.poll() is not None, timeout=120, what=what)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    return proc.returncode, err.decode(errors="replace")


def test_compress_resume_after_sigkill(commands, base, capsys):
    """Kill `minislm compress` once its first stage is finished; --resume reuses that
    stage and ends with the same report numbers as an uninterrupted run."""
    argv = [str(a) for a in commands["compress"]]
    out = base / "resume-compress"
    argv[argv.index("--out") + 1] = str(out)
    marker = out / "stages" / "01_quantize" / "done.json"
    assert _kill_when(argv, marker.exists, "stage 1's done-marker")[0] == -signal.SIGKILL
    for model_dir in (out / "stages").glob("*/model"):      # a stage folder is whole or absent
        minislm.load(model_dir)
    assert cli_main(argv + ["--resume"]) == 0
    text = capsys.readouterr().out
    assert "rows resumed" in text
    rows = {r["label"]: r for r in json.loads((out / "report.json").read_text())}
    assert rows["01_quantize"]["resumed"] is True
    assert set(rows) == {"baseline", "01_quantize", "02_export"}
    fresh = base / "uninterrupted-compress"
    argv[argv.index("--out") + 1] = str(fresh)
    assert cli_main(argv) == 0
    again = {r["label"]: r for r in json.loads((fresh / "report.json").read_text())}
    for label in rows:
        assert rows[label]["metrics"]["perplexity"] == pytest.approx(
            again[label]["metrics"]["perplexity"], rel=1e-6)
    assert tree_hashes(out / "stages" / "02_export" / "model") and \
        read_safetensors(out / "stages" / "02_export" / "model" / "model.safetensors")


@pytest.fixture(scope="module")
def train_argv(commands, base):
    """A 400-step training run (~2 ms a step) checkpointing every 50, and its final weights."""
    argv = [str(a) for a in commands["train"]]
    steps = ["--steps", "400", "--save-every", "50", "--eval-every", "0"]
    argv[argv.index("--steps"):argv.index("--steps") + 2] = steps
    straight = base / "train-straight"
    argv[argv.index("--out") + 1] = str(straight)
    assert cli_main(argv) == 0
    return argv, read_safetensors(straight / "model.safetensors")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_train_resume_after_interruption_matches_uninterrupted_run(train_argv, base, sig):
    argv, expected = train_argv
    killed = base / f"train-{sig.name}"
    argv = list(argv)
    argv[argv.index("--out") + 1] = str(killed)
    state = killed / "trainer_state.safetensors"
    rc, err = _kill_when(argv, state.exists, "the first training checkpoint", sig)
    if sig == signal.SIGINT:                                   # Ctrl-C: clean stop, status 130
        assert rc == 130 and "interrupted" in err and "Traceback" not in err, err
    else:
        assert rc == -signal.SIGKILL
    step_at_kill = int(minislm.checkpoint.read_header(state)[1]["step"])
    assert 50 <= step_at_kill < 400                            # interrupted mid-run
    assert cli_main(argv + ["--resume"]) == 0
    resumed = read_safetensors(killed / "model.safetensors")
    assert resumed.keys() == expected.keys()
    for k in resumed:
        np.testing.assert_array_equal(resumed[k], expected[k])
    history = json.loads((killed / "history.json").read_text())
    assert [h["step"] for h in history] == list(range(1, 401))


# =========================================================== memory preflight
LLAMA_32_1B = dict(
    model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=128256,
    hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
    head_dim=64, intermediate_size=8192, max_position_embeddings=131072,
    tie_word_embeddings=True, rms_norm_eps=1e-5, rope_theta=500000.0, hidden_act="silu",
    bos_token_id=128000, eos_token_id=[128001, 128008, 128009], torch_dtype="bfloat16",
    rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})


def header_only_checkpoint(folder: Path, config: dict, code: str = "BF16") -> int:
    """A safetensors file with the real header of `config` and a sparse (hole) data section:
    the loader sees a 2.5 GB file while no disk block is used. Returns the parameter count."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    header, offset, size = {}, 0, {"BF16": 2, "F32": 4}[code]
    for name, shape in sorted(families.expected_shapes(Config.from_hf_dict(config)).items()):
        n = math.prod(shape)
        header[name] = {"dtype": code, "shape": list(shape),
                        "data_offsets": [offset, offset + size * n]}
        offset += size * n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(folder / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)
    return offset // size


def test_llama_1b_on_a_4gb_budget_is_refused_before_loading(base, monkeypatch):
    folder = base / "llama-3.2-1b-shaped"
    n = header_only_checkpoint(folder, LLAMA_32_1B)
    assert n == 1_235_814_400                          # LLaMA-3.2-1B's parameter count
    assert os.stat(folder / "model.safetensors").st_blocks * 512 < 10 * 2 ** 20   # sparse
    monkeypatch.setenv("MINISLM_MEMORY_LIMIT", "4GB")
    started = time.perf_counter()
    with pytest.raises(ResourceError) as info:
        minislm.load(folder)
    message = str(info.value)
    assert time.perf_counter() - started < 5           # refused from headers, no data read
    assert str(folder) in message and "4.00 GB" in message and "MINISLM_MEMORY_LIMIT" in message
    assert "4.94 GB of float32 weights" in message     # bf16 widened: 1.24e9 × 4 bytes
    with pytest.raises(ResourceError):                 # float64 is twice as hard
        minislm.load(folder, dtype=np.float64)


def test_estimate_accounts_for_widening_and_mapping(base, monkeypatch):
    """bf16 on disk costs 4 bytes/param in RAM like float32; float64 costs 8; the
    estimate is the same for a memory-mapped float32 file (its pages are touched)."""
    folder = base / "fp32-1b"
    header_only_checkpoint(folder, LLAMA_32_1B, code="F32")
    config = Config.from_hf_dict(LLAMA_32_1B)
    entries = list(minislm.checkpoint.read_header(folder / "model.safetensors")[0].values())
    bf16_entries = [dict(e, dtype="BF16") for e in entries]
    assert resources.weight_bytes(entries, 4) == resources.weight_bytes(bf16_entries, 4)
    assert resources.weight_bytes(entries, 8)[0] == 2 * resources.weight_bytes(entries, 4)[0]
    assert resources.parameter_count(config) == 1_235_814_400
    monkeypatch.setenv("MINISLM_MEMORY_LIMIT", "5.5GB")
    with pytest.raises(ResourceError):
        resources.check_load(folder, config, entries, 4)
    monkeypatch.setenv("MINISLM_MEMORY_LIMIT", "6GB")
    assert 5.5e9 < resources.check_load(folder, config, entries, 4) < 6e9


def test_memory_limit_parsing_and_system_reading(monkeypatch):
    assert resources.parse_size("4GB") == 4 * 10 ** 9
    assert resources.parse_size("512MiB") == 512 * 2 ** 20
    assert resources.parse_size("1.5g") == 1_500_000_000
    assert resources.parse_size(" 1000 ") == 1000
    monkeypatch.delenv("MINISLM_MEMORY_LIMIT", raising=False)
    available, source = resources.available_memory()
    if Path("/proc/meminfo").exists():
        assert available > 0 and ("MemAvailable" in source or "cgroup" in source)


def test_calibration_preflight(gpt2_dir, monkeypatch):
    model = minislm.load(gpt2_dir)
    need = resources.check_calibration(model, 8, 32)
    assert need >= 2 * 8 * 32 * 16 * 4                 # the windows' hidden states at least
    monkeypatch.setenv("MINISLM_MEMORY_LIMIT", str(need - 1))
    with pytest.raises(ResourceError, match="calibrating on 1000000 windows"):
        resources.check_calibration(model, 1_000_000, 32)
    with pytest.raises(ConfigError):
        monkeypatch.setenv("MINISLM_MEMORY_LIMIT", "plenty")
        resources.check_calibration(model, 1, 8)
    # the layer-by-layer calibration (GPTQ, WANDA, SparseGPT, AWQ) runs the preflight first
    from minislm.calibration import sequential
    monkeypatch.setenv("MINISLM_MEMORY_LIMIT", str(need - 1))
    calls = []
    ids = np.zeros((8, 32), dtype=np.int64)
    with pytest.raises(ResourceError, match="calibrating on 8 windows of 32 tokens"):
        sequential(model, ids, lambda m, i, stats: calls.append(i) or m)
    assert calls == []
    monkeypatch.setenv("MINISLM_MEMORY_LIMIT", str(need))
    assert sequential(model, ids, lambda m, i, stats: calls.append(i) or m) is model
    assert calls == list(range(model.config.n_layer))


@pytest.mark.parametrize("argv", [
    ["quantize", "--method", "gptq", "--group-size", "8", "--n-samples", "100000000"],
    ["prune", "--method", "wanda", "--sparsity", "0.5", "--calib-samples", "100000000"]])
def test_absurd_calibration_is_refused_before_the_windows_are_cut(gpt2_dir, base, monkeypatch,
                                                                   capsys, argv):
    """Once: minutes spent reading the text and cutting 10⁸ windows before the preflight."""
    from minislm import calibration

    def never(*args, **kwargs):
        raise AssertionError("calibration text read before the memory preflight")

    monkeypatch.setattr(calibration, "calibration_text", never)
    monkeypatch.setattr(calibration, "token_windows", never)
    out = base / f"absurd-{argv[0]}"
    rc = cli_main([argv[0], "--model", str(gpt2_dir), *argv[1:], "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("minislm: error: calibrating on 100000000 windows"), err
    assert "token ids" in err and not out.exists()


# =========================================================== numerical hazards
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_nan_activations_are_reported_with_the_layer(base, family):
    model = minislm.load(make_checkpoint(base / f"nan-{family}", family))
    params = dict(model.params)
    name = ("transformer.h.1.mlp.c_fc.weight" if family == "gpt2"
            else "model.layers.1.mlp.up_proj.weight")
    params[name] = np.sign(params[name]) * np.float32(3e38)   # finite, but products overflow
    bad = model.replace(params=params)
    ids = np.array([[1, 2, 3, 4]])
    assert np.isfinite(minislm.forward(model, ids, check_numerics=True)).all()
    with np.errstate(all="ignore"):
        logits = minislm.forward(bad, ids)             # unchecked: garbage flows through
    assert not np.isfinite(logits).all()
    nxt = ("transformer.h.1.mlp.c_proj.weight" if family == "gpt2"
           else "model.layers.1.mlp.down_proj.weight")
    with np.errstate(all="ignore"), pytest.raises(NumericalError) as info:
        minislm.forward(bad, ids, check_numerics=True)
    assert nxt in str(info.value) and "NaN/Inf" in str(info.value)


def test_nan_in_a_block_output_names_the_block(base):
    model = minislm.load(make_checkpoint(base / "nan-out", "llama"))
    params = dict(model.params)
    W = params["model.layers.0.mlp.down_proj.weight"]      # large but finite inputs, then
    params["model.layers.0.mlp.down_proj.weight"] = np.sign(W) * np.float32(3e38)  # overflow
    params["model.layers.0.post_attention_layernorm.weight"] = \
        params["model.layers.0.post_attention_layernorm.weight"] * np.float32(1e3)
    with np.errstate(all="ignore"), pytest.raises(NumericalError, match="block 0"):
        minislm.forward(model.replace(params=params), [[5, 6, 7]], check_numerics=True)


@pytest.fixture(scope="module")
def overflowing_dir(base):
    """A GPT-2 checkpoint with one finite MLP weight of ±3e38: its products overflow."""
    model = minislm.load(make_checkpoint(base / "overflow-src", "gpt2"))
    params = dict(model.params)
    W = params["transformer.h.0.mlp.c_fc.weight"]
    params["transformer.h.0.mlp.c_fc.weight"] = np.sign(W) * np.float32(3e38)
    return minislm.save(model.replace(params=params), base / "overflow")


METRIC_COMMANDS = {   # once: "perplexity nan" (exit 0), empty generations, warnings leaking
    "eval ppl": ["eval", "--task", "ppl", "--data", "{corpus}"],
    "eval qa": ["eval", "--task", "qa", "--limit", "2"],
    "eval toolcall": ["eval", "--task", "toolcall", "--limit", "2", "--max-new-tokens", "8"],
    "eval mc": ["eval", "--task", "mc", "--data", "corpus", "--limit", "2"],
    "eval facts": ["eval", "--task", "facts", "--threads", "1"],
    "generate (greedy)": ["generate", "--prompt", "Return the", "--max-new-tokens", "4"],
    "generate (sampled)": ["generate", "--prompt", "Return the", "--temperature", "1",
                           "--seed", "0"],
    "train (validation loss)": ["train", "--data", "{corpus}", "--steps", "1", "--batch-size",
                                "2", "--seq-len", "16", "--eval-tokens", "64", "--no-progress",
                                "--sample-prompt", "", "--out", "{out}"],
    "finetune (training loss)": ["finetune", "--data", "{corpus}", "--steps", "1",
                                 "--batch-size", "2", "--max-len", "16", "--out", "{out}"],
    "distill (held-out loss)": ["distill", "--teacher", "{model}", "--data", "{corpus}",
                                "--steps", "1", "--out", "{out}"],
    "compress (stage evaluation)": ["compress", "--config", "{pipeline}", "--no-log",
                                    "--out", "{out}"],
}
PIPELINE = """[eval]
ppl_tokens = 128
seqlen = 32
toolcall = 0

[[stage]]
name = "quantize"
method = "rtn"
bits = 8
group_size = 16
"""


@pytest.mark.parametrize("case", list(METRIC_COMMANDS))
def test_overflowing_activations_are_an_error_naming_the_layer(overflowing_dir, corpus, base,
                                                                 monkeypatch, capsys, case):
    import warnings
    monkeypatch.setenv("MINISLM_RUNS", str(base / "runs.jsonl"))
    pipeline = base / "overflow.toml"
    pipeline.write_text(PIPELINE)
    argv = [a.format(corpus=corpus, model=overflowing_dir, out=base / f"ov-{len(case)}",
                     pipeline=pipeline) for a in METRIC_COMMANDS[case]]
    model_option = "--student" if argv[0] == "distill" else "--model"
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        rc = cli_main(argv[:1] + [model_option, str(overflowing_dir)] + argv[1:])
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    last = err.strip().splitlines()[-1]                    # progress bars may come first
    assert last.startswith("minislm: error: ") and "NaN/Inf in activations" in last and \
        "'transformer.h.0.mlp.c_proj.weight'" in last, err
    assert "nan" not in out.lower() and "Warning" not in err, (out, err)
    assert [str(w.message) for w in leaked] == []


def test_no_numpy_warning_reaches_the_terminal(overflowing_dir):
    """The real command line: exactly one line on stderr (once: RuntimeWarnings, then nan)."""
    env = dict(ENV, MINISLM_RUNS=os.devnull)
    done = subprocess.run([sys.executable, "-m", "minislm", "eval", "--model",
                           str(overflowing_dir), "--task", "ppl", "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == "", done
    assert done.stderr.count("\n") == 1 and "transformer.h.0.mlp.c_proj" in done.stderr, done


@pytest.mark.parametrize("fails", [False, True])
def test_warnings_follow_a_success_and_never_precede_an_error(monkeypatch, capsys, fails):
    import warnings
    from minislm.commands import cost
    from minislm.errors import InputError

    def run(args):
        warnings.warn("something overflowed", RuntimeWarning)
        if fails:
            raise InputError("the refusal")
        return 0

    monkeypatch.setattr(cost, "run", run)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        rc = cli_main(["cost", "--config", "x", "--device", "siracusa"])
    err = capsys.readouterr().err
    assert rc == (2 if fails else 0)
    assert [str(w.message) for w in shown] == ([] if fails else ["something overflowed"])
    assert err == ("minislm: error: the refusal\n" if fails else "")


def test_generate_checks_numerics_on_request(overflowing_dir):
    model = minislm.load(overflowing_dir)
    with np.errstate(all="ignore"):
        unchecked = minislm.generate(model, np.array([[1, 2]]), 3, stop_tokens=())
        with pytest.raises(NumericalError, match="transformer.h.0.mlp.c_proj.weight"):
            minislm.generate(model, np.array([[1, 2]]), 3, check_numerics=True)
    assert unchecked[0, 2:].tolist() == [0, 0, 0]       # argmax of NaN logits, silently


def test_gptq_retries_cholesky_with_more_damping_and_reports_it():
    from minislm.calibration import inverse_hessian_factor
    from minislm.quant.gptq import gptq_quantize
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 3)).astype(np.float32)          # rank 3 < 16 inputs
    H = 2.0 * X @ X.T / 3
    H[0, 0] = H[1, 1] = 0.0                                     # and two dead inputs
    W = rng.standard_normal((4, 16)).astype(np.float32)
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(H.astype(np.float64))                 # undamped: fails
    res = gptq_quantize(W, H, bits=4, group_size=8, damp=0.0)
    assert res.damp > 0.0                                        # retried, and reported
    assert np.isfinite(res.quantized.dequantize()).all() and np.isfinite(res.error_gptq)
    indefinite = -np.eye(8) * 1e6 + np.ones((8, 8))
    indefinite[0, 0] = 1.0
    with pytest.raises(NumericalError, match="damping"):
        inverse_hessian_factor(indefinite, damp=1e-6, max_tries=3)


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([2, 3, 4, 8]), st.sampled_from([-1, 0, 4, 8]), st.booleans(),
       st.integers(0, 10_000))
def test_all_zero_groups_quantize_to_exact_zeros(bits, group_size, sym, seed):
    from minislm.quant.rtn import quantize_rtn
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((6, 16)).astype(np.float32)
    W[rng.random(6) < 0.5] = 0.0                                 # whole rows zero
    W[:, 4:8] = 0.0                                              # one whole group zero
    if seed % 3 == 0:
        W[:] = 0.0                                               # the whole matrix zero
    with np.errstate(all="raise"):                              # no division by zero anywhere
        qm = quantize_rtn(W, bits=bits, group_size=group_size, sym=sym)
        W_hat = qm.dequantize()
    assert np.all(np.isfinite(qm.scales.astype(np.float32))) and np.all(qm.scales > 0)
    np.testing.assert_array_equal(W_hat[W.sum(1) == 0], 0.0)    # zero rows stay exactly 0
    if group_size in (4, 8):
        assert np.all(W_hat[:, 4:8] == 0.0)
    assert np.isfinite(qm.mse)


def test_gptq_on_all_zero_weights_and_dead_inputs():
    from minislm.quant.gptq import gptq_quantize
    H = np.zeros((8, 8), np.float32)                             # no input ever active
    res = gptq_quantize(np.zeros((3, 8), np.float32), H, bits=4, group_size=4)
    assert np.all(res.quantized.dequantize() == 0.0) and res.error_gptq == 0.0


# =========================================================== downloads (Hub mocked)
def _fake_hub(monkeypatch, src, files, sizes=None, drop=()):
    """huggingface_hub's HfApi/snapshot_download replaced by a local folder `src`."""
    import types

    import huggingface_hub
    sizes = sizes or {}
    siblings = [types.SimpleNamespace(rfilename=f, size=sizes.get(f, (src / f).stat().st_size
                                                                  if (src / f).exists() else 1))
                for f in files]
    seen = {}

    class FakeApi:
        def model_info(self, repo_id, revision=None, files_metadata=False):
            return types.SimpleNamespace(sha="0123abcd", siblings=siblings)

    def fake_snapshot(repo_id, revision, local_dir, allow_patterns):
        seen.update(revision=revision, patterns=list(allow_patterns))
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        for f in files:
            if f not in drop and (src / f).exists() and \
                    any(Path(f).match(p) for p in allow_patterns):
                (Path(local_dir) / f).write_bytes((src / f).read_bytes())
        return local_dir

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    return seen


def test_download_refuses_pickle_only_repos(base, monkeypatch):
    src = base / "hub-pickle"
    src.mkdir()
    (src / "pytorch_model.bin").write_bytes(b"\x80\x04.")
    (src / "config.json").write_text("{}")
    _fake_hub(monkeypatch, src, ["pytorch_model.bin", "config.json"])
    with pytest.raises(minislm.MinislmError, match="pickle"):
        minislm.download("someone/old", out_dir=base / "dl1")


def test_download_never_fetches_pickles_and_verifies_files(base, gpt2_dir, monkeypatch):
    src = base / "hub-mixed"
    src.mkdir()
    for p in gpt2_dir.iterdir():
        (src / p.name).write_bytes(p.read_bytes())
    (src / "pytorch_model.bin").write_bytes(b"\x80\x04.")
    files = sorted(p.name for p in src.iterdir())
    seen = _fake_hub(monkeypatch, src, files)
    path = minislm.download("someone/mixed", revision="main", out_dir=base / "dl2")
    assert seen["revision"] == "0123abcd"                       # the commit, not "main"
    assert not (path / "pytorch_model.bin").exists()
    assert not any(Path("pytorch_model.bin").match(p) for p in seen["patterns"])
    minislm.load(path)
    _fake_hub(monkeypatch, src, files, drop={"model.safetensors"})
    with pytest.raises(minislm.MinislmError, match="model.safetensors.*not downloaded"):
        minislm.download("someone/mixed", out_dir=base / "dl3")
    assert not (base / "dl3" / "someone--mixed").exists()      # only a .partial folder
    _fake_hub(monkeypatch, src, files, sizes={"config.json": 1})
    with pytest.raises(minislm.MinislmError, match="config.json.*bytes"):
        minislm.download("someone/mixed", out_dir=base / "dl2")  # over the good download
    assert (path / "REVISION").exists() and minislm.load(path)   # which is still intact


def _hf_cache_snapshot(root: Path, folder: Path, shards: int = 2) -> Path:
    """huggingface_hub's cache layout of `folder`, resharded: every file of
    snapshots/<rev>/ is a relative symlink into ../../blobs/<sha256>."""
    import hashlib
    from minislm.checkpoint import write_safetensors
    tensors = {k: np.array(v) for k, v in read_safetensors(folder / "model.safetensors").items()}
    names = sorted(tensors)
    staged = root / "staged"
    staged.mkdir(parents=True)
    weight_map = {}
    for i in range(shards):
        shard = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = names[i::shards]
        write_safetensors(staged / shard, {n: tensors[n] for n in part})
        weight_map.update(dict.fromkeys(part, shard))
    (staged / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    for p in folder.iterdir():
        if p.name != "model.safetensors":
            (staged / p.name).write_bytes(p.read_bytes())
    repo = root / "models--someone--tiny"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for p in sorted(staged.iterdir()):
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        p.rename(repo / "blobs" / digest)
        (snapshot / p.name).symlink_to(Path("..") / ".." / "blobs" / digest)
    return snapshot


def test_huggingface_cache_layout_with_symlinked_shards(base, gpt2_dir):
    """What huggingface_hub leaves on disk (once refused: every shard 'missing')."""
    snapshot = _hf_cache_snapshot(base / "hf-cache", gpt2_dir)
    assert all(p.is_symlink() for p in snapshot.iterdir())
    model, reference = minislm.load(snapshot), minislm.load(gpt2_dir)
    ids = np.arange(1, 9)[None, :]
    np.testing.assert_array_equal(minislm.forward(model, ids), minislm.forward(reference, ids))
    shard = snapshot / "model-00002-of-00002.safetensors"     # a blob not downloaded yet
    (snapshot.parents[1] / "blobs" / os.readlink(shard).split("/")[-1]).unlink()
    with pytest.raises(minislm.MinislmError, match="model-00002-of-00002.*missing.*symlink"):
        minislm.load(snapshot)
