"""The README is a user's manual that says true things: its tables of the suites' main commands are the
golden records tests/test_golden.py reruns, the defaults it states are the code's, every command, option,
suite and method setting it names exists, and its measured history (timings) lives in docs/RESULTS.md."""

from __future__ import annotations

import dataclasses
import re
import shlex

import pandas as pd
import pytest
from test_golden import COMMANDS, GOLDEN, ROOT

from unlearnbench.benchmarks.base import SUITES
from unlearnbench.cli import COMMANDS as SUBCOMMANDS
from unlearnbench.cli import build_parser
from unlearnbench.methods.base import METHODS
from unlearnbench.reports.claims import NAME as CLAIMS
from unlearnbench.reports.paper import PAPER_TABLES, ROBUSTNESS
from unlearnbench.reports.tables import summary_table

README = (ROOT / "README.md").read_text()
LINES = README.splitlines()
SUITE_SETTINGS = {f.name for _, cls in SUITES.items() for f in dataclasses.fields(cls.Config)}
# The "at most about 250", with the claims table and the attacks section later issues asked for: history goes
# to docs/RESULTS.md, protocol to docs/PROTOCOLS.md.
MAX_LINES = 270


def test_the_readme_is_a_manual_not_a_history():
    assert len(LINES) <= MAX_LINES, f"README.md has {len(LINES)} lines; move detail to docs/ (at most {MAX_LINES})"
    # Timings are measurements of a day and a machine; no test reruns them, so they live in docs/RESULTS.md.
    timings = [line for line in LINES if re.search(r"\b\d+(\.\d+)?\s?(s|min|minutes|seconds)\b", line)]
    assert not timings, f"timings in README.md (dated measurements belong in docs/RESULTS.md): {timings}"


def markdown_table(start: int) -> tuple[list[str], list[list[str]]] | None:
    """The Markdown table beginning within a few lines after line ``start``: header cells and rows."""
    for i in range(start + 1, min(start + 6, len(LINES))):
        if LINES[i].startswith("|"):
            block = []
            for line in LINES[i:]:
                if not line.startswith("|"):
                    break
                block.append([cell.strip() for cell in line.strip().strip("|").split("|")])
            return block[0], block[2:]
    return None


@pytest.mark.parametrize("suite", sorted(COMMANDS))
def test_readme_tables_are_the_golden_records(suite):
    command = "python bench.py " + " ".join(COMMANDS[suite])
    tables = [t for n, line in enumerate(LINES) if command in line and (t := markdown_table(n)) is not None]
    assert tables, f"README.md has no table right after `{command}`"
    records = pd.read_parquet(GOLDEN / suite / "records.parquet")
    for header, rows in tables:
        assert header[0] == "method"
        expected = summary_table(records, header[1:])
        shown = pd.DataFrame([row[1:] for row in rows], index=[row[0] for row in rows], columns=header[1:])
        assert list(shown.index) == list(expected.index), (
            f"README's `{command}` table rows {list(shown.index)} are not the golden records' {list(expected.index)}")
        for method in expected.index:
            assert list(shown.loc[method]) == list(expected.loc[method]), (
                f"README's `{command}` row {method!r}: {list(shown.loc[method])}; the golden records "
                f"(tests/golden/{suite}/) give {list(expected.loc[method])}")


def suite_row(suite: str) -> str:
    rows = [line for line in LINES if line.startswith(f"| `{suite}`")]
    assert len(rows) == 1, f"README.md's suites table needs one row for {suite}"
    return rows[0]


@pytest.mark.parametrize("suite", sorted(COMMANDS))
def test_defaults_the_readme_states_are_the_codes(suite):
    defaults = {f.name: f.default for f in dataclasses.fields(SUITES.get(suite).Config)}
    stated = re.findall(r"`(\w+)` \(([^)]+)\)", suite_row(suite))
    stated = [(name, value) for name, value in stated if name in defaults]
    assert stated, f"the suites table states no default of {suite}"
    for name, value in stated:
        default = defaults[name]
        same = float(value) == default if isinstance(default, float) else value == str(default)
        assert same, f"README.md says {suite}'s {name} defaults to {value}; the code's default is {default!r}"


def readme_commands() -> list[list[str]]:
    """Every `python bench.py ...` / `unlearnbench ...` command line in README.md, as tokens after the program."""
    text = README.replace("\\\n", " ")
    found = re.findall(r"^(?:python bench\.py|unlearnbench) (.*)$", text, flags=re.M)
    found += re.findall(r"`(?:python bench\.py|unlearnbench) ([^`]*)`", text)
    return [shlex.split(line, comments=True) for line in found if "..." not in line and "ARGS" not in line]


def options(subcommand: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[subcommand]
    return {option for action in sub._actions for option in action.option_strings}


def test_every_command_and_option_in_the_readme_exists():
    commands = readme_commands()
    assert len(commands) > 10
    for tokens in commands:
        sub = tokens[0] if tokens and tokens[0] in SUBCOMMANDS else "run"
        known = options(sub)
        for i, token in enumerate(tokens):
            if token.startswith("--"):
                assert token.split("=")[0] in known, f"`bench.py {shlex.join(tokens)}`: {sub} has no {token}"
            previous = tokens[i - 1] if i else ""
            if previous == "--set":
                assert token.split("=")[0] in SUITE_SETTINGS, f"`bench.py {shlex.join(tokens)}`: no setting {token}"
            if previous == "--methods" and "--plugin" not in tokens:
                for name in token.split(","):
                    assert name in METHODS, f"`bench.py {shlex.join(tokens)}`: no method {name!r}"
        if sub == "paper":
            known = {*PAPER_TABLES, CLAIMS, ROBUSTNESS}
            assert tokens[1] in known, f"`bench.py {shlex.join(tokens)}`: no table {tokens[1]!r}"


def test_every_setting_the_readme_names_exists():
    for key in re.findall(r"--set\s+(\w+)=", README):
        assert key in SUITE_SETTINGS, f"README.md names `--set {key}=`, which no suite has"
    for method, key in re.findall(r"--method-set\s+([\w-]+)\.(\w+)=", README):
        fields = {f.name for f in dataclasses.fields(METHODS.get(method).Config)}
        assert key in fields, f"README.md names `--method-set {method}.{key}=`, which {method} does not have"
    for method, key in re.findall(r"`([\w-]+)\.(\w+)=[^`]*`", README):
        if method in METHODS:
            assert key in {f.name for f in dataclasses.fields(METHODS.get(method).Config)}, f"{method}.{key}"
