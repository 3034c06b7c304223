"""The command line's conventions, in one place, so that every command has them without writing them:

- `-h` is `--help`, on the app and on every command (the help option names every context inherits);
- every option shows a readable metavar: INT, FLOAT, TEXT, PATH, `a|b|c` for choices, `on|off` for a
  boolean that takes a value, none for a flag; a declaration's own `metavar=` (NAME=VALUE, CxHxW, N)
  is kept, and --set and --input read NAME=VALUE and CxHxW in every command. Arguments show their
  name in capitals and their type: `netspec train [OPTIONS] SPEC`;
- `--version`, and shell completion with typer's scripts for the shell named.

typer builds each command's parameters itself; `App.command` gives every command the class below,
which fills in what a declaration left out when the command is built, so a new command or option
follows the conventions with nothing else to write (tests/test_cli_conventions.py checks them all).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional, get_args

import typer
from typer.completion import Shells, completion_init, get_completion_script, install
from typer.core import TyperArgument, TyperCommand, TyperGroup

PROG = "netspec"
HELP_OPTIONS = ["-h", "--help"]
COMPLETE_VAR = "_NETSPEC_COMPLETE"  # the variable typer's completion scripts call `netspec` with
TYPE_NAMES = {int: "INT", float: "FLOAT", str: "TEXT", Path: "PATH", bool: "on|off"}
# Options that mean one thing in every command that has them, shown alike there
OPTION_METAVARS = {"--set": "NAME=VALUE", "--input": "CxHxW"}


def type_name(param) -> str:
    """A parameter's values as the help shows them: INT, PATH, sgd|adam, on|off."""
    described = param.type_descriptor
    if described.is_choice and described.choices:
        return "|".join(str(getattr(choice, "value", choice)) for choice in described.choices)
    annotation = described.annotation
    if described.is_list:  # a repeatable option or a variadic argument: the type of one value
        annotation = get_args(annotation)[0]
    return TYPE_NAMES.get(annotation, getattr(annotation, "__name__", "VALUE").upper())


class ReadableArgument(TyperArgument):
    """An argument shown as `SPEC` (not `{spec}`) in the usage line, with its type as `PATH`."""

    def display_type_rich(self, ctx) -> str:
        return type_name(self) + ("..." if self.nargs != 1 else "")

    def get_usage_pieces(self, ctx) -> list[str]:
        name = self.metavar + ("..." if self.nargs != 1 else "")
        return [name if self.required else f"[{name}]"]


def follow_conventions(params: list) -> None:
    """Readable metavars for the parameters a declaration left without one."""
    for param in params:
        if type(param) is TyperArgument:
            param.__class__ = ReadableArgument  # display methods only: the parameter's state is typer's
            param.metavar = param.metavar or param.name.upper()
        elif param.metavar is None:
            named = next((OPTION_METAVARS[o] for o in param.opts if o in OPTION_METAVARS), None)
            param.metavar = "" if param.is_flag else named or type_name(param)


def _without_type(option):
    if option is not None and option.metavar is None:
        option.metavar = ""  # -h/--help is a flag
    return option


class Command(TyperCommand):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        follow_conventions(self.params)

    def get_help_option(self, ctx):
        return _without_type(super().get_help_option(ctx))

    def get_short_help_str(self, limit: int = 45) -> str:
        """`netspec -h`'s line for this command: its docstring's first paragraph in full, which the
        list wraps, rather than cut at the terminal's width with `...`."""
        if self.short_help or not self.help:
            return super().get_short_help_str(limit)
        return " ".join(inspect.cleandoc(self.help).split("\n\n")[0].split())


class Group(TyperGroup):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        follow_conventions(self.params)
        for command in self.commands.values():  # a command registered with a class of its own too
            follow_conventions(command.params)

    def get_help_option(self, ctx):
        return _without_type(super().get_help_option(ctx))


class App(typer.Typer):
    """typer.Typer with the conventions: its group and every command registered on it."""

    def __init__(self, **settings) -> None:
        super().__init__(cls=Group, context_settings={"help_option_names": HELP_OPTIONS}, **settings)

    def command(self, *args, cls=None, **settings):
        return super().command(*args, cls=cls or Command, **settings)


# -- --version and shell completion (the app's own options, eager: they answer and exit) -------------

def _print_version(ctx: typer.Context, param, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from netspec import __version__

        typer.echo(f"{PROG} {__version__}")
        raise typer.Exit()


def _show_completion(ctx: typer.Context, param, shell: Optional[Shells]) -> None:
    if shell is not None and not ctx.resilient_parsing:
        typer.echo(get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell.value))
        raise typer.Exit()


def _install_completion(ctx: typer.Context, param, shell: Optional[Shells]) -> None:
    if shell is not None and not ctx.resilient_parsing:
        _, path = install(shell=shell.value, prog_name=PROG, complete_var=COMPLETE_VAR)
        typer.echo(f"{shell.value} completion installed in {path}; it takes effect in a new shell")
        raise typer.Exit()


SHELL_NAMES = "|".join(shell.value for shell in Shells)
VERSION = typer.Option(False, "--version", is_eager=True, expose_value=False, callback=_print_version,
                       help="print netspec's version and exit")
SHOW_COMPLETION = typer.Option(None, "--show-completion", metavar="SHELL", is_eager=True, expose_value=False,
                               callback=_show_completion, help=f"print the completion script for SHELL "
                               f"({SHELL_NAMES}), e.g. `eval \"$(netspec --show-completion bash)\"`")
INSTALL_COMPLETION = typer.Option(None, "--install-completion", metavar="SHELL", is_eager=True, expose_value=False,
                                  callback=_install_completion, help="install completion for SHELL in its "
                                  "startup file (bash: ~/.bashrc, zsh: ~/.zshrc, fish: its completions folder)")

completion_init()  # typer's completion classes answer the script's `_NETSPEC_COMPLETE=complete_bash` calls
