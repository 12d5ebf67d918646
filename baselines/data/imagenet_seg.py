"""The ImageNet-segmentation file ``gtsegs_ijcv.mat`` (Guillaumin et al., IJCV 2014): reader and writer.

Layout (MATLAB v7.3 = HDF5 behind a 512-byte MATLAB header): ``/value`` is a struct with two (N, 1) cell arrays
of object references. ``/value/img[i, 0]`` points at a (3, W, H) uint8 array (the H x W x 3 image transposed);
``/value/gt[i, 0]`` points at a 1 x 1 cell whose [0, 0] reference points at the (W, H) mask with values {0, 1}.
"""
import os

import h5py
import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from baselines.cli import UserError

MATLAB_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 1970 HDF5 schema 1.00 ."
USERBLOCK_SIZE = 512


class ImagenetSegmentation(Dataset):
    """Images and object masks of a gtsegs_ijcv.mat file, read lazily (one file handle per worker process).

    ``dataset[i]`` is ``(image, mask)``: a PIL RGB image and a PIL 'L' mask with values {0, 1}, each passed
    through ``transform`` / ``target_transform`` when given. A missing, truncated or non-HDF5 file raises a
    ValueError with a one-line message.
    """

    def __init__(self, path, transform=None, target_transform=None):
        self.path = os.fspath(path)
        self.transform = transform
        self.target_transform = target_transform
        self._file = None
        self._pid = None
        if not os.path.isfile(self.path):
            raise UserError(f"{self.path}: no such file (expected gtsegs_ijcv.mat)")
        if not h5py.is_hdf5(self.path):
            raise UserError(f"{self.path}: not an HDF5 (MATLAB v7.3) file, so not a gtsegs_ijcv.mat")
        try:
            with h5py.File(self.path, "r") as handle:
                if "value/img" not in handle or "value/gt" not in handle:
                    raise UserError(f"{self.path}: no /value/img and /value/gt, so not a gtsegs_ijcv.mat")
                self._length = len(handle["value/img"])
                if len(handle["value/gt"]) != self._length:
                    raise UserError(f"{self.path}: /value/img and /value/gt differ in length")
                if self._length:
                    _read(handle, self._length - 1)
        except (OSError, KeyError, RuntimeError) as exc:
            raise UserError(f"{self.path}: cannot be read, truncated or corrupt ({exc})") from None

    def __len__(self):
        return self._length

    def __getitem__(self, index):
        if not -self._length <= index < self._length:
            raise IndexError(f"index {index} out of range for {self._length} images")
        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        image, mask = _read(self._file, index % self._length)
        image, mask = Image.fromarray(image).convert("RGB"), Image.fromarray(mask.astype(np.uint8), "L")
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            mask = self.target_transform(mask)
        return image, mask

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"], state["_pid"] = None, None
        return state


def _read(handle, index):
    image = np.array(handle[handle["value/img"][index, 0]]).transpose(2, 1, 0)
    mask = np.array(handle[handle[handle["value/gt"][index, 0]][0, 0]]).transpose(1, 0)
    return image, mask


def write_gtsegs(path, pairs):
    """Write ``pairs`` (a sequence of (H x W x 3 uint8 image, H x W {0,1} mask)) in the gtsegs_ijcv.mat layout."""
    reference = h5py.special_dtype(ref=h5py.Reference)
    with h5py.File(path, "w", userblock_size=USERBLOCK_SIZE) as handle:
        refs = handle.create_group("#refs#")
        value = handle.create_group("value")
        value.attrs["MATLAB_class"] = np.bytes_("struct")
        value.attrs["MATLAB_fields"] = np.array([np.frombuffer(b"img", "S1"), np.frombuffer(b"gt", "S1")],
                                                dtype=h5py.vlen_dtype(np.dtype("S1")))
        images = value.create_dataset("img", (len(pairs), 1), dtype=reference)
        cells = value.create_dataset("gt", (len(pairs), 1), dtype=reference)
        for dataset in (images, cells):
            dataset.attrs["MATLAB_class"] = np.bytes_("cell")
        for i, (image, mask) in enumerate(pairs):
            stored_image = _matlab_array(refs, f"img{i:06d}", np.asarray(image, np.uint8).transpose(2, 1, 0))
            stored_mask = _matlab_array(refs, f"mask{i:06d}", np.asarray(mask, np.uint8).transpose(1, 0))
            cell = refs.create_dataset(f"gt{i:06d}", (1, 1), dtype=reference)
            cell.attrs["MATLAB_class"] = np.bytes_("cell")
            cell[0, 0] = stored_mask.ref
            images[i, 0] = stored_image.ref
            cells[i, 0] = cell.ref
    header = MATLAB_HEADER.ljust(116, b" ") + bytes(8) + b"\x00\x02" + b"IM"
    with open(path, "r+b") as raw:
        raw.write(header.ljust(USERBLOCK_SIZE, b"\x00"))


def _matlab_array(group, name, array):
    dataset = group.create_dataset(name, data=array, compression="gzip", compression_opts=4)
    dataset.attrs["MATLAB_class"] = np.bytes_("uint8")
    return dataset
