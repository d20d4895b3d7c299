"""`twins-nas --help` on a wide terminal: the root text names every command, and the command
list gives each one a summary that is one complete sentence on one line."""
from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from twins_nas.cli import app

COMMANDS = ("show", "profile", "retarget", "search", "export", "fidelity", "supernet", "dashboard")
ROW = re.compile(r"^│ (?P<name>[a-z]+) {2,}(?P<summary>\S.*?)\s*│$")       # a command and its summary
CONTINUED = re.compile(r"^│ {3,}(?P<text>\S.*?)\s*│$")                     # a summary's wrapped remainder


def root_help() -> str:
    res = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    return res.stdout


def command_rows(text: str) -> dict[str, list[str]]:
    """Each command of the 'Commands' panel -> the lines of its summary, as the terminal shows them."""
    panel = text[text.index("─ Commands "):]
    rows: dict[str, list[str]] = {}
    last = None
    for line in panel.splitlines()[1:]:
        if line.startswith("╰"):
            break
        m = ROW.match(line)
        if m:
            last = m["name"]
            rows[last] = [m["summary"]]
        elif (c := CONTINUED.match(line)) and last is not None:
            rows[last].append(c["text"])
    return rows


def test_the_root_text_names_every_command():
    head = " ".join(root_help().split("╭─ Options")[0].split())
    for name in COMMANDS:
        assert re.search(rf"\b{name}\b", head), (name, head)


def test_the_command_list_holds_every_command_and_no_other():
    assert list(command_rows(root_help())) == list(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_a_one_line_summary_that_ends_with_a_full_stop(name):
    lines = command_rows(root_help())[name]
    assert len(lines) == 1, lines
    assert lines[0].endswith(".") and len(lines[0].split()) >= 4, lines[0]
