"""Spec sources: what `load` reads (regular files, capped), what `include:` may reach (the
include root), the budgets on includes and literals, control characters and escaped output."""

from __future__ import annotations

import io
import os
import threading

import pytest

import netspec
from netspec import reading
from netspec.errors import Diagnostic, Mark, SpecError, printable
from netspec.lang.source import MAX_INT_LITERAL, parse_yaml
from netspec.reading import MAX_BYTES, MAX_INCLUDE_FILES, find_include_root, read_source
from tests.conftest import ROOT

SPEC = "name: t\ninput: [3, 8, 8]\ninclude: [{target}]\nlayers:\n  - {layer}\n"
BLOCK = "blocks:\n  unit:\n    layers: [relu]\n"


def write_spec(folder, target, layer="unit"):
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "spec.yaml"
    spec.write_text(SPEC.format(target=target, layer=layer))
    return spec


def error_of(call) -> str:
    with pytest.raises(SpecError) as info:
        call()
    return info.value.format()


# -- the include root -----------------------------------------------------------------------------

def test_shipped_specs_include_their_blocks_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # far from the repository's netspec.toml
    report = netspec.check(netspec.load(ROOT / "specs" / "torchvision" / "resnet18.yaml"))
    assert report.output == (1000,)


def test_the_nearest_marker_above_the_spec_is_the_root(tmp_path):
    (tmp_path / "proj" / "specs" / "deep").mkdir(parents=True)
    (tmp_path / "proj" / "netspec.toml").write_text("")
    assert find_include_root(tmp_path / "proj" / "specs" / "deep") == (tmp_path / "proj").resolve()


def test_without_a_marker_the_spec_folder_is_the_root(tmp_path):
    # tmp_path is under /tmp, which holds no netspec.toml
    (tmp_path / "specs").mkdir()
    assert find_include_root(tmp_path / "specs") == (tmp_path / "specs").resolve()


def test_a_sibling_folder_is_refused_without_quoting_it(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "secret.yaml").write_text("blocks: {TOPSECRET: hunter2}\n")
    spec = write_spec(tmp_path / "mine", "../other/secret.yaml", layer="relu")
    message = error_of(lambda: netspec.load(spec))
    assert f"{spec}:3:11: error: include[0]: `../other/secret.yaml` is outside the include root " \
           f"{(tmp_path / 'mine').resolve()}" in message
    assert "--include-root DIR" in message and "netspec.toml" in message
    assert "TOPSECRET" not in message and "hunter2" not in message


def test_a_marker_above_lets_the_project_share_blocks(tmp_path):
    (tmp_path / "netspec.toml").write_text("")
    (tmp_path / "blocks").mkdir()
    (tmp_path / "blocks" / "b.yaml").write_text(BLOCK)
    spec = write_spec(tmp_path / "specs", "../blocks/b.yaml")
    assert netspec.check(netspec.load(spec)).output == (3, 8, 8)


def test_include_root_keyword_and_option_widen_the_root(tmp_path, cli):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "b.yaml").write_text(BLOCK)
    spec = write_spec(tmp_path / "mine", "../other/b.yaml")
    assert netspec.load(spec, include_root=tmp_path).name == "t"
    assert netspec.loads(spec.read_text(), base_dir=spec.parent, include_root=tmp_path).name == "t"
    assert cli("check", spec).code == 2
    result = cli("check", "--include-root", tmp_path, spec)
    assert result.code == 0, result.err


def test_include_root_option_must_be_a_folder(tmp_path, cli):
    spec = write_spec(tmp_path, "b.yaml")
    result = cli("check", "--include-root", tmp_path / "missing", spec)
    assert result.code == 2
    assert result.err.startswith("error: --include-root:") and "is not a folder" in result.err


def test_symlinks_are_resolved_before_the_containment_test(tmp_path):
    (tmp_path / "outside.yaml").write_text(BLOCK)
    project = tmp_path / "proj"
    project.mkdir()
    (project / "netspec.toml").write_text("")
    (project / "real.yaml").write_text(BLOCK)
    (project / "inside_link.yaml").symlink_to(project / "real.yaml")
    (project / "outside_link.yaml").symlink_to(tmp_path / "outside.yaml")
    assert netspec.load(write_spec(project / "a", "../inside_link.yaml")).name == "t"
    message = error_of(lambda: netspec.load(write_spec(project / "b", "../outside_link.yaml", layer="relu")))
    assert "outside the include root" in message


# -- what is read ---------------------------------------------------------------------------------

def test_the_size_cap_does_not_trust_st_size(tmp_path, monkeypatch):
    big = tmp_path / "big.yaml"
    big.write_text("#" * (MAX_BYTES + 10) + "\n")
    real_stat = os.stat

    def lying_stat(path, *args, **kwargs):  # like procfs: size 0 whatever the content
        result = real_stat(path, *args, **kwargs)
        if str(path) == str(big):
            return os.stat_result((*result[:6], 0, *result[7:]))
        return result

    monkeypatch.setattr(reading.os, "stat", lying_stat)
    assert "over the 1,048,576-byte limit" in error_of(lambda: read_source(big))


def test_procfs_files_are_read_although_they_claim_size_zero():
    assert os.stat("/proc/self/status").st_size == 0
    assert "Name:" in read_source("/proc/self/status")


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    outcome: list[str] = []
    reader = threading.Thread(target=lambda: outcome.append(error_of(lambda: read_source(fifo))), daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # unblock it before failing, so the suite does not hang
        with open(fifo, "w"):
            pass
        pytest.fail("reading a FIFO blocked")
    assert "is a FIFO (named pipe), not a regular file" in outcome[0]


def test_permission_denied_is_a_clean_error(tmp_path, monkeypatch):
    # the tests run as root, for whom chmod 000 changes nothing: make the OS say no
    path = tmp_path / "locked.yaml"
    path.write_text("name: t\n")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(reading.os, "open", refuse)
    assert error_of(lambda: read_source(path, "locked.yaml")) == "locked.yaml:1:1: error: permission denied\n" \
        "  hint: check the file's permissions"


def test_include_read_errors_are_reported_at_the_include_line(tmp_path):
    (tmp_path / "netspec.toml").write_text("")
    (tmp_path / "dir.yaml").mkdir()
    spec = write_spec(tmp_path, "dir.yaml", layer="relu")
    message = error_of(lambda: netspec.load(spec))
    assert message == f"{spec}:3:11: error: include[0]: `dir.yaml`: is a directory, expected a YAML spec file"


def test_crlf_specs_keep_their_universal_newline_text(tmp_path):
    spec = tmp_path / "crlf.yaml"
    spec.write_bytes(b"name: t\r\ninput: [3, 8, 8]\r\nlayers:\r\n  - relu\r\n")
    assert netspec.load(spec).text == "name: t\ninput: [3, 8, 8]\nlayers:\n  - relu\n"


# -- include budgets ------------------------------------------------------------------------------

def _including_n_times(folder, count):
    (folder / "netspec.toml").write_text("")
    (folder / "empty.yaml").write_text("blocks: {}\n")
    spec = folder / "spec.yaml"
    spec.write_text(SPEC.format(target=", ".join(["empty.yaml"] * count), layer="relu"))
    return spec


def test_the_include_file_budget_counts_repeats(tmp_path):
    (tmp_path / "ok").mkdir()
    assert netspec.load(_including_n_times(tmp_path / "ok", MAX_INCLUDE_FILES)).name == "t"
    (tmp_path / "over").mkdir()
    message = error_of(lambda: netspec.load(_including_n_times(tmp_path / "over", MAX_INCLUDE_FILES + 5)))
    assert message.count("error:") == 1  # once, not once per include past the budget
    assert f"include[{MAX_INCLUDE_FILES}]: more than {MAX_INCLUDE_FILES} included files" in message


def test_the_include_byte_budget(tmp_path):
    (tmp_path / "netspec.toml").write_text("")
    third = "blocks: {}\n" + "#" * (reading.MAX_INCLUDE_BYTES // 3 - 12) + "\n"  # three fit, four do not
    for name in "abcd":
        (tmp_path / f"{name}.yaml").write_text(third)
    assert netspec.load(write_spec(tmp_path / "three", "../a.yaml, ../b.yaml, ../c.yaml", layer="relu")).name == "t"
    message = error_of(lambda: netspec.load(write_spec(tmp_path / "four", "../a.yaml, ../b.yaml, ../c.yaml, ../d.yaml",
                                                       layer="relu")))
    assert f"include[3]: included files hold more than {reading.MAX_INCLUDE_BYTES:,} bytes in all" in message


# -- literals -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    (str(MAX_INT_LITERAL), MAX_INT_LITERAL),
    (str(-MAX_INT_LITERAL), -MAX_INT_LITERAL),
    ("0" * 5000 + "7", 7),  # leading zeros are not magnitude
    (hex(MAX_INT_LITERAL), MAX_INT_LITERAL),
    ("0o" + "0" * 100 + "17", 15),
    ("1e-999", 0.0),  # underflow is just zero
    (".inf", float("inf")),  # infinity, written as YAML spells it
])
def test_literals_within_the_limits(text, value):
    assert parse_yaml(f"a: {text}\n")["a"] == value


@pytest.mark.parametrize("text, message", [
    (str(MAX_INT_LITERAL + 1), "integer `4611686018427387905` is too large"),
    ("-" + "9" * 5000, "(5,001 characters)` is too large"),
    (hex(MAX_INT_LITERAL + 1), "integer `0x4000000000000001` is too large"),
    ("0o" + "7" * 30, "is too large"),
    ("1e999", "number `1e999` is too large (it overflows to infinity)"),
    ("-1e999", "overflows to infinity"),
])
def test_literals_beyond_the_limits(text, message):
    assert message in error_of(lambda: parse_yaml(f"x: 1\na: {text}\n", "t.yaml"))
    assert error_of(lambda: parse_yaml(f"x: 1\na: {text}\n", "t.yaml")).startswith("t.yaml:2:4: error: ")


# -- characters -----------------------------------------------------------------------------------

@pytest.mark.parametrize("char, named", [
    ("\x00", "U+0000 (NUL)"), ("\x1b", "U+001B (ESC)"), ("\x01", "U+0001 (a control character)"),
    ("\x7f", "U+007F (DEL)"), ("\x85", "U+0085 (a C1 control character)"), ("\x9b", "U+009B (CSI)"),
    ("\ufffe", "U+FFFE (a Unicode noncharacter)"), ("\U0010ffff", "U+10FFFF (a Unicode noncharacter)"),
    ("\ufdef", "U+FDEF (a Unicode noncharacter)"), ("\ud83d", "U+D83D (a lone surrogate)"),
])
def test_control_characters_are_refused_at_their_position(char, named):
    message = error_of(lambda: parse_yaml(f"a: 1\nbb: x{char}y\n", "t.yaml"))
    assert message.startswith(f"t.yaml:2:6: error: character {named} is not allowed in a spec")


def test_a_leading_bom_is_fine_and_not_a_column():
    assert parse_yaml("\ufeffa: 1\n") == {"a": 1}
    assert error_of(lambda: parse_yaml("\ufeffa: \x1b\n", "t.yaml")).startswith("t.yaml:1:4: ")


def test_tabs_keep_their_friendly_message_and_are_fine_in_strings():
    assert "a tab character" in error_of(lambda: parse_yaml("a:\n\tb: 1\n"))
    assert parse_yaml('a: "x\ty"\n') == {"a": "x\ty"}


def test_escaped_control_characters_are_refused_too():
    message = error_of(lambda: parse_yaml('a: 1\nb: "red\\e[31m"\n', "t.yaml"))
    assert message.startswith("t.yaml:2:4: error: this value contains character U+001B (ESC) (written as an escape)")
    assert parse_yaml('a: "two\\nlines\\ttab"\n') == {"a": "two\nlines\ttab"}


def test_control_characters_in_an_included_file_point_into_it(tmp_path):
    (tmp_path / "netspec.toml").write_text("")
    (tmp_path / "b.yaml").write_bytes(b"blocks:\n  unit:\x07\n    layers: [relu]\n")
    message = error_of(lambda: netspec.load(write_spec(tmp_path / "s", "../b.yaml")))
    assert f"{tmp_path / 'b.yaml'}:2:8: error: character U+0007 (BEL)" in message


# -- escaping what is printed ---------------------------------------------------------------------

@pytest.mark.parametrize("text, shown", [
    ("plain × → ─ café 猫", "plain × → ─ café 猫"),
    ("a\x1b[2Jb", "a\\x1b[2Jb"),
    ("fake\nt.yaml:1:1: error: x", "fake\\x0at.yaml:1:1: error: x"),
    ("csi\x9b31m", "csi\\x9b31m"),
    ("bidi \u202egnp.exe", "bidi \\u202egnp.exe"),
    ("zero\u200bwidth", "zero\\u200bwidth"),
    ("sep\u2028x", "sep\\u2028x"),
    ("\ud800", "\\ud800"),
    ("\U0010fffe", "\\U0010fffe"),
])
def test_printable_escapes_what_a_terminal_would_act_on(text, shown):
    assert printable(text) == shown


def test_every_part_of_a_diagnostic_is_escaped():
    text = Diagnostic(Mark("\x1b[31m.yaml", 1, 2), "vars.\x1b", "bad \x1b[8m", "hint \x07").format()
    assert "\x1b" not in text and "\x07" not in text
    assert text == "\\x1b[31m.yaml:1:2: error: vars.\\x1b: bad \\x1b[8m\n  hint: hint \\x07"


def test_the_check_table_escapes_labels_and_names():
    report = netspec.check(netspec.loads("name: t\ninput: [3, 8, 8]\nlayers:\n  - relu\n"))
    report.rows[0].label = "relu \x1b]0;pwned\x07"
    report.name = "t\x1b[2J"
    out = io.StringIO()
    from netspec.shapes.render import print_report
    print_report(report, out)
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
    assert "relu \\x1b]0;pwned\\x07" in out.getvalue() and out.getvalue().startswith("t\\x1b[2J\n")


@pytest.mark.parametrize("value, message", [
    ("1x²x28", "error: --input: a size must be a positive integer or a name like H, got '²' (text)"),
    ("3x٣x4", "got '٣' (text)"),  # an Arabic-Indic digit: isdigit() is true, int() would accept it
    ("3x" + "9" * 5000 + "x4", "is too large"),
    ("3x\x1b[31mx4", "got '\\x1b[31m' (text)"),
])
def test_input_option_errors_name_the_option(cli, value, message):
    result = cli("check", ROOT / "specs" / "lenet.yaml", "--input", value)
    assert result.code == 2 and "Traceback" not in result.err
    assert "--input" in result.err and message in result.err and "\x1b" not in result.err


# -- the run's copy of a spec with includes ------------------------------------------------------

NESTED_MAIN = """name: nested
input: [3, 8, 8]
include: [blocks/wide.yaml]
layers:
  - wide
  - narrow
  - global_avgpool
  - flatten
  - linear: 4
"""
NESTED_WIDE = "include: [narrow.yaml]\nblocks:\n  wide:\n    layers: [conv: {out: 16, kernel: 3, padding: 1}, relu]\n"
NESTED_NARROW = "blocks:\n  narrow:\n    layers: [conv: {out: 8, kernel: 1}, relu]\n"


def test_the_runs_spec_copy_is_what_was_loaded_not_what_the_files_say_later(tmp_path):
    """write_spec_copy inlines the texts the loader read: files changed (or swapped) after loading
    do not reach the copy, and the copy stands alone in another folder."""
    from netspec.train.rundir import write_spec_copy

    project = tmp_path / "project"
    (project / "blocks").mkdir(parents=True)
    (project / "netspec.toml").write_text("")
    (project / "main.yaml").write_text(NESTED_MAIN)
    (project / "blocks" / "wide.yaml").write_text(NESTED_WIDE)
    (project / "blocks" / "narrow.yaml").write_text(NESTED_NARROW)
    spec = netspec.load(project / "main.yaml")
    trained = netspec.check(spec)
    # after loading: every file rewritten, one of them into a link out of the project
    (project / "main.yaml").write_text(NESTED_MAIN.replace("linear: 4", "linear: 9"))
    (project / "blocks" / "wide.yaml").write_text(NESTED_WIDE.replace("out: 16", "out: 64"))
    (tmp_path / "outside.yaml").write_text(NESTED_NARROW.replace("out: 8", "out: 32"))
    (project / "blocks" / "narrow.yaml").unlink()
    (project / "blocks" / "narrow.yaml").symlink_to(tmp_path / "outside.yaml")
    run = tmp_path / "elsewhere" / "run"
    run.mkdir(parents=True)
    write_spec_copy(run, spec)
    copy = (run / "spec.yaml").read_text()
    assert "include" not in copy.split("\n", 1)[1]
    copied = netspec.check(netspec.load(run / "spec.yaml"))
    assert (copied.params, copied.macs, copied.output) == (trained.params, trained.macs, trained.output)
    assert copied.output == (4,)
