"""The three ViT benchmark scripts end to end on the synthetic benchmark.

With the shipped model: every method through all three scripts, and transformer_attribution's negative-perturbation
AUC above its positive one. With a small random ViT (plumbing only, fast): torchrun with two CPU processes (gloo)
against one process, a killed-and-resumed visualization run against an uninterrupted one, one-line errors, and the
batched perturbation against a per-image loop."""
import glob
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from baselines.eval import cli, metrics
from baselines.methods import METHOD_NAMES
from baselines.models import DEFAULT_MODEL, PRETRAINED_DIR, create_model
from baselines.models.vit import ViTConfig, VisionTransformer

ROOT = Path(__file__).resolve().parents[1]
VIT = ROOT / "baselines" / "ViT"
SHIPPED = PRETRAINED_DIR / f"{DEFAULT_MODEL}.json"
shipped_model = pytest.mark.skipif(not SHIPPED.is_file(), reason=f"shipped model {SHIPPED} missing")


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATE = load(VIT / "generate_visualizations.py", "generate_visualizations")
PERTURBATION = load(VIT / "pertubation_eval_from_hdf5.py", "pertubation_eval_from_hdf5")
SEGMENTATION = load(VIT / "imagenet_seg_eval.py", "imagenet_seg_eval")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    load(ROOT / "scripts" / "make_synthetic_data.py", "make_synthetic_data").write_dataset(root, num_train=0,
                                                                                          num_val=40)
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A model card of a small random ViT (64 wide, 4 blocks, 10 classes): fast plumbing tests."""
    folder = tmp_path_factory.mktemp("tiny")
    config = {"embed_dim": 64, "depth": 4, "num_heads": 4, "num_classes": 10}
    torch.manual_seed(0)
    torch.save(VisionTransformer(ViTConfig(**config)).state_dict(), folder / "tiny.pth")
    (folder / "tiny.json").write_text(json.dumps({"config": config, "mean": [0.5] * 3, "std": [0.5] * 3}))
    return ["--model", str(folder / "tiny.json")]


def run(module, *args, model=(), device="cpu"):
    return cli.run(module.main, [str(a) for a in (*args, *model, "--num-workers", 0, "--device", device)])


def read_h5(path):
    with h5py.File(path, "r") as f:
        return {name: f[name][()] for name in f}


def read_json(path):
    return {k: v for k, v in json.loads(Path(path).read_text()).items() if k != "world_size"}


@shipped_model
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_every_method_runs_all_three_scripts(method, data, tmp_path, device):
    hdf5 = tmp_path / "results.hdf5"
    assert run(GENERATE, "--method", method, "--imagenet-validation-path", data / "imagenet", "--limit", 3,
               "--batch-size", 2, "--output", hdf5, device=device) == 0
    rows = read_h5(hdf5)
    assert rows["vis"].shape == (3, 1, 224, 224) and rows["image"].shape == (3, 3, 224, 224)
    assert rows["vis"].min() >= 0 and rows["vis"].max() <= 1
    assert run(PERTURBATION, "--method", method, "--input", hdf5, "--output", tmp_path / "pert", device=device) == 0
    assert len(read_json(tmp_path / "pert" / "results.json")["accuracy"]) == 10
    assert (tmp_path / "pert" / "perturbation_curve.png").is_file()
    assert run(SEGMENTATION, "--method", method, "--imagenet-seg-path", data / "gtsegs_ijcv.mat", "--limit", 3,
               "--batch-size", 2, "--output", tmp_path / "seg", device=device) == 0
    assert 0 <= read_json(tmp_path / "seg" / "results.json")["mean_iou"] <= 1


@shipped_model
def test_transformer_attribution_negative_auc_above_positive(data, tmp_path):
    hdf5 = tmp_path / "results.hdf5"
    assert run(GENERATE, "--method", "transformer_attribution", "--imagenet-validation-path", data / "imagenet",
               "--limit", 24, "--output", hdf5) == 0
    auc = {}
    for name, flags in (("neg", ["--neg"]), ("pos", [])):
        args = ["--method", "transformer_attribution", "--input", hdf5, "--output", tmp_path / name, *flags]
        assert run(PERTURBATION, *args) == 0
        auc[name] = read_json(tmp_path / name / "results.json")["auc"]
    assert auc["neg"] > auc["pos"]


def test_bad_input_one_line_and_nonzero_exit(data, tiny, tmp_path, capsys):
    hdf5 = tmp_path / "rollout.hdf5"
    assert run(GENERATE, "--method", "rollout", "--imagenet-validation-path", data / "imagenet", "--limit", 2,
               "--output", hdf5, model=tiny) == 0
    before = hdf5.read_bytes()
    (tmp_path / "truncated.mat").write_bytes((data / "gtsegs_ijcv.mat").read_bytes()[:20000])
    (tmp_path / "truncated.hdf5").write_bytes(before[:len(before) // 2])
    np.save(tmp_path / "empty.npy", np.zeros(0, dtype=np.int64))
    capsys.readouterr()
    cases = [
        (SEGMENTATION, "--imagenet-seg-path", tmp_path / "missing.mat"),
        (SEGMENTATION, "--imagenet-seg-path", tmp_path / "truncated.mat"),
        (GENERATE, "--imagenet-validation-path", data, "--output", hdf5),
        (GENERATE, "--imagenet-validation-path", data / "imagenet", "--subset", tmp_path / "empty.npy",
         "--output", hdf5),
        (PERTURBATION, "--input", tmp_path / "missing.hdf5"),
        (PERTURBATION, "--input", tmp_path / "truncated.hdf5"),
    ]
    for module, *args in cases:
        assert run(module, "--method", "rollout", *args, model=tiny) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: "), err
    assert run(PERTURBATION, "--method", "full_lrp", "--input", hdf5, model=tiny) == 2
    assert "written by method rollout, not full_lrp" in capsys.readouterr().err
    assert hdf5.read_bytes() == before


def test_an_unreadable_image_in_a_loader_worker_names_the_file(data, tiny, tmp_path, capsys):
    """A corrupt JPEG read in a data-loader worker: one line naming the file, not "Caught ... in DataLoader
    worker process 0"."""
    import shutil
    folder = tmp_path / "imagenet"
    shutil.copytree(data / "imagenet", folder)
    broken = sorted((folder / "val").rglob("*.JPEG"))[0]
    broken.write_bytes(b"not a jpeg")
    args = ["--method", "rollout", "--imagenet-validation-path", folder, "--limit", 2, "--output",
            tmp_path / "out.hdf5", *tiny, "--num-workers", 1, "--device", "cpu"]
    assert cli.run(GENERATE.main, [str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Caught" not in err, err
    assert err.splitlines()[-1] == f"error: cannot read image {broken}: UnidentifiedImageError", err


def test_generate_never_replaces_other_results_and_notices_a_changed_dataset(data, tiny, tmp_path, capsys):
    import shutil
    folder = tmp_path / "imagenet"
    shutil.copytree(data / "imagenet", folder)
    output = tmp_path / "results.hdf5"
    base = ["--imagenet-validation-path", folder, "--limit", 2, "--output", output]
    notes = tmp_path / "notes.hdf5"
    notes.write_text("my notes")
    assert run(GENERATE, "--method", "rollout", *base[:-1], notes, model=tiny) == 2
    assert notes.read_text() == "my notes" and "pass --overwrite" in capsys.readouterr().err

    assert run(GENERATE, "--method", "rollout", *base, model=tiny) == 0
    before = output.read_bytes()
    assert run(GENERATE, "--method", "attn_last_layer", *base, model=tiny) == 2
    assert output.read_bytes() == before and "not this run's complete results" in capsys.readouterr().err

    first = sorted((folder / "val").rglob("*.JPEG"))[0]
    first.write_bytes(first.read_bytes() + b"\0")
    assert run(GENERATE, "--method", "rollout", *base, model=tiny) == 2
    assert output.read_bytes() == before and "another dataset" in capsys.readouterr().err
    assert run(GENERATE, "--method", "rollout", *base, "--overwrite", model=tiny) == 0
    assert output.read_bytes() != before


def test_a_second_run_on_the_same_output_is_refused(data, tiny, tmp_path, capsys):
    """While one run holds OUTPUT.lock (here: this test), another run on OUTPUT exits with one line and writes
    nothing; once the lock is free the run completes and removes its lock file."""
    import fcntl
    output = tmp_path / "results.hdf5"
    args = ["--method", "rollout", "--imagenet-validation-path", data / "imagenet", "--limit", 2, "--output", output]
    holder = open(f"{output}.lock", "w")
    fcntl.flock(holder, fcntl.LOCK_EX)
    assert run(GENERATE, *args, model=tiny) == 2
    assert "another run is writing" in capsys.readouterr().err and not output.exists()
    holder.close()
    assert run(GENERATE, *args, model=tiny) == 0
    assert output.exists() and not Path(f"{output}.lock").exists()


def test_perturbation_refuses_unfinished_files_bad_maps_and_labels(data, tiny, tmp_path, capsys):
    hdf5 = tmp_path / "rollout.hdf5"
    assert run(GENERATE, "--method", "rollout", "--imagenet-validation-path", data / "imagenet", "--limit", 2,
               "--output", hdf5, model=tiny) == 0
    with h5py.File(hdf5, "r") as f:
        assert f.attrs["complete"]
    damage = {"unfinished": lambda f: f.attrs.__setitem__("complete", False),
              "NaN or infinite": lambda f: f["vis"].__setitem__((0, 0, 0, 0), np.nan),
              "outside the model's 10 classes": lambda f: f["target"].__setitem__(0, 10)}
    capsys.readouterr()
    for message, change in damage.items():
        copy = tmp_path / "copy.hdf5"
        copy.write_bytes(hdf5.read_bytes())
        with h5py.File(copy, "r+") as f:
            change(f)
        assert run(PERTURBATION, "--method", "rollout", "--input", copy, "--output", tmp_path / "p", model=tiny) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
        assert last.startswith("error: ") and message in last, last


@pytest.mark.numerics
def test_batched_perturbation_equals_per_image_loop(tiny, device, float64):
    """float64, so that the hits (argmax over logits) are exact whatever the CPU's float32 rounding."""
    model = create_model(tiny[1]).to(device, float64)
    gen = torch.Generator().manual_seed(0)
    images, vis = torch.rand(2, 3, 224, 224, generator=gen), torch.rand(2, 1, 224, 224, generator=gen)
    images, vis = images.to(device, float64), vis.to(device, float64)
    with torch.inference_mode():
        target = model(cli.normalise(images, model)).argmax(1)
        rows = PERTURBATION.evaluate_batch(model, images, vis, target, neg=True)
        for b in range(2):
            order = torch.argsort(-vis[b].flatten(), descending=True, stable=True)
            logits = []
            for step in (0, *metrics.PERTURBATION_STEPS):
                image = images[b].clone().view(3, -1)
                image[:, order[:int(224 * 224 * step)]] = 0
                logits.append(model(cli.normalise(image.view(1, 3, 224, 224), model))[0])
            logits = torch.stack(logits).cpu()
            np.testing.assert_array_equal(rows[b, :10], (logits.argmax(1) == target[b].cpu()).numpy())
            top = logits.softmax(1).amax(1)
            np.testing.assert_allclose(rows[b, 10:19], (top[0] - top[1:]).numpy(), atol=1e-6)
            np.testing.assert_allclose(rows[b, 19:], (logits.amax(1)[0] - logits.amax(1)[1:]).numpy(), atol=1e-5)


DRIVER = """
import datetime, importlib.util, json, sys
import torch.distributed
torch.distributed.init_process_group("gloo", timeout=datetime.timedelta(seconds=120))
for path, argv in json.loads(sys.argv[1]):
    spec = importlib.util.spec_from_file_location("script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(argv) == 0
"""


def torchrun(tmp_path, runs, model):
    """Run (script, args) pairs in order inside one `torchrun --nproc_per_node 2` launch (CPU, gloo)."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    runs = [(str(script), [str(a) for a in (*args, *model, "--num-workers", 0, "--device", "cpu")])
            for script, args in runs]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(driver),
               json.dumps(runs)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, stderr[-3000:]


@pytest.fixture
def one_thread():
    torch.set_num_threads(1)


def test_torchrun_two_processes_equal_one(data, tiny, tmp_path, one_thread):
    """Both sides on CPU, one thread, one image per batch: each image's computation is the same float32 one, so
    the sharded results equal the single-process ones bit for bit on any CPU."""
    common = ["--method", "rollout", "--limit", 9, "--batch-size", 1]
    generate = [*common, "--imagenet-validation-path", data / "imagenet", "--vis-class", "target"]
    perturbation = ["--method", "rollout", "--vis-class", "target", "--batch-size", 1, "--input", tmp_path / "one.hdf5"]
    segmentation = [*common, "--imagenet-seg-path", data / "gtsegs_ijcv.mat"]
    assert run(GENERATE, *generate, "--output", tmp_path / "one.hdf5", model=tiny) == 0
    assert run(PERTURBATION, *perturbation, "--output", tmp_path / "pert1", model=tiny) == 0
    assert run(SEGMENTATION, *segmentation, "--output", tmp_path / "seg1", model=tiny) == 0
    torchrun(tmp_path, [(VIT / "generate_visualizations.py", [*generate, "--output", tmp_path / "two.hdf5"]),
                        (VIT / "pertubation_eval_from_hdf5.py", [*perturbation, "--output", tmp_path / "pert2"]),
                        (VIT / "imagenet_seg_eval.py", [*segmentation, "--output", tmp_path / "seg2"])], tiny)
    one, two = read_h5(tmp_path / "one.hdf5"), read_h5(tmp_path / "two.hdf5")
    assert one.keys() == two.keys() and all(np.array_equal(one[k], two[k]) for k in one)
    assert read_json(tmp_path / "pert1" / "results.json") == read_json(tmp_path / "pert2" / "results.json")
    assert read_json(tmp_path / "seg1" / "results.json") == read_json(tmp_path / "seg2" / "results.json")


def test_killed_and_resumed_run_equals_uninterrupted(data, tiny, tmp_path, one_thread):
    args = ["--method", "transformer_attribution", "--imagenet-validation-path", data / "imagenet", "--limit", 10,
            "--batch-size", 1, *tiny]
    assert run(GENERATE, *args, "--output", tmp_path / "full.hdf5") == 0
    cut = tmp_path / "cut.hdf5"

    def journaled():
        return sum(os.path.getsize(j) for j in glob.glob(f"{cut}.partial.done.*")) // 4

    command = [sys.executable, str(VIT / "generate_visualizations.py"), *map(str, args), "--output", str(cut),
               "--num-workers", "0", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for stop_at in (1, 4):
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if journaled() >= stop_at:
                break
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not cut.exists() and 0 < journaled() < 10
    assert run(GENERATE, *args, "--output", cut) == 0
    full, resumed = read_h5(tmp_path / "full.hdf5"), read_h5(cut)
    assert all(np.array_equal(full[k], resumed[k]) for k in full)
    assert journaled() == 0 and not Path(str(cut) + ".partial").exists()
