"""Flag defaults are written once, in the configs: the parsed flags build the configs' own
defaults, help shows them, and building the parser imports none of them."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import subprocess
import sys
from collections.abc import Iterator

import pytest

from acecoder.cli import build_parser
from acecoder.cli.common import Default, default_of, executor_config, reward_config, shown


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    size: int = 3
    names: tuple[str, ...] = dataclasses.field(default_factory=lambda: ("a", "b"))
    bare: int


def run(*, budget: float = 0.5, k: int) -> None:
    """A function whose parameters hold defaults, like `rerank.run`."""


def test_default_of_reads_fields_factories_and_parameters() -> None:
    assert default_of(Config, "size") == 3
    assert default_of(Config, "names") == ("a", "b")
    assert default_of(run, "budget") == 0.5
    assert default_of("acecoder.executor.config:ExecutorConfig", "max_queue") == 256
    with pytest.raises(ValueError, match="has no default for 'bare'"):
        default_of(Config, "bare")
    with pytest.raises(ValueError, match="has no default for 'nope'"):
        default_of(Config, "nope")
    with pytest.raises(ValueError, match="run has no default for 'k'"):
        default_of(run, "k")


@pytest.mark.parametrize(("value", "text"), [
    (3.0, "3"), (0.1, "0.1"), (1e-5, "1e-5"), (5e-07, "5e-7"), (2.5e-10, "2.5e-10"), (4096, "4096"),
    ("auto", "auto"), (True, "True"),
])
def test_defaults_read_as_people_write_them(value: object, text: str) -> None:
    assert shown(value) == text


def actions(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for where, a in actions(sub):
                    yield f"{name} {where}".strip(), a
        else:
            yield "", action


def test_every_config_default_resolves() -> None:
    """A renamed config field fails here, not when someone asks for help."""
    found = [(where, a) for where, a in actions(build_parser()) if isinstance(a.default, Default)]
    assert len(found) > 60
    for where, a in found:
        assert a.default.value is not None or a.default.shown_only, (where, a.dest)
        assert str(a.default), (where, a.dest)


def test_parsed_flags_make_the_configs_own_defaults() -> None:
    from acecoder.executor.config import ExecutorConfig
    from acecoder.server.rm.config import RewardConfig
    from acecoder.server.synth.pairs import PairRule

    parse = build_parser().parse_args
    assert executor_config(parse(["serve", "executor"])) == ExecutorConfig()
    assert executor_config(parse(["exec", "--input", "i", "--output", "o"])) == ExecutorConfig()
    assert reward_config(parse(["serve", "rm"])) == RewardConfig()
    args = parse(["pairs", "--input", "i", "--output", "o"])
    assert PairRule(min_chosen=args.min_chosen, min_rejected=args.min_rejected,
                    min_gap=args.min_gap) == PairRule()
    args = parse(["serve", "all"])
    assert (args.executor_port, args.rm_port, args.synth_port) == (50051, 50052, 50053)
    assert (args.state_dir, args.data_dir, args.grace) == (".acecoder-jobs", ".", 20.0)
    assert parse(["synth", "--input", "i", "--output", "o"]).stages == \
        "rewrite,decontaminate,filter"


def test_a_trainers_flags_stay_unset_so_a_preset_can_fill_them() -> None:
    args = build_parser().parse_args(["train", "rl", "--lr", "1e-6"])
    assert args.lr == 1e-6 and args.steps is None and args.temperature is None


def test_building_the_parser_imports_no_config_and_help_shows_them() -> None:
    code = ("import sys; from acecoder.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.startswith(('torch', "
            "'acecoder.server.synth.pipeline', 'acecoder.server.rm.main', 'acecoder.demo', "
            "'acecoder.trainer', 'grpc'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args(["train", "rm", "--help"])
    assert "peak learning rate (default 1e-5)" in out.getvalue()
    assert "--seed SEED           (default 0)" in out.getvalue()


def _options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        elif action.option_strings and action.help != argparse.SUPPRESS:
            yield " ".join(path), action


def test_every_option_that_has_a_default_says_what_it_is() -> None:
    """`--help` is where a newcomer learns what happens when a flag is left out."""
    flags = (argparse._HelpAction, argparse._VersionAction, argparse._StoreTrueAction,
             argparse._StoreFalseAction, argparse._StoreConstAction)
    silent = [f"{command} {action.option_strings[-1]}"
              for command, action in _options(build_parser())
              if action.default is not None and not isinstance(action, flags)
              and "default" not in (action.help or "")]
    assert not silent, silent


def test_version() -> None:
    from importlib.metadata import version

    from acecoder import __version__

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--version"])
    assert done.value.code == 0
    assert out.getvalue().strip() == f"acecoder {__version__}" == f"acecoder {version('acecoder')}"
