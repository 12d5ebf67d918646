"""Evaluation helpers shared by the ViT benchmark scripts.

- `metrics`: segmentation scores (TE's pixel accuracy, mIoU, mAP, mF1) and perturbation curves/AUCs.
- `results`: the `results.hdf5` layout of TE's `generate_visualizations.py`, a crash-safe resumable writer and a
  validating reader.
- `distributed`: torchrun set-up, sharding by whole batches and merging of per-image records.
- `cli`: what the three scripts share (one-line errors, devices, transforms, JSON output).
"""
