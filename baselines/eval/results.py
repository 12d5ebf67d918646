"""TE's `results.hdf5` (written by `generate_visualizations.py`, read by the perturbation test).

Layout (TE): `vis` float32 [N, 1, H, W] (min-max normalised map), `image` float32 [N, 3, H, W] (the [0, 1] image,
not normalised), `target` int32 [N] (ground-truth label). We add `index` int64 [N] (the dataset index of each row)
and attributes describing the run (`method`, `vis_class`, `class_id`, `model`, `settings` as JSON).

Crash safety and resumption. The rows go to `PATH.partial`, made in full before any row is computed: `target` and
`index` are written then, `vis` and `image` are contiguous, uncompressed and allocated, aligned to 4096-byte pages.
Afterwards no HDF5 metadata changes; the rows are written with positional writes into the datasets' byte ranges,
so several processes write disjoint rows (rows of 224 x 224 pixels are whole pages, so processes on different nodes
never share a page). Batch b holds the rows [b B, (b + 1) B); process r appends b to its journal
`PATH.partial.done.r` only after the batch's rows are written, so a process killed at any point leaves every
journaled batch complete. A rerun with the same settings computes the batches missing from all journals, with the
same batch composition, so the result equals an uninterrupted run's. When every batch is journaled, the partial
file is renamed to PATH (optionally repacked with gzip first): PATH is never partly written.
"""
import fcntl
import glob
import json
import os

import h5py
import numpy as np
import torch

from baselines.cli import UserError

DATASETS = ("vis", "image", "target")
PAGE = 4096


class InputError(UserError):
    """Bad input (file, folder, option): the scripts print its one-line message and exit non-zero."""


def _describe(settings):
    return json.dumps(settings, sort_keys=True, default=str)


def _allocated(group, name, shape, dtype):
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    space = h5py.h5s.create_simple(tuple(shape))
    h5py.h5d.create(group.id, name.encode(), h5py.h5t.py_create(np.dtype(dtype)), space, dcpl=dcpl)


class ResultsWriter:
    """Resumable writer of `results.hdf5` for the batches of a fixed list of dataset indices and their labels.

    settings: everything that determines the rows (method, options, model, vis class, ...); a partial file written
    with other settings, batch size or indices is discarded. Every process constructs the writer; `dist` (see
    `baselines.eval.distributed`) says which one creates and finalises the file.
    """

    def __init__(self, path, indices, targets, image_shape, batch_size, settings, dist):
        self.path, self.partial, self.journal_prefix = path, path + ".partial", path + ".partial.done."
        self.indices = np.asarray(indices, dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.int32)
        self.image_shape, self.batch_size, self.dist = tuple(image_shape), batch_size, dist
        self.settings = dict(settings, batch_size=batch_size, num_rows=len(self.indices))
        self.num_batches = -(-len(self.indices) // batch_size)
        self.layout, self.done, self.data, self.journal, self.lock = {}, set(), None, None, None

    def is_complete(self):
        """Whether PATH already holds this run's rows (same settings and indices)."""
        return self._matches(self.path)

    def _matches(self, path):
        try:
            with h5py.File(path, "r") as f:
                same = f.attrs.get("settings") == _describe(self.settings)
                return same and np.array_equal(f["index"][()], self.indices)
        except (OSError, KeyError):
            return False

    def _journals(self):
        return glob.glob(glob.escape(self.journal_prefix) + "*")

    def _journaled(self):
        """Batches recorded by every journal (a torn last entry is ignored)."""
        done = set()
        for name in self._journals():
            with open(name, "rb") as handle:
                data = handle.read()
            done.update(np.frombuffer(data[:len(data) // 4 * 4], dtype="<i4").tolist())
        return done

    def _create(self):
        for stale in [self.partial, *self._journals()]:
            if os.path.exists(stale):
                os.remove(stale)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        n, (channels, height, width) = len(self.indices), self.image_shape
        with h5py.File(self.partial + ".tmp", "w", alignment_threshold=PAGE, alignment_interval=PAGE) as f:
            _allocated(f, "vis", (n, 1, height, width), np.float32)
            _allocated(f, "image", (n, channels, height, width), np.float32)
            f.create_dataset("target", data=self.targets)
            f.create_dataset("index", data=self.indices)
            f.attrs["settings"] = _describe(self.settings)
            f.attrs["complete"] = False
            for key in ("method", "vis_class", "class_id", "model"):
                f.attrs[key] = str(self.settings.get(key))
        os.replace(self.partial + ".tmp", self.partial)

    def open(self):
        """Create PATH.partial (or reuse a matching one) and open it; returns the number of batches already done.
        Rank 0 holds an exclusive lock on PATH.lock until ``finalize`` (or its exit): a second run writing the same
        PATH is refused in one line instead of interleaving its rows."""
        if self.dist.rank == 0:
            self._lock()
            if self._matches(self.partial):
                print(f"resuming {self.partial}", flush=True)
            else:
                self._create()
        self.dist.barrier()
        with h5py.File(self.partial, "r") as f:
            self.layout = {name: (f[name].id.get_offset(), int(np.prod(f[name].shape[1:])) * f[name].dtype.itemsize)
                           for name in ("vis", "image")}
        self.data = os.open(self.partial, os.O_WRONLY)
        self.done = self._journaled()
        self.journal = os.open(f"{self.journal_prefix}{self.dist.rank}", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        return len(self.done)

    def _lock(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self.lock = os.open(self.path + ".lock", os.O_WRONLY | os.O_CREAT)
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.lock)
            raise InputError(f"another run is writing {self.path} (it holds {self.path}.lock); wait for it or "
                             "choose another --output") from None

    def pending(self, rank=0, world=1):
        """This process's unfinished batches: batch b belongs to process b mod world."""
        return [b for b in range(rank, self.num_batches, world) if b not in self.done]

    def rows(self, batch):
        """Dataset indices of the rows of a batch."""
        return self.indices[batch * self.batch_size:(batch + 1) * self.batch_size]

    def write(self, batch, vis, image):
        """Store one batch (tensors or arrays: vis [B,1,H,W], image [B,3,H,W]), then journal it."""
        for name, value in (("vis", vis), ("image", image)):
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().numpy()
            offset, row_bytes = self.layout[name]
            _write_at(self.data, np.ascontiguousarray(value, dtype="<f4"), offset + batch * self.batch_size * row_bytes)
        os.write(self.journal, np.array([batch], dtype="<i4").tobytes())

    def finalize(self, compression=None):
        """After every process's last batch: rename the complete partial file to PATH (rank 0)."""
        self._close("data", "journal")
        self.dist.barrier()
        if self.dist.rank != 0:
            return
        missing = self.num_batches - len(self._journaled() & set(range(self.num_batches)))
        if missing:
            raise RuntimeError(f"{self.partial}: {missing} batches are missing")
        with h5py.File(self.partial, "r+") as f:
            f.attrs["complete"] = True
        if compression:
            _repack(self.partial, compression)
        os.replace(self.partial, self.path)
        for journal in self._journals():
            os.remove(journal)
        os.remove(self.path + ".lock")
        self._close("lock")

    def close(self):
        """Close every file, as a process's exit would: a partial file and its journals stay for a resume."""
        self._close("data", "journal", "lock")

    def _close(self, *names):
        for name in names:
            if getattr(self, name) is not None:
                os.close(getattr(self, name))
                setattr(self, name, None)


def _write_at(fd, array, offset):
    """pwrite the whole buffer (a single call may write less, e.g. above 2 GiB)."""
    view = memoryview(array).cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _repack(path, compression):
    """Rewrite `path` with chunked, compressed datasets (one row per chunk), through a temporary file."""
    with h5py.File(path, "r") as source, h5py.File(path + ".tmp", "w") as target:
        for name, dataset in source.items():
            chunks = (1, *dataset.shape[1:]) if dataset.ndim > 1 else None
            out = target.create_dataset(name, shape=dataset.shape, dtype=dataset.dtype, chunks=chunks,
                                        compression=compression)
            for start in range(0, len(dataset), 256):
                out[start:start + 256] = dataset[start:start + 256]
        target.attrs.update(source.attrs)
    os.replace(path + ".tmp", path)


def check_results(path, method=None, canonical=lambda name: name):
    """Validate a results file; returns (number of rows, attributes). Raises InputError with a one-line reason.

    Checks: a readable HDF5 file, the datasets of TE's layout with consistent shapes, every dataset's bytes within
    the file (a truncated file fails here, not half-way), at least one row, and (when the file records it) that it
    was written by `method` (names compared after `canonical`).
    """
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file (run generate_visualizations.py first)")
    try:
        with h5py.File(path, "r") as f:
            missing = [name for name in DATASETS if name not in f]
            if missing:
                raise InputError(f"{path}: not a results file, datasets {missing} missing")
            vis, image, target = (f[name] for name in DATASETS)
            n = len(target)
            if vis.ndim != 4 or image.ndim != 4 or vis.shape[1] != 1 or len(vis) != n or len(image) != n \
                    or vis.shape[2:] != image.shape[2:]:
                raise InputError(f"{path}: inconsistent shapes vis {vis.shape}, image {image.shape}, "
                                 f"target {target.shape}")
            if n == 0:
                raise InputError(f"{path}: the file holds no rows")
            size = os.path.getsize(path)
            if any(_end(f[name]) > size for name in DATASETS):
                raise InputError(f"{path}: the file is truncated")
            attrs = {key: value for key, value in f.attrs.items()}
    except OSError as error:
        raise InputError(f"{path}: not a readable HDF5 file ({str(error).splitlines()[0]})") from None
    if not attrs.get("complete", True):
        raise InputError(f"{path} is an unfinished results file; rerun generate_visualizations.py to complete it")
    written = attrs.get("method")
    if method is not None and written is not None and canonical(str(written)) != canonical(method):
        raise InputError(f"{path} was written by method {written}, not {method}")
    return n, attrs


def _end(dataset):
    """One past the last byte of a dataset's stored data."""
    if dataset.chunks is None:
        offset = dataset.id.get_offset()
        return 0 if offset is None else offset + dataset.id.get_storage_size()
    count = dataset.id.get_num_chunks()
    return max((sum(dataset.id.get_chunk_info(i)[2:4]) for i in range(count)), default=0)


class ResultsBatches(torch.utils.data.Dataset):
    """Item i = (batch b, image, vis, target) of rows [b B, min((b + 1) B, num_rows)) for b = batches[i].

    The file opens lazily (once per DataLoader worker).
    """

    def __init__(self, path, batch_size, batches, num_rows):
        self.path, self.batch_size, self.batches, self.num_rows = path, batch_size, list(batches), num_rows
        self.file = None

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        if self.file is None:
            self.file = h5py.File(self.path, "r")
        start = self.batches[i] * self.batch_size
        rows = slice(start, min(start + self.batch_size, self.num_rows))
        return (self.batches[i], *(torch.from_numpy(self.file[name][rows]) for name in ("image", "vis", "target")))
