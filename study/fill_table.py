"""Replace the grid table between <!-- grid --> markers in study/RESULTS.md by report.py's."""
import contextlib
import io
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402

buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    report.grid()
path = Path(__file__).resolve().parent / "RESULTS.md"
text = path.read_text()
text = re.sub(r"<!-- grid -->.*?<!-- /grid -->",
              lambda m: "<!-- grid -->\n" + buf.getvalue() + "<!-- /grid -->", text, flags=re.S)
path.write_text(text)
