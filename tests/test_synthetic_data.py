"""The synthetic data generator, its on-disk layout and the gtsegs_ijcv.mat reader."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torchvision  # noqa: E402
from scipy.io.matlab import matfile_version  # noqa: E402

from baselines.data import synthetic  # noqa: E402
from baselines.data.imagenet_seg import ImagenetSegmentation  # noqa: E402
from scripts import make_synthetic_data  # noqa: E402

SEED, NUM_TRAIN, NUM_VAL = 7, 4, 12


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic") / "data"
    make_synthetic_data.main(["--output", str(folder), "--seed", str(SEED), "--num-train", str(NUM_TRAIN),
                              "--num-val", str(NUM_VAL)])
    return folder


def _files(folder):
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_same_seed_same_bytes(written, tmp_path):
    again = tmp_path / "again"
    make_synthetic_data.write_dataset(again, SEED, NUM_TRAIN, NUM_VAL)
    assert _files(again) == _files(written)
    other = tmp_path / "other"
    make_synthetic_data.write_dataset(other, SEED + 1, NUM_TRAIN, NUM_VAL)
    assert (other / "gtsegs_ijcv.mat").read_bytes() != (written / "gtsegs_ijcv.mat").read_bytes()


def test_mat_round_trip(written):
    path = written / "gtsegs_ijcv.mat"
    assert matfile_version(str(path)) == (2, 0)
    dataset = ImagenetSegmentation(path)
    assert len(dataset) == NUM_VAL
    for index in range(NUM_VAL):
        image, mask = dataset[index]
        sample = synthetic.generate(SEED, "val", index)
        assert image.mode == "RGB" and mask.mode == "L"
        np.testing.assert_array_equal(np.asarray(image), sample.image)
        np.testing.assert_array_equal(np.asarray(mask), sample.mask)
    with pytest.raises(IndexError):
        dataset[NUM_VAL]


@pytest.mark.parametrize("index", range(20))
def test_mask_is_the_object_and_nothing_else(index):
    sample = synthetic.generate(SEED, "train", index)
    without = synthetic.generate(SEED, "train", index, with_object=False)
    mask = sample.mask.astype(bool)
    changed = (sample.image != without.image).any(-1)
    assert set(np.unique(sample.mask)) == {0, 1}
    assert not (changed & ~mask).any()
    assert changed[mask].mean() > 0.95
    assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def test_torchvision_imagenet_reads_the_folder(written):
    val = torchvision.datasets.ImageNet(written / "imagenet", split="val")
    assert val.wnids == list(synthetic.WNIDS)
    assert val.classes == [(name,) for name in synthetic.CLASS_NAMES]
    assert len(val) == NUM_VAL
    assert sorted(val.targets) == sorted(index % len(synthetic.WNIDS) for index in range(NUM_VAL))
    image, label = val[0]
    assert image.size == (224, 224) and 0 <= label < len(synthetic.WNIDS)
    assert len(torchvision.datasets.ImageNet(written / "imagenet", split="train")) == NUM_TRAIN
    assert len(list((written / "masks").rglob("*.png"))) == NUM_TRAIN + NUM_VAL


def test_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="not empty"):
        make_synthetic_data.main(["--output", str(tmp_path), "--num-train", "0", "--num-val", "2"])
    make_synthetic_data.main(["--output", str(tmp_path), "--num-train", "0", "--num-val", "2", "--overwrite"])
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert len(ImagenetSegmentation(tmp_path / "gtsegs_ijcv.mat")) == 2


def test_missing_package_image_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "BACKGROUNDS", synthetic.BACKGROUNDS + (("skimage", "no_such_photo"),))
    synthetic.backgrounds.cache_clear()
    try:
        with pytest.raises(SystemExit, match=r"^error: background photo skimage:no_such_photo [^\n]*$"):
            make_synthetic_data.main(["--output", str(tmp_path / "out"), "--num-val", "1"])
    finally:
        synthetic.backgrounds.cache_clear()
    assert not (tmp_path / "out").exists()


def test_reader_rejects_bad_files(written, tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        ImagenetSegmentation(tmp_path / "missing.mat")
    (tmp_path / "text.mat").write_text("not a mat file")
    with pytest.raises(ValueError, match="not an HDF5"):
        ImagenetSegmentation(tmp_path / "text.mat")
    data = (written / "gtsegs_ijcv.mat").read_bytes()
    (tmp_path / "truncated.mat").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        ImagenetSegmentation(tmp_path / "truncated.mat")
