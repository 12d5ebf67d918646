"""Correctly spelled alias of pertubation_eval_from_hdf5.py (TE's file name, kept so the papers' commands work)."""
import os
import runpy

if __name__ == "__main__":
    runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pertubation_eval_from_hdf5.py"),
                   run_name="__main__")
