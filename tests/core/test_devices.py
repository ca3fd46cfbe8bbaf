"""core.env.resolve_device: the one device parser of Task 1 and Task 2."""

from __future__ import annotations

import pytest
import torch

from core.env import resolve_device
from core.errors import UserError


def test_cpu_and_auto_without_a_gpu():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu", "mps", "cuda:x", "CPU", ""])
def test_an_unknown_name_is_one_line_naming_the_choices(name):
    with pytest.raises(UserError, match="choose auto, cpu, cuda or cuda:N"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_a_gpu_says_to_use_the_cpu(name):
    with pytest.raises(UserError, match="sees no CUDA device; use --device cpu"):
        resolve_device(name)
