"""The op's own sample (used by `oxcore ops list`) computes the right values on every backend."""

import numpy as np
import pytest

import oxcore as ox
from oxcore.coverage import coverage
from oxcore_io_gguf._op import sample


@pytest.mark.parametrize("backend", ox.backends())
def test_sample_dequantizes_on_every_backend(backend):
    with ox.use(backend):
        got = sample(ox).numpy()
    np.testing.assert_array_equal(got, 0.5 * np.arange(-16, 16, dtype=np.float32))


@pytest.mark.parametrize("backend", ox.backends())
def test_coverage_sees_ggml_dequantize_everywhere(backend):
    c = coverage(backend)
    assert "ggml_dequantize" in c["native"] + c["decomposed"]
