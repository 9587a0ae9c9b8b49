"""Every lesson, and every solution to its exercises, runs top to bottom and passes its own
assertions.

The scripts run as subprocesses, as many at a time as the machine has usable cores: each
lesson works on a tiny model with one BLAS thread (the library's thread policy), so on two
cores two lessons side by side take half the wall time of one after another. Lesson 07
trains the tool-calling model the compression lessons (09-15) and some solutions are judged
on; those wait for it, so it is trained once (common.toolcall_model caches it in the shared
output folder).
"""
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from minislm.threads import usable_cores

LESSONS_DIR = Path(__file__).resolve().parents[1] / "lessons"
LESSONS = sorted(LESSONS_DIR.glob("[0-9][0-9]_*.py"))
SOLUTIONS = sorted((LESSONS_DIR / "solutions").glob("[0-9][0-9]_*.py"))
TRAINS_THE_SHARED_MODEL = LESSONS_DIR / "07_special_tokens_and_tool_calling.py"
TIMEOUT = 600


def uses_the_shared_model(script: Path) -> bool:
    return script != TRAINS_THE_SHARED_MODEL and "toolcall_" in script.read_text(encoding="utf-8")


def run_script(script, out, cwd):
    """Run one script with the lessons' output folder `out`; (returncode, stdout, stderr)."""
    env = dict(os.environ, MPLBACKEND="Agg", MINISLM_LESSON_OUT=str(out))
    try:
        done = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as timeout:
        return -1, str(timeout.stdout or ""), f"timed out after {TIMEOUT} s"
    return done.returncode, done.stdout, done.stderr


def check(result, script):
    code, stdout, stderr = result
    assert code == 0, f"{script.name} failed:\n{stdout[-3000:]}\n{stderr[-3000:]}"
    return stdout


@pytest.fixture(scope="session")
def lesson_runs(request, tmp_path_factory):
    """Every selected lesson and solution started on a pool of `usable_cores()` workers,
    keyed by path -> Future of (returncode, stdout, stderr); one output folder for the run."""
    out = tmp_path_factory.mktemp("lesson-out")
    shared_model_ready = threading.Event()
    selected = {item.callspec.params.get(name) for item in request.session.items
                if hasattr(item, "callspec") for name in ("lesson", "solution")}

    def job(script, cwd):
        if uses_the_shared_model(script):
            shared_model_ready.wait()
        try:
            return run_script(script, out, cwd)
        finally:
            if script == TRAINS_THE_SHARED_MODEL:
                shared_model_ready.set()

    scripts = [s for s in LESSONS + SOLUTIONS if s in selected]
    if TRAINS_THE_SHARED_MODEL not in scripts:
        shared_model_ready.set()
    # the trainer first, then what does not need its model, then what does
    order = sorted(scripts, key=lambda s: (s != TRAINS_THE_SHARED_MODEL, uses_the_shared_model(s)))
    pool = ThreadPoolExecutor(max_workers=max(1, usable_cores()))
    runs = {s: pool.submit(job, s, tmp_path_factory.mktemp(s.stem)) for s in order}
    yield runs
    pool.shutdown(wait=True)


def test_lessons_exist():
    assert len(LESSONS) >= 3, "the study path starts with lessons 01-03"


def test_exercises_have_runnable_solutions():
    """Exercises are solved in lessons/solutions/<same name> (or, in the lesson, in a cell
    that runs after a 'Solution:' line)."""
    missing = [p.name for p in LESSONS if "## Exercises" in (text := p.read_text(encoding="utf-8"))
               and "Solution:" not in text and not (LESSONS_DIR / "solutions" / p.name).exists()]
    assert not missing, f"lessons whose exercises have no solution file: {missing}"


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs(lesson, lesson_runs):
    check(lesson_runs[lesson].result(), lesson)


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_solution_runs(solution, lesson_runs):
    check(lesson_runs[solution].result(), solution)


def test_figures_are_written_where_the_lesson_says(tmp_path):
    """save_figure writes OUT/name.png and prints that path (the lessons' figure folder)."""
    script = tmp_path / "figure.py"
    script.write_text("import sys\nsys.path.insert(0, %r)\nimport common\n"
                      "plt = common.pyplot()\nfig, ax = plt.subplots()\nax.plot([0, 1])\n"
                      "common.save_figure(fig, 'probe')\n" % str(LESSONS_DIR))
    printed = check(run_script(script, tmp_path / "out", tmp_path), script)
    assert (tmp_path / "out" / "probe.png").stat().st_size > 0
    assert str(tmp_path / "out" / "probe.png") in printed
