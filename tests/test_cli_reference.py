"""docs/cli.md is the commands' `--help`, rendered by scripts/cli_reference.py; it must not drift.

Changing a command or an option makes this fail on purpose: run `python scripts/cli_reference.py`
and commit docs/cli.md with the change.
"""

from __future__ import annotations

import importlib.util
import re
from importlib.metadata import version
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cli.md"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return _script()


@pytest.fixture(scope="module")
def rendered(script: ModuleType) -> str:
    return script.render()


def test_docs_cli_md_is_the_help_of_every_command(script: ModuleType, rendered: str) -> None:
    committed = DOC.read_text(encoding="utf-8") if DOC.is_file() else ""
    if committed != rendered:
        diff = script.diff(rendered, committed)
        shown = "\n".join(diff.splitlines()[:80])
        pytest.fail(
            f"docs/cli.md is not what the commands' --help prints now (typer {version('typer')}, "
            f"rich {version('rich')}). After changing a command or an option, regenerate it with\n\n"
            f"    {script.REGENERATE}\n\nand commit docs/cli.md. Diff (committed -> now):\n{shown}",
            pytrace=False,
        )


def test_rendering_ignores_the_callers_terminal(script: ModuleType, rendered: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # What differs between a developer's terminal, CI and a container must not reach the file.
    for name, value in {"COLUMNS": "37", "LINES": "5", "TERMINAL_WIDTH": "61", "FORCE_COLOR": "1",
                        "PY_COLORS": "1", "CLICOLOR_FORCE": "1", "GITHUB_ACTIONS": "true",
                        "TERM": "xterm-256color", "COLORTERM": "truecolor", "LANG": "C", "LC_ALL": "C",
                        "PYTHONIOENCODING": "latin-1", "TYPER_USE_RICH": "0",
                        "MOVIEREC_DATA": "/nonexistent", "PYTHONPATH": "/nonexistent"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert script.render() == rendered


def test_every_command_has_a_section(rendered: str) -> None:
    from typer.main import get_command

    from movierec.cli import app

    def paths(command: object, path: tuple[str, ...]) -> list[str]:
        found = [" ".join(("movierec", *path))]
        for name, child in (getattr(command, "commands", None) or {}).items():
            if not getattr(child, "hidden", False):
                found += paths(child, (*path, name))
        return found

    titles = re.findall(r"^## (movierec.*)$", rendered, flags=re.M)
    assert titles == paths(get_command(app), ())
    for title in titles:  # each section shows that command's own usage line
        assert f"Usage: {title} [OPTIONS]" in rendered, title
    assert "\x1b[" not in rendered  # no colour codes
    assert all(line == line.rstrip() for line in rendered.splitlines())
