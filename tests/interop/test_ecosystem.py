"""Libraries that dispatch on the Array API run on oxcore arrays and match their NumPy results:
array-api-compat finds oxcore itself, scikit-learn (array_api_dispatch) fits PCA (full solver),
LinearDiscriminantAnalysis and Ridge (svd solver), SciPy (SCIPY_ARRAY_API=1) runs special
functions, statistics, convolution (direct and FFT-based) and scipy.fft. Fresh random data, several shapes."""

from __future__ import annotations

import numpy as np
import pytest

import oxcore as ox

array_api_compat = pytest.importorskip("array_api_compat")
sklearn = pytest.importorskip("sklearn")
scipy = pytest.importorskip("scipy")


@pytest.fixture
def dispatch():
    with sklearn.config_context(array_api_dispatch=True):
        yield


def _is_ox(a) -> bool:
    return isinstance(a, ox.Array)


def test_array_api_compat_returns_oxcore_itself():
    x = ox.asarray([1.0, 2.0])
    assert array_api_compat.array_namespace(x) is ox
    assert array_api_compat.array_namespace(x, ox.asarray([3])) is ox
    assert array_api_compat.device(x) == ox.__array_namespace_info__().default_device()
    assert array_api_compat.is_array_api_obj(x)


@pytest.mark.parametrize("shape, k", [((60, 6), 3), ((25, 9), 5)])
def test_sklearn_pca_full_solver(dispatch, shape, k):
    from sklearn.decomposition import PCA

    rng = np.random.default_rng()
    X = (rng.normal(size=shape) @ rng.normal(size=(shape[1], shape[1]))).astype(np.float32)
    ref = PCA(n_components=k, svd_solver="full").fit(X)
    got = PCA(n_components=k, svd_solver="full").fit(ox.asarray(X))
    assert _is_ox(got.components_)
    np.testing.assert_allclose(np.asarray(got.explained_variance_), ref.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(got.components_), ref.components_, rtol=1e-3, atol=1e-4)
    t = got.transform(ox.asarray(X))
    assert _is_ox(t)
    np.testing.assert_allclose(np.asarray(t), ref.transform(X), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_sklearn_lda(dispatch, n_classes):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis as LDA

    rng = np.random.default_rng()
    y = rng.integers(0, n_classes, 90)
    X = (rng.normal(size=(90, 4)) + y[:, None] * 1.5).astype(np.float64)
    ref = LDA().fit(X, y)
    got = LDA().fit(ox.asarray(X), ox.asarray(y))
    np.testing.assert_allclose(np.asarray(got.coef_), ref.coef_, rtol=1e-6, atol=1e-8)
    proba = got.predict_proba(ox.asarray(X))
    assert _is_ox(proba)
    np.testing.assert_allclose(np.asarray(proba), ref.predict_proba(X), rtol=1e-6, atol=1e-8)
    assert (np.asarray(got.predict(ox.asarray(X))) == ref.predict(X)).all()


@pytest.mark.parametrize("shape", [(50, 5), (12, 20)])
def test_sklearn_ridge_svd_solver(dispatch, shape):
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng()
    X = rng.normal(size=shape).astype(np.float32)
    y = (X @ rng.normal(size=shape[1]) + 0.1 * rng.normal(size=shape[0])).astype(np.float32)
    ref = Ridge(alpha=0.5, solver="svd").fit(X, y)
    got = Ridge(alpha=0.5, solver="svd").fit(ox.asarray(X), ox.asarray(y))
    np.testing.assert_allclose(np.asarray(got.coef_), ref.coef_, rtol=1e-4, atol=1e-5)
    pred = got.predict(ox.asarray(X))
    assert _is_ox(pred)
    np.testing.assert_allclose(np.asarray(pred), ref.predict(X), rtol=1e-4, atol=1e-4)


def _scipy_funcs():
    import scipy.fft
    import scipy.signal as sig
    import scipy.special as sp
    import scipy.stats as ss

    return {
        "logsumexp": lambda a: sp.logsumexp(a, axis=-1),
        "softmax": lambda a: sp.softmax(a, axis=0),
        "log_softmax": lambda a: sp.log_softmax(a, axis=-1),
        "zscore": lambda a: ss.zscore(a, axis=-1),
        "skew": lambda a: ss.skew(a, axis=0),
        "moment": lambda a: ss.moment(a, order=3, axis=-1),
        "convolve": lambda a: sig.convolve(a, a[:2, :3], method="direct"),
        "fftconvolve": lambda a: sig.fftconvolve(a, a[:2, :3]),
        "fftconvolve_same": lambda a: sig.fftconvolve(a, a[:1, :4], mode="same", axes=1),
        "scipy.fft.rfft": lambda a: scipy.fft.rfft(a, axis=0),
    }


@pytest.mark.parametrize("name", sorted(_scipy_funcs()))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scipy_on_oxcore_arrays(name, dtype):
    f = _scipy_funcs()[name]
    x = np.random.default_rng().normal(size=(5, 7)).astype(dtype)
    got = f(ox.asarray(x))
    assert _is_ox(got), f"scipy's {name} returned {type(got).__name__}, not an oxcore array"
    # NOTE: FFT-based results differ by the FFT's rounding (about n eps of the largest value)
    rtol = (1e-5 if dtype == np.float32 else 1e-12) * (20 if "fft" in name else 1)
    want = f(x)
    got = np.asarray(got)
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype}, NumPy gives {want.dtype}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())
