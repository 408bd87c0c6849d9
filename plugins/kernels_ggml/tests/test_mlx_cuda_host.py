"""The CUDA GEMV's block decoders on the CPU: ``_mlx_cuda.HEADER`` compiled as host C++ (g++ with
CUDA's half-precision headers and stand-ins for the few device intrinsics it uses), one row at a
time, against gguf-py's float64 product. Runs wherever g++ and a CUDA toolkit's headers are; the
kernel itself runs only on MLX's CUDA build (``scripts/gpu-check``'s qmatmul step)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from oxcore_kernels_ggml.testing import random_blocks, reference_matmul, nmse

CUDA_INCLUDE = next((p for p in (os.environ.get("CUDA_HOME", ""), "/usr/local/cuda")
                     if p and (Path(p) / "include" / "cuda_fp16.h").exists()), None)
pytestmark = pytest.mark.skipif(shutil.which("g++") is None or CUDA_INCLUDE is None,
                                reason="needs g++ and a CUDA toolkit's headers (cuda_fp16.h)")

# NOTE: host stand-ins for the device intrinsics the decoders use (bit-exact definitions)
PRELUDE = r"""#include <cstdint>
#include <cstddef>
#include <cstring>
#include <cmath>
#include <algorithm>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#undef __device__
#undef __forceinline__
#undef __shared__
#define __device__
#define __forceinline__ inline
#define __shared__
using std::min;
static inline uint32_t __byte_perm(uint32_t x, uint32_t y, uint32_t s) {
  uint64_t v = ((uint64_t)y << 32) | x; uint32_t r = 0;
  for (int i = 0; i < 4; ++i) { uint32_t sel = (s >> (4 * i)) & 7; r |= (uint32_t)((v >> (8 * sel)) & 0xFF) << (8 * i); }
  return r;
}
static inline uint32_t __funnelshift_r(uint32_t lo, uint32_t hi, uint32_t sh) { uint64_t v = ((uint64_t)hi << 32) | lo; return (uint32_t)(v >> (sh & 31)); }
static inline float __int_as_float(int v) { float f; memcpy(&f, &v, 4); return f; }
static inline float __int_as_float(uint32_t v) { float f; memcpy(&f, &v, 4); return f; }
static inline float __uint_as_float(uint32_t v) { float f; memcpy(&f, &v, 4); return f; }
static inline uint32_t __float_as_uint(float v) { uint32_t u; memcpy(&u, &v, 4); return u; }
// NOTE: float2bfloat16_rn and ushort_as_bfloat16 are host-callable in cuda_bf16.h
template <typename T> static inline T __ldg(const T* p) { return *p; }
struct Dim { int x = 0; };
static Dim threadIdx, blockIdx, blockDim;
static inline void __syncthreads() {}
static inline float __shfl_xor_sync(unsigned, float v, int) { return v; }
"""

MAIN = r"""#include <cstdio>
#include <vector>
template <int TYPE>
void run(const uint8_t* w, const float* x, double* y, int N, int K, size_t RB) {
  using S = oxg::Spec<TYPE>;
  for (int n = 0; n < N; ++n) {
    double acc = 0;
    for (int u = 0; u < K / 32; ++u) {
      oxg::Unit q; oxg::load_unit<TYPE>(w + n * RB, u, q);
      int xa, xb; oxg::unit_x<TYPE>(u, xa, xb);
      float sxa = 0, sxb = 0; for (int i = 0; i < 16; ++i) { sxa += x[xa + i]; sxb += x[xb + i]; }
      float v = q.sa * oxg::dot16<S::OFF>(q.a, x + xa) + q.sb * oxg::dot16<S::OFF>(q.b, x + xb);
      if (S::BIAS) v += q.ba * sxa + q.bb * sxb;
      acc += v;
    }
    y[n] = acc;
  }
}
int main(int argc, char** argv) {
  int type = atoi(argv[1]), N = atoi(argv[2]), K = atoi(argv[3]); size_t RB = atol(argv[4]);
  std::vector<uint8_t> w(N * RB + 64); std::vector<float> x(K); std::vector<double> y(N);
  FILE* f = fopen(argv[5], "rb"); fread(w.data(), 1, N * RB, f); fclose(f);
  f = fopen(argv[6], "rb"); fread(x.data(), 4, K, f); fclose(f);
  switch (type) { case 0: run<0>(w.data(), x.data(), y.data(), N, K, RB); break; case 1: run<1>(w.data(), x.data(), y.data(), N, K, RB); break;
    case 2: run<2>(w.data(), x.data(), y.data(), N, K, RB); break; case 3: run<3>(w.data(), x.data(), y.data(), N, K, RB); break;
    case 4: run<4>(w.data(), x.data(), y.data(), N, K, RB); break; case 5: run<5>(w.data(), x.data(), y.data(), N, K, RB); break;
    case 6: run<6>(w.data(), x.data(), y.data(), N, K, RB); break; case 7: run<7>(w.data(), x.data(), y.data(), N, K, RB); break; }
  f = fopen(argv[7], "wb"); fwrite(y.data(), 8, N, f); fclose(f);
}
"""


@pytest.fixture(scope="module")
def host_decoder(tmp_path_factory) -> Path:
    from oxcore_kernels_ggml import _mlx_cuda

    d = tmp_path_factory.mktemp("cuda_host")
    body = _mlx_cuda.HEADER.replace("#include <cuda_fp16.h>", "").replace("#include <cuda_bf16.h>", "")
    (d / "t.cpp").write_text(PRELUDE + body + MAIN)
    exe = d / "t"
    subprocess.run(["g++", "-std=c++17", "-O1", f"-I{CUDA_INCLUDE}/include", str(d / "t.cpp"), "-o", str(exe)],
                   check=True, capture_output=True)
    return exe


@pytest.mark.parametrize("ggml_type", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"])
def test_decoders_match_gguf_py(host_decoder, tmp_path, ggml_type):
    from oxcore_kernels_ggml import _mlx_cuda

    seed = int.from_bytes(os.urandom(4), "little")  # NOTE: fresh inputs each run; the seed is in the message
    rng = np.random.default_rng(seed)
    # NOTE: odd row counts and row sizes of both parities: 2-byte aligned blocks at both offsets mod 4
    for n, k in ((7, 256), (5, 1024), (3, 2816), (4, 512)):
        raw = random_blocks(ggml_type, (n, k), rng)
        x = rng.standard_normal(k).astype(np.float32)
        raw.tofile(tmp_path / "w.bin")
        x.tofile(tmp_path / "x.bin")
        subprocess.run([str(host_decoder), str(_mlx_cuda.TYPES[ggml_type]), str(n), str(k), str(raw.shape[1]),
                        str(tmp_path / "w.bin"), str(tmp_path / "x.bin"), str(tmp_path / "y.bin")], check=True)
        got = np.fromfile(tmp_path / "y.bin", np.float64)
        assert nmse(reference_matmul(x[None], raw, ggml_type, (n, k))[0], got) < 1e-12, (n, k, seed)


# NOTE: the tensor-core kernel (v4) on the CPU: each lane's A and B fragments built by the header's
# own functions, placed in the 16x16 and 16x8 matrices by the PTX layout of mma.m16n8k16, the
# product in float64, and the kernel's per-half sum s * (C - (MAG + OFF) * sum(x)) + b * sum(x)
MAIN_V4 = r"""#include <cstdio>
#include <vector>
#include <type_traits>
static float h2f(uint32_t bits, int at) {
  if (at == 0) { __half_raw r; r.x = (unsigned short)bits; return __half2float(__half(r)); }
  uint32_t v = bits << 16; float f; memcpy(&f, &v, 4); return f;
}
template <int TYPE, typename T>
void run(const uint8_t* w, const T* x, double* y, int N, int K, int M, size_t RB) {
  constexpr int AT = oxg::IsHalf<T>::value ? 0 : 1;
  // NOTE: float32 x (T float) goes through split_bf16 into bfloat16 rows 2m, 2m + 1 as split_x does
  constexpr bool SPLIT = sizeof(T) == 4, KQ = TYPE == 5 || TYPE == 6, WIDE = AT == 1 && TYPE == 4;
  using XT = typename std::conditional<SPLIT, __nv_bfloat16, T>::type;
  std::vector<XT> xv((size_t)(SPLIT ? 2 : 1) * M * K);
  for (int m = 0; m < M; ++m)
    for (int k = 0; k < K; ++k) {
      if constexpr (SPLIT) oxg::split_bf16(x[(size_t)m * K + k], xv[(size_t)2 * m * K + k], xv[(size_t)(2 * m + 1) * K + k]);
      else xv[(size_t)m * K + k] = x[(size_t)m * K + k];
    }
  const double K0 = WIDE ? 2304.0 : oxg::Op<AT>::MAG + oxg::Spec<TYPE>::OFF;
  const int ncol = SPLIT ? 2 * M : M;
  std::vector<double> acc((size_t)N * 8, 0.0);
  for (int n0 = 0; n0 < N; n0 += 16)
    for (int u = 0; u < K / 32; ++u) {
      double A[2][2][16][16] = {}, B[2][16][8] = {};  // [half][hi/lo nibble (WIDE)][row][k], [half][k][col]
      double sa[16], sb[16], ba[16], bb[16];
      for (int lane = 0; lane < 32; ++lane) {
        const int g = lane >> 2, t = lane & 3;
        for (int h = 0; h < 2; ++h) {
          const int r = std::min(n0 + g + 8 * h, N - 1);
          // NOTE: groups as the kernel steps them: a super-block (K types), else 2 blocks when
          // that keeps the group 4-byte aligned (the A4 loads), else 1
          const int G = TYPE >= 5 ? 8 : ((K / 32) % 2 == 0 && RB % 4 == 0 ? 2 : 1);
          const uint8_t* pg = oxg::group_ptr<TYPE>(w + r * RB, u - u % G);
          oxg::Quarter q;
          if (G == 2) oxg::load_quarter<TYPE, true>(pg, u % G, t, q);
          else oxg::load_quarter<TYPE, false>(pg, u % G, t, q);
          if (KQ) {
            float ks[8], km[8];
            oxg::k4_scales(oxg::ld128(w + r * RB + (TYPE == 5 ? 144 : 176) * (u >> 3)), ks, km);
            const int c = (u & 7) >> 1;
            q.sa = ks[2 * c]; q.sb = ks[2 * c + 1]; q.ba = km[2 * c]; q.bb = km[2 * c + 1];
          }
          sa[g + 8 * h] = q.sa; sb[g + 8 * h] = q.sb; ba[g + 8 * h] = q.ba; bb[g + 8 * h] = q.bb;
          for (int half = 0; half < 2; ++half) {
            const uint32_t qw = half ? q.qb : q.qa;
            for (int nib = 0; nib < (WIDE ? 2 : 1); ++nib) {
              const uint32_t v = WIDE ? (nib ? (qw >> 4) & 0x0F0F0F0Fu : qw & 0x0F0F0F0Fu) : qw;
              uint32_t a[4]; oxg::afrag<AT>(v, v, a);  // rows g and g + 8 come from separate calls here
              // a[0]: k 2t, 2t+1; a[2]: k 2t+8, 2t+9 (row g + 8 h: this lane's row of the pair)
              A[half][nib][g + 8 * h][2 * t] = h2f(a[0] & 0xFFFF, AT); A[half][nib][g + 8 * h][2 * t + 1] = h2f(a[0] >> 16, AT);
              A[half][nib][g + 8 * h][2 * t + 8] = h2f(a[2] & 0xFFFF, AT); A[half][nib][g + 8 * h][2 * t + 9] = h2f(a[2] >> 16, AT);
            }
          }
        }
        if (g < ncol) {
          int xa, xb; oxg::unit_x<TYPE>(u, xa, xb);
          const XT* xr = xv.data() + (size_t)g * K + 4 * t;
          for (int half = 0; half < 2; ++half) {
            uint32_t b[2]; oxg::bfrag<XT>(xr + (half ? xb : xa), true, b);
            B[half][2 * t][g] = h2f(b[0] & 0xFFFF, AT); B[half][2 * t + 1][g] = h2f(b[0] >> 16, AT);
            B[half][2 * t + 8][g] = h2f(b[1] & 0xFFFF, AT); B[half][2 * t + 9][g] = h2f(b[1] >> 16, AT);
          }
        }
      }
      for (int r = 0; r < 16 && n0 + r < N; ++r)
        for (int n = 0; n < 8; ++n)
          for (int half = 0; half < 2; ++half) {
            double c = 0, ch = 0, s = 0;
            for (int k = 0; k < 16; ++k) { c += A[half][0][r][k] * B[half][k][n]; ch += A[half][1][r][k] * B[half][k][n]; s += B[half][k][n]; }
            if (WIDE) c += 16 * ch;
            const double sc = half ? sb[r] : sa[r], bi = half ? bb[r] : ba[r];
            acc[(size_t)(n0 + r) * 8 + n] += sc * (c - K0 * s) + bi * s;
          }
    }
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < N; ++r)
      y[(size_t)m * N + r] = SPLIT ? acc[(size_t)r * 8 + 2 * m] + acc[(size_t)r * 8 + 2 * m + 1] : acc[(size_t)r * 8 + m];
}
template <typename T>
void run_t(int type, const uint8_t* w, const T* x, double* y, int N, int K, int M, size_t RB) {
  switch (type) { case 0: run<0, T>(w, x, y, N, K, M, RB); break; case 1: run<1, T>(w, x, y, N, K, M, RB); break;
    case 2: run<2, T>(w, x, y, N, K, M, RB); break; case 3: run<3, T>(w, x, y, N, K, M, RB); break;
    case 4: run<4, T>(w, x, y, N, K, M, RB); break; case 5: run<5, T>(w, x, y, N, K, M, RB); break;
    case 6: run<6, T>(w, x, y, N, K, M, RB); break; case 7: run<7, T>(w, x, y, N, K, M, RB); break; }
}
int main(int argc, char** argv) {
  int type = atoi(argv[1]), N = atoi(argv[2]), K = atoi(argv[3]); size_t RB = atol(argv[4]);
  int dt = atoi(argv[5]), M = atoi(argv[6]);
  std::vector<uint8_t> w(N * RB + 64); std::vector<uint8_t> x((size_t)M * K * 4 + 64); std::vector<double> y((size_t)M * N);
  FILE* f = fopen(argv[7], "rb"); fread(w.data(), 1, N * RB, f); fclose(f);
  f = fopen(argv[8], "rb"); fread(x.data(), dt == 2 ? 4 : 2, (size_t)M * K, f); fclose(f);
  if (dt == 0) run_t<__half>(type, w.data(), (const __half*)x.data(), y.data(), N, K, M, RB);
  else if (dt == 1) run_t<__nv_bfloat16>(type, w.data(), (const __nv_bfloat16*)x.data(), y.data(), N, K, M, RB);
  else run_t<float>(type, w.data(), (const float*)x.data(), y.data(), N, K, M, RB);
  f = fopen(argv[9], "wb"); fwrite(y.data(), 8, (size_t)M * N, f); fclose(f);
}
"""


@pytest.fixture(scope="module")
def host_v4(tmp_path_factory) -> Path:
    from oxcore_kernels_ggml import _mlx_cuda

    d = tmp_path_factory.mktemp("cuda_host_v4")
    body = _mlx_cuda.HEADER.replace("#include <cuda_fp16.h>", "").replace("#include <cuda_bf16.h>", "")
    (d / "t.cpp").write_text(PRELUDE + body + MAIN_V4)
    exe = d / "t"
    r = subprocess.run(["g++", "-std=c++17", "-O1", f"-I{CUDA_INCLUDE}/include", str(d / "t.cpp"), "-o", str(exe)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    return exe


@pytest.mark.parametrize("ggml_type", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_v4_fragments_match_gguf_py(host_v4, tmp_path, ggml_type, dtype):
    import ml_dtypes  # noqa: F401  (bfloat16 for NumPy)
    from oxcore_kernels_ggml import _mlx_cuda

    seed = int.from_bytes(os.urandom(4), "little")  # NOTE: fresh inputs each run; the seed is in the message
    rng = np.random.default_rng(seed)
    code = {"float16": 0, "bfloat16": 1, "float32": 2}[dtype]
    shapes = [(7, 256, 1), (21, 1024, 3), (16, 512, 4 if dtype == "float32" else 8)]
    if _mlx_cuda.TYPES[ggml_type] < 5:
        shapes.append((5, 288, 2))  # NOTE: an odd number of blocks a row: unaligned rows, 1-block groups
    for n, k, m in shapes:
        raw = random_blocks(ggml_type, (n, k), rng)
        x = rng.standard_normal((m, k)).astype(np.float32) * rng.uniform(0.01, 100, (m, 1)).astype(np.float32)
        xd = x.astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
        raw.tofile(tmp_path / "w.bin")
        xd.tofile(tmp_path / "x.bin")
        subprocess.run([str(host_v4), str(_mlx_cuda.TYPES[ggml_type]), str(n), str(k), str(raw.shape[1]), str(code),
                        str(m), str(tmp_path / "w.bin"), str(tmp_path / "x.bin"), str(tmp_path / "y.bin")], check=True)
        got = np.fromfile(tmp_path / "y.bin", np.float64).reshape(m, n)
        ref = reference_matmul(xd.astype(np.float64), raw, ggml_type, (n, k))
        # NOTE: float32 x is split into bfloat16 hi + lo parts (16 bits of mantissa): NMSE ~1e-10
        assert nmse(ref, got) < (1e-9 if dtype == "float32" else 1e-12), (n, k, m, seed)
