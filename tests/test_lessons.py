"""Every lesson runs top to bottom and passes its own assertions."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

LESSONS = sorted((Path(__file__).resolve().parents[1] / "lessons").glob("[0-9][0-9]_*.py"))


def test_lessons_exist():
    assert len(LESSONS) >= 3, "the study path starts with lessons 01-03"


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs(lesson, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg", MINISLM_LESSON_OUT=str(tmp_path))
    env.setdefault("OPENBLAS_NUM_THREADS", "1")   # tiny models: threads only add spinning
    result = subprocess.run([sys.executable, str(lesson)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{lesson.name} failed:\n{result.stdout[-3000:]}\n" \
                                   f"{result.stderr[-3000:]}"
