"""The README's options table is the one generated from gkit.config."""
from pathlib import Path

from gkit.config import options_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_readme_options_table_matches_config():
    text = (ROOT / "README.md").read_text()
    start = text.index("<!-- options-table -->") + len("<!-- options-table -->")
    end = text.index("<!-- /options-table -->")
    assert text[start:end].strip() == options_markdown(), (
        "README.md's options table is stale: paste the output of `python -m gkit.config`")


def test_every_option_has_a_cli_flag_or_says_api_only():
    from gkit.cli import build_parser
    from gkit.config import OPTIONS

    flags = {a.dest for a in build_parser()._actions}
    for field in OPTIONS:
        assert field.name in flags or not field.metadata.get("cli", True), field.name


def _first_python_block() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("```python\n") + len("```python\n")
    return text[start:text.index("```", start)]


def test_readme_first_example_says_where_it_serves_and_stops_on_ctrl_c(tmp_path):
    """Issue 8 point 15: the first example prints its address and Ctrl-C ends it cleanly."""
    import re
    import signal
    import subprocess
    import sys

    import requests

    code = _first_python_block()
    assert "port=8080" in code
    script = tmp_path / "first.py"
    script.write_text(code.replace("port=8080", "ip='127.0.0.1', port=0"))
    proc = subprocess.Popen([sys.executable, "-u", str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        match = re.match(r"serving on http://127\.0\.0\.1:(\d+)/", line)
        assert match, f"the example printed {line!r}"
        reply = requests.get(f"http://127.0.0.1:{match.group(1)}/", timeout=5)
        assert reply.text == "hello HTTP!"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
