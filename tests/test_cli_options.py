"""Every bounded CLI option: a bad value is one clear error naming the option, exit 2, no traceback,
and nothing is started (no training, no export, no benchmark)."""

from __future__ import annotations

import pytest

from tests.conftest import SPECS

LENET = SPECS / "lenet.yaml"
HUGE_INT = "9" * 5000  # beyond Python's 4,300-digit int conversion limit

TRAIN_CASES = [
    ("--epochs", "0"), ("--epochs", "100001"), ("--epochs", HUGE_INT),
    ("--batch-size", "0"), ("--batch-size", "-5"), ("--batch-size", "65537"),
    ("--lr", "0"), ("--lr", "-1"), ("--lr", "inf"), ("--lr", "nan"), ("--lr", "1e3"),
    ("--momentum", "-0.1"), ("--momentum", "1"), ("--momentum", "nan"),
    ("--weight-decay", "-1"), ("--weight-decay", "inf"), ("--weight-decay", "1e6"),
    ("--warmup-epochs", "-1"), ("--warmup-epochs", "inf"), ("--warmup-epochs", "1e9"),
    ("--label-smoothing", "-0.5"), ("--label-smoothing", "1"), ("--label-smoothing", "nan"),
    ("--pad", "-1"), ("--pad", "100000"),
    ("--seed", "-1"), ("--seed", str(2**32)), ("--seed", str(10**30)),
    ("--workers", "-1"), ("--workers", "100000"),
    ("--checkpoint-every", "-1"), ("--checkpoint-every", str(10**10)),
    ("--nproc", "0"), ("--nproc", "-2"), ("--nproc", "100000"),
]


def assert_option_error(result, flag):
    assert result.code == 2, (result.code, result.err)
    assert flag in result.err, result.err
    assert "Traceback" not in result.err and "internal error" not in result.err


@pytest.mark.parametrize("flag, value", TRAIN_CASES, ids=lambda v: v[:12])
def test_train_options_are_bounded(cli, tmp_path, flag, value):
    result = cli("train", LENET, "--data", "digits", "--out", tmp_path / "run", flag, value)
    assert_option_error(result, flag)
    assert not (tmp_path / "run").exists()  # refused before a run directory was made


def test_bad_flags_with_nproc_are_refused_before_any_worker_starts(cli, tmp_path):
    result = cli("train", LENET, "--data", "digits", "--out", tmp_path / "run", "--nproc", "2", "--epochs", "0")
    assert_option_error(result, "--epochs")
    assert not (tmp_path / "run").exists()  # the launcher makes the run directory before starting workers


def test_a_specs_train_section_is_bounded_too(cli, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(LENET.read_text().replace("augment: {pad: 2}", "augment: {pad: 1000}"))
    result = cli("train", spec, "--data", "digits", "--out", tmp_path / "run")
    assert_option_error(result, "train.augment.pad")


OTHER_CASES = [
    (("eval", "RUN", "--batch-size", "0"), "--batch-size"),
    (("eval", "RUN", "--batch-size", "-1"), "--batch-size"),
    (("eval", "RUN", "--batch-size", "10000000"), "--batch-size"),
    (("eval", "RUN", "--weights", "../../elsewhere"), "--weights"),
    (("export", LENET, "--onnx", "--batch", "0"), "--batch"),
    (("export", LENET, "--onnx", "--batch", "-3"), "--batch"),
    (("export", LENET, "--onnx", "--batch", "²"), "--batch"),
    (("export", LENET, "--onnx", "--batch", HUGE_INT), "--batch"),
    (("export", LENET, "--onnx", "--batch", "65537"), "--batch"),
    (("export", LENET, "--onnx", "--weights", "worst"), "--weights"),
    (("infer", "m.onnx", "x.png", "--top-k", "0"), "--top-k"),
    (("infer", "m.onnx", "x.png", "--top-k", HUGE_INT), "--top-k"),
    (("infer", "m.onnx", "x.png", "--batch-size", "0"), "--batch-size"),
    (("infer", "m.onnx", "x.png", "--batch-size", "1000000"), "--batch-size"),
    (("bench", LENET, "--threads", "100000"), "--threads"),
    (("bench", LENET, "--threads", "0"), "--threads"),
    (("bench", LENET, "--threads", "-4"), "--threads"),
    (("bench", LENET, "--seconds", "inf"), "--seconds"),
    (("bench", LENET, "--seconds", "nan"), "--seconds"),
    (("bench", LENET, "--seconds", "0"), "--seconds"),
    (("bench", LENET, "--seconds", "-1"), "--seconds"),
    (("bench", LENET, "--seconds", "1e9"), "--seconds"),
    (("bench", LENET, "--batch", "0"), "--batch"),
    (("bench", LENET, "--batch", "-1"), "--batch"),
    (("bench", LENET, "--batch", "1,x"), "--batch"),
    (("bench", LENET, "--batch", "1,²"), "--batch"),
    (("bench", LENET, "--batch", "100000"), "--batch"),
    (("bench", LENET, "--batch", ",".join(["1"] * 17)), "--batch"),
    (("export", LENET), "choose a format: --onnx"),
    (("export", LENET, "--format", "tflite"), "--format"),
    (("export", LENET, "--onnx", "--format", "tflite"), "--format"),
]


@pytest.mark.parametrize("args, flag", OTHER_CASES,
                         ids=lambda v: " ".join(map(str, v))[:40] if isinstance(v, tuple) else v)
def test_eval_export_infer_bench_options_are_bounded(cli, tmp_path, args, flag):
    result = cli(*(tmp_path if a == "RUN" else a for a in args))
    assert_option_error(result, flag)
    assert result.out == ""  # refused up front: nothing exported, classified or timed


def big_input_spec(folder):
    spec = folder / "big.yaml"
    spec.write_text("name: big\ninput: [3, 256, 256]\nlayers:\n  - flatten\n  - linear: 2\n")
    return spec


@pytest.mark.parametrize("command", ["bench", "export"])
def test_a_batch_too_large_for_memory_is_refused_before_allocating(cli, tmp_path, command):
    spec = big_input_spec(tmp_path)  # 65,536 × 3×256×256 float32 inputs would be 48 GiB
    extra = ("--onnx", "-o", tmp_path / "big.onnx") if command == "export" else ()
    result = cli(command, spec, "--batch", "65536", *extra)
    assert_option_error(result, "--batch")
    assert "GiB as float32; the limit is 2 GiB" in result.err
    assert not (tmp_path / "big.onnx").exists()


TINY = "name: tiny\ninput: [1, 8, 8]\nlayers:\n  - flatten\n  - linear: 3\n"


def test_export_into_a_directory_writes_name_onnx_there(cli, tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    (tmp_path / "models").mkdir()
    result = cli("export", tmp_path / "tiny.yaml", "--onnx", "-o", tmp_path / "models")
    assert result.code == 0, result.err
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["tiny.onnx"]


def test_export_below_a_regular_file_is_a_clean_error(cli, tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    (tmp_path / "file").write_text("")
    result = cli("export", tmp_path / "tiny.yaml", "--onnx", "-o", tmp_path / "file" / "tiny.onnx")
    assert_option_error(result, "-o")
    assert "is not a directory" in result.err


def test_format_onnx_is_what_onnx_means(cli, tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    by_name = cli("export", tmp_path / "tiny.yaml", "--format", "onnx", "-o", tmp_path / "named.onnx")
    assert by_name.code == 0, by_name.err
    both = cli("export", tmp_path / "tiny.yaml", "--onnx", "--format", "onnx", "-o", tmp_path / "both.onnx")
    assert both.code == 0, both.err
    assert (tmp_path / "named.onnx").exists() and (tmp_path / "both.onnx").exists()


def test_an_unknown_format_names_the_choices(cli):
    result = cli("export", LENET, "--format", "tflite")
    assert "unknown format 'tflite'" in result.err and "choose one of: onnx" in result.err


# -- train's setting flags are generated from TrainConfig's fields --------------------------------

TODAYS_TRAIN_FLAGS = [
    "--data", "--data-root", "--epochs", "--batch-size", "--optimizer", "--lr", "--momentum", "--nesterov",
    "--weight-decay", "--schedule", "--step-size", "--gamma", "--warmup-epochs", "--label-smoothing", "--pad",
    "--flip", "--normalize", "--seed", "--device", "--amp", "--channels-last", "--compile", "--workers",
    "--checkpoint-every", "--tensorboard", "--log-every", "--patience", "--clip-grad",
]


def train_options() -> dict:
    import typer.main

    from netspec.cli import app

    command = typer.main.get_command(app).commands["train"]
    return {param.opts[0]: param for param in command.params if param.opts[0].startswith("--")}


def test_every_setting_has_its_flag_with_the_fields_description():
    from netspec.train.config import Augment, TrainConfig

    options = train_options()
    assert [flag for flag in options if flag in TODAYS_TRAIN_FLAGS] == TODAYS_TRAIN_FLAGS
    assert set(options) - set(TODAYS_TRAIN_FLAGS) == {"--out", "--resume", "--init-from", "--set", "--nproc",
                                                      "--nnodes", "--node-rank", "--master-addr", "--master-port",
                                                      "--max-restarts"}
    # the field's description, then where the value comes from when the flag is not given
    assert options["--batch-size"].help.startswith(TrainConfig.model_fields["batch_size"].description + "; ")
    assert options["--pad"].help.startswith(Augment.model_fields["pad"].description + "; ")
    assert options["--optimizer"].metavar == "sgd|adam|adamw"
    for flag in ("--nesterov", "--flip", "--normalize", "--channels-last", "--compile"):
        assert options[flag].secondary_opts == ["--no-" + flag[2:]], flag
    assert all(options[flag].default is None for flag in TODAYS_TRAIN_FLAGS)  # not given: the spec's train:


def test_a_new_config_field_is_a_new_flag():
    from typing import Literal

    from pydantic import Field

    from netspec.cli.train_flags import setting_flags
    from netspec.train.config import TrainConfig

    class Extended(TrainConfig):
        ema: Literal["off", "on"] = Field("off", description="keep an average of the weights")

    flag = setting_flags(Extended)[-1]
    assert (flag.name, flag.kind, flag.choices) == ("--ema", str, ("off", "on"))
    assert flag.help == "keep an average of the weights; default: from the spec's `train:` section, else off"


def test_flags_become_settings_with_augment_nested():
    from netspec.cli.train_flags import settings_given

    assert settings_given({"epochs": 3, "pad": 0, "flip": False, "lr": None}) == {
        "epochs": 3, "augment": {"pad": 0, "flip": False}}


# -- one error formatter, no module state ------------------------------------------------------------

def test_debug_reraises_and_leaves_no_state_behind(cli):
    from netspec.cli import main
    from netspec.errors import OptionError

    with pytest.raises(OptionError):
        main(["--debug", "export", str(LENET)])
    result = cli("export", LENET)  # the next call in this process does not inherit --debug
    assert result.code == 2 and "error: export: choose a format" in result.err


def test_every_error_kind_is_formatted_alike():
    from netspec import errors
    from netspec.cli.failures import describe

    kinds = (errors.SpecError, errors.DataError, errors.ModelFileError, errors.RunError, errors.ExportError,
             errors.OptionError)
    for kind in kinds:
        assert issubclass(kind, errors.NetspecError)
        assert describe(kind.at(None, "where", "what", "why")) == ("error: where: what\n  hint: why", 2)
    assert describe(errors.RunStopped("stopped\nkept last.safetensors", 3)) == ("stopped\nkept last.safetensors", 3)
    assert describe(KeyboardInterrupt()) == ("interrupted", 130)
    text, status = describe(ZeroDivisionError("x"))
    assert status == 1 and text.startswith("internal error: ZeroDivisionError: x")
