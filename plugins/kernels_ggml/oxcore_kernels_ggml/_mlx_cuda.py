"""CUDA GEMV kernels (``mx.fast.cuda_kernel``) that read ggml blocks directly: MLX's CUDA build only.

One warp computes one output column ``n`` for all M (<= 8) rows of x; the 8 warps of a block
share a tile of x (32 groups of 32 values per row) staged in shared memory. Each lane takes one
group of 32 weights at a time: a whole block for Q4_0..Q8_0, one 32-value sub-block of a 256-value
super-block for the K types, so the 32 lanes of a warp read 32 consecutive groups (a contiguous
run of the row's bytes) per step. A group decodes to 32 small integers and one or two scales plus
a bias (``w = s * q + bias``; Q6_K has two scales per group); the lane accumulates
``s * sum(q x) + bias * sum(x)`` in float32 (q becomes a float by a bit trick, not a conversion
instruction), and the warp sums its lanes with shuffles. Loads are 16- or 32-bit, as the block's alignment
allows (Q4_0 blocks are 18 bytes, so only 2-byte aligned).

Block layouts follow ggml (``ggml-common.h``) and gguf-py's ``quants.py``.
"""

from __future__ import annotations

import functools
from typing import Any

import mlx.core as mx

from oxcore_io_gguf import _types as T

#: the types these kernels read, with their id in the kernel source
TYPES = {"Q4_0": 0, "Q4_1": 1, "Q5_0": 2, "Q5_1": 3, "Q8_0": 4, "Q4_K": 5, "Q5_K": 6, "Q6_K": 7}
#: x rows one launch takes (accumulators in registers; the x tile in shared memory is sized by
#: M rounded up to a power of two, so a decode step's M=1 keeps occupancy high)
MAX_ROWS = 8
WARPS_PER_BLOCK = 8  # NOTE: measured on an H200 (2, 4, 8, 16 tried): 8 reads fastest

HEADER = r"""
#include <cuda_fp16.h>
#include <cuda_bf16.h>

__device__ __forceinline__ float f16_at(const uint8_t* p) {
  return __half2float(*reinterpret_cast<const __half*>(p));
}
__device__ __forceinline__ uint32_t u16_at(const uint8_t* p) {
  return *reinterpret_cast<const uint16_t*>(p);
}
__device__ __forceinline__ uint32_t u32_at(const uint8_t* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}
// n bytes from p into b (n even); 32-bit loads when the address is 4-byte aligned by layout
template <int N, bool A4>
__device__ __forceinline__ void load_bytes(const uint8_t* p, uint8_t* b) {
  if constexpr (A4) {
#pragma unroll
    for (int i = 0; i < N / 4; ++i) {
      uint32_t v = u32_at(p + 4 * i);
      b[4 * i] = v & 0xFF; b[4 * i + 1] = (v >> 8) & 0xFF; b[4 * i + 2] = (v >> 16) & 0xFF; b[4 * i + 3] = v >> 24;
    }
  } else {
#pragma unroll
    for (int i = 0; i < N / 2; ++i) {
      uint32_t v = u16_at(p + 2 * i);
      b[2 * i] = v & 0xFF; b[2 * i + 1] = v >> 8;
    }
  }
}
__device__ __forceinline__ void scale_min_k4(int j, const uint8_t* s, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63; m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// exact float of 0 <= q < 2^23 without an int->float conversion (1 logic op + 1 add)
__device__ __forceinline__ float qf(int q) { return __int_as_float(0x4B000000 | q) - 8388608.f; }

// Group g (32 values) of one row: q[32] unsigned integers, w = s * q + b with (s0, b0) for values
// 0..15 and (s1, b1) for 16..31 (they differ only in Q6_K, whose scales change every 16 values).
template <int TYPE>
__device__ __forceinline__ void load_group(const uint8_t* row, int g, int* q, float& s0, float& s1, float& b0,
                                           float& b1) {
  float bias;
  if constexpr (TYPE == 0) {  // Q4_0: d, qs[16]
    const uint8_t* b = row + g * 18;
    uint8_t qs[16]; load_bytes<16, false>(b + 2, qs);
    float d = f16_at(b);
#pragma unroll
    for (int j = 0; j < 16; ++j) { q[j] = qs[j] & 0xF; q[j + 16] = qs[j] >> 4; }
    s0 = s1 = d; bias = -8.f * d;
  } else if constexpr (TYPE == 1) {  // Q4_1: d, m, qs[16]
    const uint8_t* b = row + g * 20;
    uint8_t qs[16]; load_bytes<16, true>(b + 4, qs);
#pragma unroll
    for (int j = 0; j < 16; ++j) { q[j] = qs[j] & 0xF; q[j + 16] = qs[j] >> 4; }
    s0 = s1 = f16_at(b); bias = f16_at(b + 2);
  } else if constexpr (TYPE == 2) {  // Q5_0: d, qh[4], qs[16]
    const uint8_t* b = row + g * 22;
    uint8_t qs[16]; load_bytes<16, false>(b + 6, qs);
    uint32_t qh = u16_at(b + 2) | (u16_at(b + 4) << 16);
    float d = f16_at(b);
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      q[j] = (qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      q[j + 16] = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    }
    s0 = s1 = d; bias = -16.f * d;
  } else if constexpr (TYPE == 3) {  // Q5_1: d, m, qh[4], qs[16]
    const uint8_t* b = row + g * 24;
    uint8_t qs[16]; load_bytes<16, true>(b + 8, qs);
    uint32_t qh = u32_at(b + 4);
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      q[j] = (qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      q[j + 16] = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    }
    s0 = s1 = f16_at(b); bias = f16_at(b + 2);
  } else if constexpr (TYPE == 4) {  // Q8_0: d, qs[32] int8
    const uint8_t* b = row + g * 34;
    uint8_t qs[32]; load_bytes<32, false>(b + 2, qs);
#pragma unroll
    for (int j = 0; j < 32; ++j) q[j] = qs[j] ^ 0x80;  // int8 + 128
    s0 = s1 = f16_at(b); bias = -128.f * s0;
  } else if constexpr (TYPE == 5 || TYPE == 6) {  // Q4_K / Q5_K: d, dmin, scales[12], (qh[32]), qs[128]
    constexpr int SIZE = TYPE == 5 ? 144 : 176, QS = TYPE == 5 ? 16 : 48;
    const uint8_t* b = row + (g >> 3) * SIZE;
    const int j = g & 7;
    int sc, m; scale_min_k4(j, b + 4, sc, m);
    uint8_t qs[32]; load_bytes<32, true>(b + QS + 32 * (j >> 1), qs);
    const int shift = 4 * (j & 1);
#pragma unroll
    for (int l = 0; l < 32; ++l) q[l] = (qs[l] >> shift) & 0xF;
    if constexpr (TYPE == 6) {
      uint8_t qh[32]; load_bytes<32, true>(b + 16, qh);
#pragma unroll
      for (int l = 0; l < 32; ++l) q[l] |= ((qh[l] >> j) & 1) << 4;
    }
    s0 = s1 = f16_at(b) * (float)sc; bias = -(f16_at(b + 2) * (float)m);
  } else {  // Q6_K: ql[128], qh[64], scales[16] int8, d
    const uint8_t* b = row + (g >> 3) * 210;
    const int j = g & 7, h = j >> 2, r = j & 3;
    uint8_t ql[32]; load_bytes<32, false>(b + 64 * h + 32 * (r & 1), ql);
    uint8_t qh[32]; load_bytes<32, false>(b + 128 + 32 * h, qh);
    const int lshift = 4 * (r >> 1), hshift = 2 * r;
#pragma unroll
    for (int l = 0; l < 32; ++l) q[l] = ((ql[l] >> lshift) & 0xF) | (((qh[l] >> hshift) & 3) << 4);
    float d = f16_at(b + 208);
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192 + 8 * h + 2 * r);
    s0 = d * (float)sc[0]; s1 = d * (float)sc[1]; b0 = -32.f * s0; b1 = -32.f * s1;
    return;
  }
  b0 = b1 = bias;
}
"""

SOURCE = r"""
  // NOTE: sizes come from the shapes (x: (M, K), w: (N, row bytes)) so one compiled kernel per
  // (T, TYPE) serves every matrix; M <= MAXM rows accumulate in registers (uniform branches)
  const int M = x_shape[0], K = x_shape[1], N = w_shape[0];
  const size_t ROW_BYTES = w_shape[1];
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  const bool live = n < N;  // NOTE: no early return: every thread takes part in staging x
  const uint8_t* row = w + (size_t)(live ? n : 0) * ROW_BYTES;
  // x tile of 32 groups (1024 values) per row, stride 36 per group: lane g reads group g as
  // float4s without bank conflicts, and the block stores it with consecutive (coalesced) loads
  __shared__ __align__(16) float xs[MAXM][32 * 36];
  float acc[MAXM];
#pragma unroll
  for (int m = 0; m < MAXM; ++m) acc[m] = 0.f;
  const int G = K / 32;
  for (int g0 = 0; g0 < G; g0 += 32) {
    const int span = min(32, G - g0) * 32;
    __syncthreads();
    for (int m = 0; m < M; ++m)
      for (int e = threadIdx.x; e < span; e += blockDim.x)
        xs[m][(e >> 5) * 36 + (e & 31)] = static_cast<float>(x[(size_t)m * K + (size_t)g0 * 32 + e]);
    __syncthreads();
    const int g = g0 + lane;
    if (live && g < G) {
      int q[32]; float s0, s1, b0, b1;
      load_group<TYPE>(row, g, q, s0, s1, b0, b1);
      float qv[32];
#pragma unroll
      for (int l = 0; l < 32; ++l) qv[l] = qf(q[l]);
#pragma unroll
      for (int m = 0; m < MAXM; ++m) {
        if (m < M) {
          const float4* xg = reinterpret_cast<const float4*>(&xs[m][lane * 36]);
          float a = 0.f, c = 0.f, sa = 0.f, sc = 0.f;
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            float4 v = xg[i];
            a += qv[4 * i] * v.x + qv[4 * i + 1] * v.y + qv[4 * i + 2] * v.z + qv[4 * i + 3] * v.w;
            sa += (v.x + v.y) + (v.z + v.w);
          }
#pragma unroll
          for (int i = 4; i < 8; ++i) {
            float4 v = xg[i];
            c += qv[4 * i] * v.x + qv[4 * i + 1] * v.y + qv[4 * i + 2] * v.z + qv[4 * i + 3] * v.w;
            sc += (v.x + v.y) + (v.z + v.w);
          }
          acc[m] += s0 * a + s1 * c + b0 * sa + b1 * sc;
        }
      }
    }
  }
  if (!live) return;
#pragma unroll
  for (int m = 0; m < MAXM; ++m) {
    if (m < M) {
      float v = acc[m];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
      if (lane == 0) y[(size_t)m * N + n] = static_cast<T>(v);
    }
  }
"""


@functools.lru_cache(maxsize=None)
def _kernel() -> Any:
    return mx.fast.cuda_kernel(name="oxcore_ggml_gemv", input_names=["x", "w"], output_names=["y"],
                               source=SOURCE, header=HEADER)


def available() -> str:
    """"" when oxcore's MLX device is a CUDA GPU here, else why these kernels cannot run."""
    from oxcore_metal_basic import mlx_device

    dev = mlx_device()
    if dev.platform == "cuda":
        return ""
    return (f"needs MLX's CUDA backend (mlx[cuda13] on Linux with an NVIDIA GPU); oxcore's MLX device here is "
            f"{dev.name} on {dev.platform} (mx.cuda.is_available() is {mx.cuda.is_available()})")


def gemv(x: mx.array, raw: mx.array, *, ggml_type: str, shape: tuple[int, int]) -> mx.array:
    """``x @ W.T`` for x (..., K) with at most ``MAX_ROWS`` rows, W's blocks read in place."""
    n, k = (int(s) for s in shape)
    lead = x.shape[:-1]
    m = 1
    for s in lead:
        m *= s
    t = T.BY_NAME[ggml_type]
    threads = 32 * WARPS_PER_BLOCK
    (y,) = _kernel()(
        inputs=[x.reshape(m, k), raw.reshape(n, k // t.block_size * t.type_size)],
        template=[("T", x.dtype), ("TYPE", TYPES[ggml_type]), ("MAXM", 1 << (m - 1).bit_length())],
        grid=(-(-n // WARPS_PER_BLOCK) * threads, 1, 1), threadgroup=(threads, 1, 1),
        output_shapes=[(m, n)], output_dtypes=[x.dtype])
    return y.reshape(*lead, n)
