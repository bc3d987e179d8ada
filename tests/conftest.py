"""Shared fixtures: ``device`` runs a test on the CPU always and on CUDA when a GPU is present; without
one the CUDA case is still collected and reported as skipped ("no CUDA device")."""
import pytest
import torch

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="no CUDA device"))]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)
