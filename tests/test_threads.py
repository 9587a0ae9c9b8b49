"""The BLAS thread policy (minislm/threads.py): the cores no other process is using.

Once, OpenBLAS ran one spinning thread per core whatever else the machine was
doing (GPT-2-124M prefill fell to 0.69x transformers with one busy process per
core), while the tests and lessons forced one thread and never saw it.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minislm
from minislm import threads
from minislm.errors import ConfigError
from minislm.model import Model

from reliability_helpers import make_checkpoint

REPO = Path(__file__).resolve().parents[1]


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in threads.BLAS_VARIABLES and k != threads.ENV_VAR}
    return dict(env, PYTHONPATH=str(REPO), **extra)


def big_model():
    """A Model whose parameter count is over the small-model line (no arrays allocated)."""
    w = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (5000, 5000), (0, 0))
    return Model(config=None, params={"w": w})


def test_policy(monkeypatch):
    for var in (*threads.BLAS_VARIABLES, threads.ENV_VAR):
        monkeypatch.delenv(var, raising=False)
    small = Model(config=None, params={"w": np.zeros((10, 10), np.float32)})
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(threads, "busy_cores", lambda: 0)
    assert threads.policy_threads(small) == 1                 # tiny matrices: never shared
    assert threads.policy_threads(big_model()) == 8           # a quiet machine: every core
    monkeypatch.setattr(threads, "busy_cores", lambda: 3)
    assert threads.policy_threads(big_model()) == 5           # the cores nobody else uses
    assert threads.policy_threads() == 5
    monkeypatch.setattr(threads, "busy_cores", lambda: 20)
    assert threads.policy_threads(big_model()) == 1           # at least one
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")           # the user chose: leave the BLAS
    assert threads.policy_threads(big_model()) is None and threads.apply() is None
    monkeypatch.setenv(threads.ENV_VAR, "3")                  # minislm's own setting wins
    assert threads.policy_threads(small) == 3
    monkeypatch.setenv(threads.ENV_VAR, "many")
    with pytest.raises(ConfigError, match="MINISLM_THREADS"):
        threads.policy_threads()


def test_apply_sets_the_blas_and_a_chosen_count_stands(monkeypatch):
    controls = threads._openblas_controls()
    if controls is None:
        pytest.skip("no OpenBLAS thread control in this NumPy build")
    get, set_ = controls
    for var in (*threads.BLAS_VARIABLES, threads.ENV_VAR):
        monkeypatch.delenv(var, raising=False)
    before = get()
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda: 0)
    try:
        assert threads.apply(big_model()) == 2 and get() == 2
        with threads.blas_threads(1):
            assert threads.apply(big_model()) is None and get() == 1   # --threads 1 stands
        assert get() == 2
        monkeypatch.setattr(threads, "busy_cores", lambda: 2)
        assert threads.apply(big_model()) == 1 and get() == 1
    finally:
        set_(before)


def test_busy_cores_sees_other_processes():
    """Two CPU-bound children are counted as busy (they run or wait for a core)."""
    if threads._running_tasks() is None:
        pytest.skip("no /proc/stat on this system")
    children = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:         # both started and spinning
            ticks = [int(open(f"/proc/{c.pid}/stat").read().rsplit(")", 1)[1].split()[11])
                     for c in children]
            if min(ticks) > 0:
                break
            time.sleep(0.05)
        assert max(threads.busy_cores(samples=9) for _ in range(3)) >= 2
    finally:
        for c in children:
            c.kill()
            c.wait()


def test_load_applies_the_policy_in_a_fresh_process(tmp_path):
    """No thread variable set: loading a tiny model leaves one BLAS thread."""
    folder = make_checkpoint(tmp_path / "tiny", "gpt2")
    script = ("import json, sys, minislm\n"
              "from minislm import threads\n"
              "get, _ = threads._openblas_controls()\n"
              "before = get()\n"
              "minislm.load(sys.argv[1])\n"
              "print(json.dumps([before, get()]))\n")
    done = subprocess.run([sys.executable, "-c", script, str(folder)], env=clean_env(),
                          capture_output=True, text=True, timeout=120)
    if "TypeError: cannot unpack non-iterable NoneType" in done.stderr:
        pytest.skip("no OpenBLAS thread control in this NumPy build")
    assert done.returncode == 0, done.stderr
    before, after = json.loads(done.stdout)
    assert after == 1, (before, after)


def test_tests_and_lessons_do_not_force_the_blas_threads():
    """They run under the library's policy, as users do (once: OPENBLAS_NUM_THREADS=1 in
    conftest.py, test_lessons.py, test_reliability.py and three lessons)."""
    forcing = re.compile(r"""["'](OPENBLAS|OMP|MKL)_NUM_THREADS["']\s*[,\]=:)]""")
    offenders = [str(p.relative_to(REPO)) for folder in ("tests", "lessons")
                 for p in sorted((REPO / folder).glob("*.py"))
                 if p.name != "test_threads.py" and forcing.search(p.read_text())]
    assert offenders == []


def _job(seed):
    """A small deterministic job and the process that ran it."""
    x = np.random.default_rng(seed).standard_normal((64, 64)).astype(np.float32)
    return float((x @ x.T).sum()), os.getpid()


def test_lessons_run_independent_jobs_side_by_side_on_free_cores(monkeypatch):
    """Lesson 07's two fine-tunes run in two processes when two cores are free (once: one
    after another, 61 s on a quiet machine against a 60 s limit); same results."""
    sys.path.insert(0, str(REPO / "lessons"))
    try:
        import common
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(threads, "free_cores", lambda: 1)
    alone = common.side_by_side(_job, (0,), (1,))
    assert {pid for _, pid in alone} == {os.getpid()}
    monkeypatch.setattr(threads, "free_cores", lambda: 2)
    together = common.side_by_side(_job, (0,), (1,))
    assert [v for v, _ in together] == [v for v, _ in alone]
    assert os.getpid() not in {pid for _, pid in together}       # in worker processes
    lesson = (REPO / "lessons" / "07_special_tokens_and_tool_calling.py").read_text()
    assert "side_by_side(finetune_toolcall" in lesson
