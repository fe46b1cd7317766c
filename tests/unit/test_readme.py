"""The README tells users what to write and what the exit codes mean: it must say what the
code and the tested examples do."""

import re
from pathlib import Path

import pytest
from truenas_vmware_coord.cli import main as cli
from truenas_vmware_coord.engine.config import EngineConfig

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def fenced_blocks(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^```[a-z]*\n(.*?)^```$", text, re.S | re.M)]


@pytest.mark.parametrize("example", ["examples/sanoid/sanoid.conf", "examples/zrepl/zrepl.yml"])
def test_readme_quotes_each_tested_example_whole(example):
    # The scheduler tests run these files; a README that drifted from them would be untested advice.
    assert (ROOT / example).read_text() in fenced_blocks(README)


def test_exit_code_table_lists_the_codes_the_tool_uses():
    table = README[README.index("### Exit codes"):README.index("## With sanoid")]
    documented = [int(code) for code in re.findall(r"^\| (\d) \|", table, re.M)]
    codes = {cli.EXIT_OK, cli.EXIT_DEGRADED, cli.EXIT_INPUT, cli.EXIT_ZFS, cli.EXIT_OTHER}
    assert documented == sorted(codes)
    # ...and the module docstring (the tool's --help) says the same codes.
    assert [int(c) for c in re.findall(r"^  (\d)  ", cli.__doc__, re.M)] == documented


def test_readme_states_the_journal_retention_defaults():
    config, words = EngineConfig(), " ".join(README.split())
    assert f"`journal_retention.days` ({config.retention_days:g})" in words
    assert f"`journal_retention.runs` ({config.retention_runs})" in words
