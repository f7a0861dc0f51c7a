"""Every command's ``--help`` as people read it: flags take no value, so none is shown
with a value type (``--json <bool>`` would read as if it took one)."""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import metadata

import pytest

#: A row of a "Commands" panel: ``│ name   what it does │``.
_COMMAND_ROW = re.compile(r"^│ ([a-z][a-z0-9-]*)\s{2,}")


def _entry_point() -> Callable[[], None]:
    main: Callable[[], None] = metadata.entry_points(group="console_scripts")["pushtrack"].load()
    return main


def _help(
    main: Callable[[], None],
    path: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    monkeypatch.setattr("sys.argv", ["pushtrack", *path, "--help"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code in (0, None), path
    return capsys.readouterr().out


def _commands(text: str) -> list[str]:
    """The command names a help page's "Commands" panel lists."""
    names: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("╭"):
            inside = "Commands" in line
        elif inside and (row := _COMMAND_ROW.match(line)):
            names.append(row.group(1))
    return names


def test_no_flag_shows_a_value_type(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    main = _entry_point()
    pages: dict[tuple[str, ...], str] = {}
    todo: list[list[str]] = [[]]
    while todo:
        path = todo.pop()
        text = pages[tuple(path)] = _help(main, path, capsys, monkeypatch)
        todo += [[*path, name] for name in _commands(text)]
    assert ("serve",) in pages  # the walk found the commands
    assert ("app", "create") in pages  # and the groups' commands
    assert "--help" in pages[()]
    assert "--json" in pages[("app", "create")]
    shown = {path: text for path, text in pages.items() if "<bool>" in text}
    assert not shown, f"flags shown with a value type in: {sorted(shown)}"
    # options that do take a value still say what it is
    assert any("<int>" in text or "<str>" in text for text in pages.values())
