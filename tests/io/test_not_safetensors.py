"""A file that only has the ``.safetensors`` name: said plainly, not as a header-length limit."""

from __future__ import annotations

import numpy as np
import pytest

import oxcore as ox


@pytest.mark.parametrize("content", [b"hello, this is a text file\n" * 3, b'{"a": 1}' + b" " * 40,
                                     np.random.default_rng(0).bytes(64)])
def test_non_safetensors_file_is_called_that(tmp_path, content):
    p = tmp_path / "notes.safetensors"
    p.write_bytes(content)
    with pytest.raises(ox.FormatError) as info:
        ox.load(p)
    msg = str(info.value)
    assert "not a safetensors file (header length" in msg and "is not plausible" in msg, msg
    assert info.value.offset == 0 and str(p) in msg


def test_real_safetensors_file_still_opens(tmp_path):
    ref = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    ox.save(tmp_path / "w.safetensors", {"w": ox.asarray(ref)})
    np.testing.assert_array_equal(ox.load(tmp_path / "w.safetensors")["w"].numpy(), ref)
