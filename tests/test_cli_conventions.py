"""The command line's conventions (issue 13, point 6): --version, -h, shell completion, and every
option described, with its default and where that default comes from, under a readable metavar."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import ROOT, SPECS

# what typer would show for a parameter without a readable metavar: <bool>, <list[str]>, {spec}
TYPE_WORDS = re.compile(r"\b(str|int|float|bool|Path|path|list|List|NoneType)\b")
RAW_TYPES = re.compile(r"<(str|int|float|bool|path|list\[[^\]]*\])>|\{[a-z_]+\}")


def root_command():
    import typer.main

    from netspec.cli import app

    return typer.main.get_command(app)


def contexts():
    """(name, command, context) for the app itself and each of its commands, as the help sees them."""
    import typer

    root = root_command()
    root_ctx = typer.Context(root, info_name="netspec", **root.context_settings)
    found = [("netspec", root, root_ctx)]
    for name, command in sorted(root.commands.items()):
        found.append((name, command, typer.Context(command, info_name=name, parent=root_ctx)))
    return found


def options():
    return [(name, param) for name, command, ctx in contexts() for param in command.get_params(ctx)
            if param.param_type_name == "option"]


def option_id(item) -> str:
    name, param = item
    return f"{name} {param.opts[-1]}"


def run_netspec(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """`netspec ARGS` in a fresh process, with no terminal and no stdin (as in CI)."""
    return subprocess.run([sys.executable, "-m", "netspec.cli", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


# -- --version, -h -----------------------------------------------------------------------------------

def test_version_prints_the_packages_version(cli):
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = cli("--version")
    assert (result.code, result.out, result.err) == (0, f"netspec {declared}\n", "")


def test_version_answers_before_any_command_is_needed(cli):
    result = cli("--version", "check")  # eager: the version, not a missing SPEC
    assert result.code == 0 and result.out.startswith("netspec ")


def test_h_is_help_on_the_app_and_on_every_command(cli):
    names = sorted(root_command().commands)
    assert {"check", "train", "eval", "export", "infer", "bench", "schema"} <= set(names)
    for args in [()] + [(name,) for name in names]:
        short, long = cli(*args, "-h"), cli(*args, "--help")
        assert short.code == 0, (args, short.err)
        assert short.out == long.out and short.out.startswith(f"Usage: netspec {' '.join(args)}".rstrip()), args


def test_arguments_read_as_names_in_the_usage_line(cli):
    assert cli("train", "-h").out.splitlines()[0] == "Usage: netspec train [OPTIONS] SPEC"
    assert cli("infer", "-h").out.splitlines()[0] == "Usage: netspec infer [OPTIONS] MODEL INPUTS..."


def test_help_fits_80_columns_and_lists_each_command_in_full(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    names = sorted(root_command().commands)
    for args in [()] + [(name,) for name in names]:
        text = cli(*args, "-h").out
        assert max(map(len, text.splitlines())) <= 80, args
    listing = cli("-h").out.split("Commands:")[1]
    assert "..." not in listing  # each command's first paragraph wrapped, not cut
    assert "checkpoints that\n          survive a crash." in listing


def test_a_usage_error_is_one_line_naming_the_option(cli):
    result = cli("check", SPECS / "lenet.yaml", "--inptu", "3x32x32")
    assert result.code == 2
    assert result.err.splitlines()[-1].startswith("Error: No such option: --inptu")
    assert "Try 'netspec check -h' for help." in result.err
    assert not re.search("[╭│╰]", result.err)


# -- every option described, under a readable metavar ---------------------------------------------

@pytest.mark.parametrize("item", options(), ids=option_id)
def test_every_option_is_described(item):
    name, param = item
    assert param.help and param.help.strip(), f"{name} {param.opts}: no help"


def test_every_argument_is_described_and_named_in_capitals():
    arguments = [(name, param) for name, command, ctx in contexts() for param in command.get_params(ctx)
                 if param.param_type_name == "argument"]
    assert len(arguments) >= 8
    for name, param in arguments:
        assert param.help and param.help.strip(), (name, param.name)
        assert re.fullmatch(r"[A-Z][A-Z_]*", param.metavar), (name, param.metavar)


@pytest.mark.parametrize("item", options(), ids=option_id)
def test_every_option_has_a_readable_metavar(item):
    name, param = item
    if param.is_flag:  # --json, --flip/--no-flip, -h: no value, so nothing after the name
        assert param.metavar == "", (name, param.opts, param.metavar)
        return
    metavar = param.metavar
    assert metavar, (name, param.opts)
    assert not re.search(r"[<>{}\[\]() ]", metavar) and not TYPE_WORDS.search(metavar), (name, param.opts, metavar)


@pytest.mark.parametrize("item", options(), ids=option_id)
def test_every_option_says_its_default(item):
    """A flag is off unless given, a repeatable option empty, and an action (--show-completion SHELL)
    does nothing unless given; typer shows any other set default ([default: 5]); an option whose
    default is None says in its own words what not giving it means."""
    name, param = item
    if param.is_flag or param.multiple or not param.expose_value:
        return
    if param.default is None:
        assert "default" in param.help.lower(), (name, param.opts, param.help)
    else:
        assert param.show_default is not False, (name, param.opts)


def test_the_help_shows_no_raw_type_names(cli):
    names = sorted(root_command().commands)
    for args in [()] + [(name,) for name in names]:
        text = cli(*args, "--help").out
        assert not RAW_TYPES.search(text), (args, RAW_TYPES.search(text).group(0))


def test_readable_metavars_in_the_help_text(cli):
    train, check, export = cli("train", "-h").out, cli("check", "-h").out, cli("export", "-h").out
    for shown in ("--epochs INT", "--lr FLOAT", "--optimizer sgd|adam|adamw", "--out PATH", "--set NAME=VALUE",
                  "--nesterov / --no-nesterov ", "--data TEXT"):
        assert shown in train, shown
    assert "--input CxHxW" in check and "--input CxHxW" in export and "--weights best|last" in export
    assert re.search(r"--top-k INT +classes per input.*\[default: 5;", cli("infer", "-h").out, re.S)


# -- train's flags: the default and its source ------------------------------------------------------

SOURCE = "from the spec's `train:` section"


def train_option(flag: str):
    return next(param for param in root_command().commands["train"].params if flag in param.opts)


def test_every_training_setting_flag_names_the_specs_train_section():
    from netspec.cli.train_flags import SETTING_FLAGS

    assert len(SETTING_FLAGS) >= 24
    for flag in SETTING_FLAGS:
        text = train_option(flag.name).help
        assert "the spec's `train:` section" in text, (flag.name, text)


@pytest.mark.parametrize("flag, built_in", [
    ("--epochs", "10"), ("--batch-size", "128"), ("--lr", "0.001"), ("--momentum", "0.9"), ("--seed", "0"),
    ("--optimizer", "adam"), ("--pad", "0"), ("--flip", "off"), ("--normalize", "on"), ("--channels-last", "auto"),
    ("--workers", "2"),
])
def test_a_train_flag_says_its_default_comes_from_the_spec_then_the_built_in(flag, built_in):
    assert train_option(flag).help.endswith(f"; default: {SOURCE}, else {built_in}"), train_option(flag).help


def test_a_setting_without_a_built_in_value_says_what_not_giving_it_means():
    weight_decay = train_option("--weight-decay").help
    assert "0.01 for adamw" in weight_decay and "the spec's `train:` section" in weight_decay
    assert train_option("--data").help.endswith(f"default: {SOURCE}, else none")


def test_the_spec_then_the_built_in_is_what_a_run_gets(tmp_path):
    """The help's order is the one settings are resolved in: a flag, else the spec's train:, else built-in."""
    import netspec
    from netspec.train.setup import resolve_config

    spec = netspec.loads("name: t\ninput: [1, 8, 8]\ntrain: {epochs: 3}\nlayers:\n  - flatten\n  - linear: 2\n",
                         "t.yaml")
    assert resolve_config(spec, {}).epochs == 3
    assert resolve_config(spec, {"epochs": 5}).epochs == 5
    assert resolve_config(spec, {}).momentum == 0.9  # not in the spec: the built-in the help names


# -- shell completion -------------------------------------------------------------------------------

def test_show_completion_prints_the_named_shells_script_without_a_terminal():
    bash = run_netspec("--show-completion", "bash", timeout=30)
    assert bash.returncode == 0, bash.stderr
    assert "_NETSPEC_COMPLETE=complete_bash" in bash.stdout and "complete " in bash.stdout
    zsh = run_netspec("--show-completion", "zsh", timeout=30)
    assert zsh.returncode == 0 and zsh.stdout.startswith("#compdef netspec")
    unknown = run_netspec("--show-completion", "dash", timeout=30)
    assert unknown.returncode == 2 and "--show-completion" in unknown.stderr


def test_bash_completes_commands_and_options_with_the_printed_script(tmp_path):
    """The script, sourced in a real bash, completes `netspec ch` and `netspec train --epo`."""
    bash = "/bin/bash"
    if not os.path.exists(bash):
        pytest.skip("no /bin/bash on this machine")
    script = run_netspec("--show-completion", "bash", timeout=30).stdout
    (tmp_path / "netspec.sh").write_text(script)
    launcher = tmp_path / "bin" / "netspec"  # what the script calls: `netspec`, here this interpreter's
    launcher.parent.mkdir()
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} -m netspec.cli \"$@\"\n")
    launcher.chmod(0o755)

    def complete(*words: str) -> list[str]:
        line = (f"source {tmp_path / 'netspec.sh'}; COMP_WORDS=({' '.join(words)}); "
                f"COMP_CWORD={len(words) - 1}; _netspec_completion netspec; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
        path = f"{launcher.parent}:{os.environ['PATH']}"
        done = subprocess.run([bash, "--norc", "-c", line], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=60, cwd=ROOT, env={**os.environ, "PATH": path})
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("netspec", "ch") == ["check"]
    assert "--epochs" in complete("netspec", "train", "--epo")


def test_install_completion_writes_the_script_and_sources_it(tmp_path):
    done = run_netspec("--install-completion", "bash", env={"HOME": str(tmp_path)}, timeout=30)
    assert done.returncode == 0, done.stderr
    script = tmp_path / ".bash_completions" / "netspec.sh"
    assert "_NETSPEC_COMPLETE=complete_bash" in script.read_text()
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()
