"""Shared fixtures. Tests run single-threaded: two busy OpenMP threads on a shared 2-core
machine are many times slower than one."""

import pytest
import torch

import xr0lab


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_config():
    return xr0lab.preset("tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    torch.manual_seed(0)
    return xr0lab.XR0Model(tiny_config).eval()


@pytest.fixture(scope="session")
def tiny_async_model(tiny_model):
    """Same weights as tiny_model, xr0-async mode (Λ band w=4, +10 offset, prefixes)."""
    model = xr0lab.XR0Model(tiny_model.config.with_mode("xr0-async"), vlm=tiny_model.vlm).eval()
    model.load_state_dict(tiny_model.state_dict())
    return model


@pytest.fixture(scope="session")
def example_inputs(tiny_config):
    return xr0lab.make_example_inputs(tiny_config, batch_size=2, seed=0)
