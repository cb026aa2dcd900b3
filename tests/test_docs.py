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
