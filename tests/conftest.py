"""Hypothesis profiles for the whole suite.

``dev`` is the default; pick another with ``pytest --hypothesis-profile=ci`` (what CI and
``nox -s tests`` use: deterministic and bounded) or ``--hypothesis-profile=thorough`` (long runs).
"""

from collections.abc import Iterator

import pytest
import torch
from adapters import TorchImplementation
from hypothesis import HealthCheck, settings

# Deadlines are off everywhere: the first torch call in a process is slow, and a timing-based
# failure would not be a statement about the formulas.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=60,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile("dev")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--torch-device",
        default="cpu",
        help="device for the torch implementation under test (cpu, cuda); the properties do not change",
    )


@pytest.fixture(scope="session")
def torch_device(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--torch-device"))


@pytest.fixture(scope="session", params=["float64", "float32", "float16", "bfloat16"])
def implementation(request: pytest.FixtureRequest, torch_device: str) -> TorchImplementation:
    """torch in every floating dtype, on the chosen device."""
    return TorchImplementation(request.param, torch_device)


@pytest.fixture(scope="session")
def torch64(torch_device: str) -> TorchImplementation:
    """torch in float64, for properties about semantics (errors, edge cases) rather than rounding."""
    return TorchImplementation("float64", torch_device)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """For modules of tiny tensors: torch's thread pool only adds contention (10x slower on a loaded 2-core runner)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
