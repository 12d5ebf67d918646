"""Shared test settings: offline; each test's device, threads and seed set explicitly.

``--device`` (default ``cpu``) is the torch device of the tests that take the ``device`` fixture. With any other
device (``--device cuda``, what ``scripts/gpu_check.sh`` runs) only those tests run; the rest are skipped, since
the CPU run covers them. Tests marked ``numerics`` are the numerically sensitive ones that ``.ci/run`` also runs
under ``ATEN_CPU_CAPABILITY=default``."""
import os

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

THREADS = 2
"""Intra-op threads of every test (a test that needs another count sets it and restores it)."""


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu",
                     help="torch device of the device-aware tests (cpu, cuda, cuda:1, ...); with a device other "
                          "than cpu, the tests that run on CPU only are skipped")


def pytest_configure(config):
    config.addinivalue_line("markers", "numerics: numerically sensitive; .ci/run also runs these under "
                                       "ATEN_CPU_CAPABILITY=default")


def pytest_collection_modifyitems(config, items):
    device = torch.device(config.getoption("--device"))
    if device.type == "cpu":
        return
    skip = pytest.mark.skip(reason=f"runs on CPU only (--device {device})")
    for item in items:
        if "device" not in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device(request):
    """The torch device given by ``--device``; skips the session's device tests when it is not available."""
    device = torch.device(request.config.getoption("--device"))
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("--device cuda but CUDA is not available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        pytest.skip("--device mps but MPS is not available")
    return device


@pytest.fixture
def float64(device):
    """float64, the dtype of exact equalities; skipped on MPS, which has no float64."""
    if device.type == "mps":
        pytest.skip("MPS has no float64")
    return torch.float64


@pytest.fixture(scope="session", autouse=True)
def _session_threads():
    torch.set_num_threads(THREADS)


@pytest.fixture(autouse=True)
def _threads_and_seed():
    """Every test starts with ``THREADS`` intra-op threads and the global seed 0."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One intra-op thread (tiny models, where threads only wait on each other), restored after."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(THREADS)
