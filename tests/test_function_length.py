"""tools/function_length.py: no function body in src/cytofm over 60 lines (signature and docstring not
counted), and the checker reports a 61-line body but not a 60-line one.

Run alone: python -m pytest -q tests/test_function_length.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "function_length.py"


def _run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def _function(name: str, body_lines: int, signature_lines: int = 0) -> str:
    """``def name``: a long signature, a docstring, then ``body_lines`` lines of body."""
    params = "".join(f"    p{i}: int = {i},\n" for i in range(signature_lines))
    body = "".join(f"    x{i} = {i}\n" for i in range(body_lines - 1)) + "    return 0\n"
    return f'def {name}(\n{params}):\n    """A docstring\n\n    over three lines."""\n{body}\n\n'


def test_no_function_in_the_package_is_too_long():
    r = _run()
    assert r.returncode == 0, f"function bodies over 60 lines:\n{r.stdout}"
    assert r.stdout.startswith("OK")


def test_a_61_line_body_is_reported_and_a_60_line_one_is_not(tmp_path):
    parts = [_function("fits", 60, signature_lines=30), "class Holder:\n",
             "".join("    " + ln if ln.strip() else ln for ln in _function("method", 61).splitlines(True)),
             _function("long_one", 80), _function("too_long", 61, signature_lines=5)]
    text = "".join(parts)
    (tmp_path / "planted.py").write_text(text)
    def_line = {ln.split("def ")[1].split("(")[0]: i for i, ln in enumerate(text.splitlines(),
                                                                            1) if "def " in ln}
    r = _run("planted.py", "--max", "60", cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    # longest first; "fits" (a 60-line body, a 30-line signature) is not there
    assert r.stdout.splitlines() == [
        f"planted.py:{def_line['long_one']} long_one 80",
        f"planted.py:{def_line['method']} Holder.method 61",
        f"planted.py:{def_line['too_long']} too_long 61",
    ]
    r = _run("planted.py", "--max", "80", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("OK"), r.stdout
