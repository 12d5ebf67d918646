"""One user-error type: what the user got wrong is one line and exit status 2, a programming error keeps its
traceback; --device names only devices this machine has."""
import argparse
from pathlib import Path

import pytest
import torch

from baselines import cli
from baselines.eval import cli as eval_cli
from baselines.eval.results import InputError
from baselines.models import ModelError
from BERT_rationale_benchmark.utils import DataError


def raising(error):
    def main(*_):
        raise error
    return main


@pytest.mark.parametrize("error", [cli.UserError("bad flag"), ModelError("bad checkpoint"), InputError("bad file"),
                                   DataError("bad evidence")])
def test_user_errors_are_one_line(error, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.run(raising(error))
    assert exit_info.value.code == 2 and capsys.readouterr().err == f"error: {error}\n"
    assert eval_cli.run(raising(error), []) == 2 and capsys.readouterr().err == f"error: {error}\n"


@pytest.mark.parametrize("error", [ValueError("a bug"), OSError("a bug"), KeyError("a bug")])
def test_programming_errors_keep_their_traceback(error):
    with pytest.raises(type(error)):
        cli.run(raising(error))
    with pytest.raises(type(error)):
        eval_cli.run(raising(error), [])


def test_method_errors_are_user_errors():
    from baselines.methods import explain
    from tiny_models import ours_from, timm_tiny
    model = ours_from(timm_tiny(depth=2))
    images = torch.zeros(1, 3, 64, 64)
    for options in [{"class_index": 9}, {"start_layer": 5}, {"method": "nothing"}]:
        with pytest.raises(cli.UserError):
            explain(model, images, options.pop("method", "rollout"), **options)


@pytest.mark.parametrize("text,message", [("tpu", "not a torch device"), ("cuda:99", "CUDA")])
def test_device_flag_names_only_devices_this_machine_has(text, message, capsys):
    parser = argparse.ArgumentParser()
    cli.add_device_argument(parser)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--device", text])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert parser.parse_args(["--device", "cpu"]).device == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_refused(capsys):
    parser = argparse.ArgumentParser()
    cli.add_device_argument(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--device", "cuda"])
    assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_counts_and_sizes_must_be_positive(value, capsys):
    from baselines.BERT import perturbation_20ng, perturbation_movies
    common = ["--model_params", "p.json", "--device", "cpu"]
    for parse, argv in [(perturbation_movies.parse_args, ["--data_dir", "d", "--output_dir", "o", "--limit"]),
                        (perturbation_20ng.parse_args, ["--data", "d", "--checkpoint", "c", "--num-labels"])]:
        with pytest.raises(SystemExit) as exit_info:
            parse([*common, *argv, value])
        assert exit_info.value.code == 2 and "error: argument" in capsys.readouterr().err


def test_zero_byte_checkpoint_is_a_model_error(tmp_path):
    from baselines.models import create_model
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        create_model("deit_tiny_patch16_224", weights=tmp_path / "empty.pth")


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    """A 16-bit gray ramp read for a model is the same ramp in 8 bits (PIL's convert("RGB") made it mostly 255)."""
    import numpy as np
    from PIL import Image

    from baselines.data.images import to_rgb
    ramp = np.arange(0, 65536, 16, dtype=np.uint16).reshape(64, 64)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    with Image.open(tmp_path / "ramp.png") as image:
        rgb = np.asarray(to_rgb(image))
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 64, 3)
    np.testing.assert_array_equal(rgb[..., 0], np.round(ramp.astype(np.float64) * 255 / 65535).astype(np.uint8))


def test_bert_folder_without_tokenizer_files_is_refused(tmp_path):
    """AutoTokenizer builds a 5-token vocabulary from such a folder: every word would be [UNK]."""
    import importlib.util

    from BERT_rationale_benchmark.models import model_utils
    from tiny_bert import hf_tiny
    hf_tiny().save_pretrained(tmp_path / "bert")
    with pytest.raises(ModelError, match="no tokenizer vocabulary"):
        model_utils.load_tokenizer({"bert_vocab": str(tmp_path / "bert")})
    path = Path(__file__).resolve().parents[1] / "baselines" / "BERT" / "explain.py"
    spec = importlib.util.spec_from_file_location("bert_explain", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(ModelError, match="no tokenizer vocabulary"):
        script.load_tokenizer(str(tmp_path / "bert"))


@pytest.mark.parametrize("card, message", [
    ('{"family": "vit", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}', "has no 'config'"),
    ('{"config": {"depth": 2, "wings": 3}, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}', "does not fit"),
    ('{"family": "clip", "config": {}, "std": [0.5, 0.5, 0.5]}', "has no 'mean'"),
    ('{"config": ', "not valid JSON"),
    ('[1, 2]', "not a JSON object"),
])
def test_malformed_model_cards_are_model_errors(tmp_path, card, message):
    from baselines.models import create_model
    path = tmp_path / "card.json"
    path.write_text(card)
    with pytest.raises(ModelError, match=message):
        create_model(str(path))


def test_an_image_over_the_decompression_bomb_limit_is_one_line(tmp_path, monkeypatch):
    """PIL refuses images over twice ``MAX_IMAGE_PIXELS`` (179 Mpx by default) with an error that is not an OSError;
    the limit is lowered here so that a small image stands for a huge one."""
    from PIL import Image

    from baselines.data.images import read_images
    path = tmp_path / "huge.png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(cli.UserError, match="cannot read image .*huge.png.*decompression bomb"):
        read_images([path], lambda image: torch.zeros(1))


@pytest.mark.parametrize("script", ["baselines/BERT/finetune_20ng.py", "baselines/CLIP/explain.py",
                                    "scripts/bench_explain.py", "scripts/localisation_check.py"])
def test_every_script_checks_its_device_flag(script):
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / script), "--device", "tpu"], capture_output=True, text=True,
                          cwd=root)
    assert done.returncode == 2 and "'tpu' is not a torch device" in done.stderr.splitlines()[-1], done.stderr
