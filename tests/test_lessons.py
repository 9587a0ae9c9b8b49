"""Every lesson, and every solution to its exercises, runs top to bottom and passes its own
assertions."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

LESSONS_DIR = Path(__file__).resolve().parents[1] / "lessons"
LESSONS = sorted(LESSONS_DIR.glob("[0-9][0-9]_*.py"))
SOLUTIONS = sorted((LESSONS_DIR / "solutions").glob("[0-9][0-9]_*.py"))


@pytest.fixture(scope="session")
def lesson_out(tmp_path_factory):
    """One output folder for the whole run: lesson 07's tool-calling model, trained once,
    is reused by the compression lessons and the solutions (common.toolcall_model)."""
    return tmp_path_factory.mktemp("lesson-out")


def run_script(script, out, cwd):
    env = dict(os.environ, MPLBACKEND="Agg", MINISLM_LESSON_OUT=str(out))
    result = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{script.name} failed:\n{result.stdout[-3000:]}\n" \
                                   f"{result.stderr[-3000:]}"
    return result.stdout


def test_lessons_exist():
    assert len(LESSONS) >= 3, "the study path starts with lessons 01-03"


def test_exercises_have_runnable_solutions():
    """Exercises are solved in lessons/solutions/<same name> (or, in the lesson, in a cell
    that runs after a 'Solution:' line)."""
    missing = [p.name for p in LESSONS if "## Exercises" in (text := p.read_text(encoding="utf-8"))
               and "Solution:" not in text and not (LESSONS_DIR / "solutions" / p.name).exists()]
    assert not missing, f"lessons whose exercises have no solution file: {missing}"


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs(lesson, lesson_out, tmp_path):
    run_script(lesson, lesson_out, tmp_path)


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_solution_runs(solution, lesson_out, tmp_path):
    run_script(solution, lesson_out, tmp_path)


def test_figures_are_written_where_the_lesson_says(lesson_out, tmp_path):
    """save_figure writes OUT/name.png and prints that path (the lessons' figure folder)."""
    script = tmp_path / "figure.py"
    script.write_text("import sys\nsys.path.insert(0, %r)\nimport common\n"
                      "plt = common.pyplot()\nfig, ax = plt.subplots()\nax.plot([0, 1])\n"
                      "common.save_figure(fig, 'probe')\n" % str(LESSONS_DIR))
    printed = run_script(script, tmp_path / "out", tmp_path)
    assert (tmp_path / "out" / "probe.png").stat().st_size > 0
    assert str(tmp_path / "out" / "probe.png") in printed
