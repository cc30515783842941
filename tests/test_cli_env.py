"""A command's environment variables (MTEB_CACHE, TOKENIZERS_PARALLELISM, --debug) last for the
command only: a later command in the same process, or a test, sees the user's own settings."""

from __future__ import annotations

import os

import pytest

from harness.cli import main
from harness.failures import DEBUG_ENV

NAMES = ("MTEB_CACHE", "TOKENIZERS_PARALLELISM", DEBUG_ENV)


@pytest.mark.parametrize("argv", [["tasks", "--debug"], ["train", "/nonexistent/config.yaml", "--debug"]])
def test_a_command_leaves_the_environment_as_it_found_it(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    for name in NAMES[1:]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MTEB_CACHE", "/user/own/mteb")
    seen: dict[str, str | None] = {}
    from harness.cli import commands

    real = commands.cmd_tasks if argv[0] == "tasks" else None
    if real is not None:  # look inside the command: the variables are set while it runs
        def spy(args: object) -> int:
            seen.update({name: os.environ.get(name) for name in NAMES})
            return real(args)

        monkeypatch.setattr(commands, "cmd_tasks", spy)
    code = main(argv)
    assert {name: os.environ.get(name) for name in NAMES} == {"MTEB_CACHE": "/user/own/mteb",
                                                              "TOKENIZERS_PARALLELISM": None, DEBUG_ENV: None}
    if real is not None:
        assert code == 0
        assert seen == {"MTEB_CACHE": "/user/own/mteb", "TOKENIZERS_PARALLELISM": "false", DEBUG_ENV: "1"}
    else:
        assert code != 0 and "nonexistent" in capsys.readouterr().err
