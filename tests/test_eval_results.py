"""The results.hdf5 writer (layout, resumption after a crash) and reader checks."""
import os

import h5py
import numpy as np
import pytest

from baselines.eval.distributed import Dist, batch_rows, shard
from baselines.eval.results import InputError, ResultsWriter, check_results

os.environ["HF_HUB_OFFLINE"] = "1"
SETTINGS = {"method": "rollout", "vis_class": "top", "class_id": 0, "model": "tiny"}


def fake_rows(indices):
    gen = np.random.default_rng(int(indices[0]))
    n = len(indices)
    return gen.random((n, 1, 4, 4), dtype=np.float32), gen.random((n, 3, 4, 4), dtype=np.float32)


def run(path, indices, stop_after=None, settings=SETTINGS, batch_size=3):
    writer = ResultsWriter(str(path), indices, indices % 7, (3, 4, 4), batch_size, settings, Dist())
    writer.open()
    for count, batch in enumerate(writer.pending()):
        if count == stop_after:
            writer.close()
            return writer
        writer.write(batch, *fake_rows(writer.rows(batch)))
    writer.finalize()
    return writer


def read(path):
    with h5py.File(path, "r") as f:
        return {name: f[name][()] for name in f}, dict(f.attrs)


def test_layout_and_reader(tmp_path):
    indices = np.arange(10, 20)
    run(tmp_path / "r.hdf5", indices)
    data, attrs = read(tmp_path / "r.hdf5")
    assert data["vis"].shape == (10, 1, 4, 4) and data["vis"].dtype == np.float32
    assert data["image"].shape == (10, 3, 4, 4) and data["target"].dtype == np.int32
    np.testing.assert_array_equal(data["index"], indices)
    np.testing.assert_array_equal(data["target"], indices % 7)
    assert attrs["method"] == "rollout"
    assert check_results(str(tmp_path / "r.hdf5"), "rollout")[0] == 10
    assert not os.path.exists(tmp_path / "r.hdf5.partial")


def test_resume_equals_uninterrupted(tmp_path):
    indices = np.arange(11)
    run(tmp_path / "full.hdf5", indices)
    run(tmp_path / "cut.hdf5", indices, stop_after=2)
    assert not os.path.exists(tmp_path / "cut.hdf5")
    writer = run(tmp_path / "cut.hdf5", indices, stop_after=0)
    assert writer.pending() == [2, 3]
    run(tmp_path / "cut.hdf5", indices)
    full, cut = read(tmp_path / "full.hdf5")[0], read(tmp_path / "cut.hdf5")[0]
    for name in full:
        np.testing.assert_array_equal(full[name], cut[name])


def test_other_settings_discard_partial(tmp_path):
    run(tmp_path / "r.hdf5", np.arange(9), stop_after=2)
    writer = run(tmp_path / "r.hdf5", np.arange(9), stop_after=0, settings=dict(SETTINGS, method="full_lrp"))
    assert writer.pending() == [0, 1, 2]


def test_sharding_covers_every_batch_once():
    batches = [shard(10, 3, rank, 3) for rank in range(3)]
    assert batches == [[0, 3], [1], [2]]
    rows = sorted(r for b in batches for r in batch_rows(b, 3, 10))
    assert rows == list(range(10))


def test_reader_rejects_bad_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        check_results(str(tmp_path / "missing.hdf5"))
    run(tmp_path / "r.hdf5", np.arange(6))
    with pytest.raises(InputError, match="written by method rollout, not full_lrp"):
        check_results(str(tmp_path / "r.hdf5"), "full_lrp")
    size = os.path.getsize(tmp_path / "r.hdf5")
    with open(tmp_path / "r.hdf5", "rb") as f, open(tmp_path / "t.hdf5", "wb") as g:
        g.write(f.read(size - 100))
    with pytest.raises(InputError, match="truncated"):
        check_results(str(tmp_path / "t.hdf5"))
    with open(tmp_path / "t.hdf5", "r+b") as g:
        g.truncate(1000)
    with pytest.raises(InputError, match="not a readable HDF5 file"):
        check_results(str(tmp_path / "t.hdf5"))
    with h5py.File(tmp_path / "e.hdf5", "w") as f:
        for name, shape in (("vis", (0, 1, 4, 4)), ("image", (0, 3, 4, 4)), ("target", (0,))):
            f.create_dataset(name, shape=shape, dtype="f4")
    with pytest.raises(InputError, match="no rows"):
        check_results(str(tmp_path / "e.hdf5"))
