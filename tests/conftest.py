"""Shared fixtures: ``device`` runs a test on the CPU always and on CUDA when a GPU is present."""
import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)
