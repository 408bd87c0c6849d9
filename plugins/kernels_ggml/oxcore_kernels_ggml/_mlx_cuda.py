"""CUDA GEMV kernels (``mx.fast.cuda_kernel``) that read ggml blocks directly: MLX's CUDA build only.

A thread block computes ``R`` consecutive output columns (rows of W) for all M (<= 8) rows of x;
its threads stride together along K over *units* of 32 weights, so every warp streams a contiguous
run of each of the R rows' bytes and the R rows share each x load. A unit is one block of
Q4_0..Q8_0, or one eighth of a 256-value super-block of the K types, chosen so that a thread's
bytes are contiguous (16-byte loads for Q4_K/Q5_K, 32-bit loads funnel-shifted for the 2-byte
aligned Q4_0/Q5_0/Q8_0/Q6_K). A unit decodes to two halves of 16 small unsigned integers ``q``
(one byte each, packed four to a word) with a scale and a bias each, ``w = s * (q - OFF) + b``;
``q - OFF`` becomes an exact float by a byte permute and one add (``2^23 + q`` built as bits),
the dot product with x runs in float32 FMAs, and ``b * sum(x)`` is added only for the types with a
bias (Q4_1, Q5_1, Q4_K, Q5_K; the sum is shared by the R rows). Partial sums are reduced with warp
shuffles, then across the block's warps in shared memory. No barrier inside the K loop, and all
R rows' loads of a unit are in flight together: the kernel streams the weights near the copy
bandwidth instead of waiting on one load at a time (issue 14).

One row of x gets a kernel compiled per type (its registers sized for that type); 2..8 rows share
one kernel that reads the type from the block size. float32 x with the 32-value block types is
staged in shared memory (its L1 loads were the limit there). Tuning numbers and what is still
short of the goal: ``plugins/kernels_ggml/README.md``; the decoders are checked on the CPU by
``tests/test_mlx_cuda_host.py`` (host C++), the kernel by ``scripts/gpu_qmatmul.py`` on a GPU.

Block layouts follow ggml (``ggml-common.h``) and gguf-py's ``quants.py``. The weight buffer must
be aligned like MLX's allocations and GGUF's tensors (16 bytes; a misaligned one gives NaN, never a
misaligned load); x may start anywhere (its loads fall back to scalars).
"""

from __future__ import annotations

import functools
from typing import Any

import mlx.core as mx

from oxcore_io_gguf import _types as T

#: the types these kernels read, with their id in the kernel source
TYPES = {"Q4_0": 0, "Q4_1": 1, "Q5_0": 2, "Q5_1": 3, "Q8_0": 4, "Q4_K": 5, "Q5_K": 6, "Q6_K": 7}
#: the kernel's TYPE that reads the type from the block size (template ints must be >= 0: MLX
#: puts them in the kernel's name)
_ALL_TYPES = 8
#: x rows one launch takes (accumulators in registers; the kernel is compiled for M rounded up to
#: 1, 2, 4 or 8, so a decode step's M=1 keeps its registers and occupancy)
MAX_ROWS = 8
#: threads of a block striding along K together, and output columns (rows of W) per block
WARPS_PER_BLOCK = 4
ROWS_PER_BLOCK = 4
#: x staged in shared memory as float32 (chunks of 8192 / M values) instead of read through L1:
#: None chooses per call (float32 x with the 32-value block types, where it measured faster on an
#: H200: each lane's 128 bytes of float32 x per unit made its L1 loads touch 32 lines each)
STAGE_X: "bool | None" = None
#: x dtypes and types whose x is staged when ``STAGE_X`` is None
_STAGED = ("float32", {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"})

HEADER = r"""
#include <cuda_fp16.h>
#include <cuda_bf16.h>

namespace oxg {

__device__ __forceinline__ uint32_t ld16(const uint8_t* p) { return *reinterpret_cast<const uint16_t*>(p); }
__device__ __forceinline__ uint32_t ld32(const uint8_t* p) { return *reinterpret_cast<const uint32_t*>(p); }
__device__ __forceinline__ uint2 ld64(const uint8_t* p) { return *reinterpret_cast<const uint2*>(p); }
__device__ __forceinline__ uint4 ld128(const uint8_t* p) { return *reinterpret_cast<const uint4*>(p); }
__device__ __forceinline__ float f16lo(uint32_t v) { return __half2float(__ushort_as_half((unsigned short)(v & 0xFFFFu))); }
__device__ __forceinline__ float f16hi(uint32_t v) { return __half2float(__ushort_as_half((unsigned short)(v >> 16))); }

// NB bytes (NB % 4 == 0) at a 2-byte aligned p as NB/4 little-endian words: 32-bit loads from the
// 4-byte boundary at or below p, shifted into place, and the last 2 bytes by a 16-bit load, so no
// byte past p + NB is read (ggml's 18/22/34/210-byte blocks leave every other block 2 mod 4)
template <int NB>
__device__ __forceinline__ void ld_a2(const uint8_t* p, uint32_t* out) {
  constexpr int NW = NB / 4;
  const unsigned long long a = reinterpret_cast<unsigned long long>(p);
  const uint8_t* base = reinterpret_cast<const uint8_t*>(a & ~3ull);
  const uint32_t sh = (uint32_t)(a & 2) * 8;  // 0 or 16
  uint32_t v[NW];
#pragma unroll
  for (int i = 0; i < NW; ++i) v[i] = ld32(base + 4 * i);
  const uint32_t tail = ld16(p + NB - 2);
#pragma unroll
  for (int i = 0; i < NW - 1; ++i) out[i] = __funnelshift_r(v[i], v[i + 1], sh);
  out[NW - 1] = __funnelshift_r(v[NW - 1], tail, sh);
}

// 4 bits of v (bit j) to bit 0 of byte j (4 shifted copies of v never overlap, so no carries)
__device__ __forceinline__ uint32_t spread4(uint32_t v) { return (v * 0x00204081u) & 0x01010101u; }

// One unit: values 0..15 (half A) and 16..31 (half B) as bytes of a[4], b[4] (value 4i+j in
// byte j of word i), w = s * (q - OFF) + bias per half; x positions of the halves: xa, xb
struct Unit { uint32_t a[4], b[4]; float sa, sb, ba, bb; };

template <int TYPE> struct Spec;
template <> struct Spec<0> { static constexpr int OFF = 8, ALIGN = 2; static constexpr bool BIAS = false; };
template <> struct Spec<1> { static constexpr int OFF = 0, ALIGN = 4; static constexpr bool BIAS = true; };
template <> struct Spec<2> { static constexpr int OFF = 16, ALIGN = 2; static constexpr bool BIAS = false; };
template <> struct Spec<3> { static constexpr int OFF = 0, ALIGN = 8; static constexpr bool BIAS = true; };
template <> struct Spec<4> { static constexpr int OFF = 128, ALIGN = 2; static constexpr bool BIAS = false; };
template <> struct Spec<5> { static constexpr int OFF = 0, ALIGN = 16; static constexpr bool BIAS = true; };
template <> struct Spec<6> { static constexpr int OFF = 0, ALIGN = 16; static constexpr bool BIAS = true; };
template <> struct Spec<7> { static constexpr int OFF = 32, ALIGN = 2; static constexpr bool BIAS = false; };

template <int TYPE>
__device__ __forceinline__ void unit_x(int u, int& xa, int& xb) {
  if constexpr (TYPE <= 4) {
    xa = 32 * u; xb = xa + 16;
  } else if constexpr (TYPE <= 6) {  // Q4_K/Q5_K: 16 bytes of chunk c hold sub-blocks 2c, 2c+1
    const int t = u & 7;
    xa = 256 * (u >> 3) + 64 * (t >> 1) + 16 * (t & 1); xb = xa + 32;
  } else {  // Q6_K: half h, ql[l] or ql[l + 32], l in [16 l0, 16 l0 + 16)
    const int t = u & 7;
    xa = 256 * (u >> 3) + 128 * (t >> 2) + 32 * ((t >> 1) & 1) + 16 * (t & 1); xb = xa + 64;
  }
}

// the 6-bit scale (lo) and min (hi) of Q4_K/Q5_K sub-block j from scales[12] in words s0, s1, s2
__device__ __forceinline__ void scale_min_k4(int j, uint32_t s0, uint32_t s1, uint32_t s2, float& sc, float& m) {
  const uint32_t sc_w = j < 4 ? (s0 & 0x3F3F3F3Fu) : ((s2 & 0x0F0F0F0Fu) | ((s0 >> 2) & 0x30303030u));
  const uint32_t m_w = j < 4 ? (s1 & 0x3F3F3F3Fu) : (((s2 >> 4) & 0x0F0F0F0Fu) | ((s1 >> 2) & 0x30303030u));
  const int sh = 8 * (j & 3);
  sc = (float)((sc_w >> sh) & 0xFFu); m = (float)((m_w >> sh) & 0xFFu);
}

template <int TYPE>
__device__ __forceinline__ void load_unit(const uint8_t* row, int u, Unit& q) {
  q.ba = q.bb = 0.f;
  if constexpr (TYPE == 0) {  // Q4_0: d, qs[16]
    const uint8_t* p = row + 18 * u;
    uint32_t qs[4]; ld_a2<16>(p + 2, qs);
    q.sa = q.sb = f16lo(ld16(p));
#pragma unroll
    for (int i = 0; i < 4; ++i) { q.a[i] = qs[i] & 0x0F0F0F0Fu; q.b[i] = (qs[i] >> 4) & 0x0F0F0F0Fu; }
  } else if constexpr (TYPE == 1) {  // Q4_1: d, m, qs[16]
    const uint8_t* p = row + 20 * u;
    const uint32_t dm = ld32(p);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t v = ld32(p + 4 + 4 * i);
      q.a[i] = v & 0x0F0F0F0Fu; q.b[i] = (v >> 4) & 0x0F0F0F0Fu;
    }
    q.sa = q.sb = f16lo(dm); q.ba = q.bb = f16hi(dm);
  } else if constexpr (TYPE == 2) {  // Q5_0: d, qh[4], qs[16]
    const uint8_t* p = row + 22 * u;
    uint32_t qs[4]; ld_a2<16>(p + 6, qs);
    const uint32_t qh = ld16(p + 2) | (ld16(p + 4) << 16);
    q.sa = q.sb = f16lo(ld16(p));
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      q.a[i] = (qs[i] & 0x0F0F0F0Fu) | (spread4((qh >> (4 * i)) & 0xFu) << 4);
      q.b[i] = ((qs[i] >> 4) & 0x0F0F0F0Fu) | (spread4((qh >> (16 + 4 * i)) & 0xFu) << 4);
    }
  } else if constexpr (TYPE == 3) {  // Q5_1: d, m, qh[4], qs[16]
    const uint8_t* p = row + 24 * u;
    const uint2 h = ld64(p), q0 = ld64(p + 8), q1 = ld64(p + 16);
    const uint32_t qs[4] = {q0.x, q0.y, q1.x, q1.y};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      q.a[i] = (qs[i] & 0x0F0F0F0Fu) | (spread4((h.y >> (4 * i)) & 0xFu) << 4);
      q.b[i] = ((qs[i] >> 4) & 0x0F0F0F0Fu) | (spread4((h.y >> (16 + 4 * i)) & 0xFu) << 4);
    }
    q.sa = q.sb = f16lo(h.x); q.ba = q.bb = f16hi(h.x);
  } else if constexpr (TYPE == 4) {  // Q8_0: d, qs[32] int8 (+128 makes them unsigned bytes)
    const uint8_t* p = row + 34 * u;
    uint32_t qs[8]; ld_a2<32>(p + 2, qs);
    q.sa = q.sb = f16lo(ld16(p));
#pragma unroll
    for (int i = 0; i < 4; ++i) { q.a[i] = qs[i] ^ 0x80808080u; q.b[i] = qs[4 + i] ^ 0x80808080u; }
  } else if constexpr (TYPE == 5 || TYPE == 6) {  // Q4_K/Q5_K: d, dmin, scales[12], (qh[32]), qs[128]
    constexpr int SIZE = TYPE == 5 ? 144 : 176, QS = TYPE == 5 ? 16 : 48;
    const uint8_t* p = row + SIZE * (u >> 3);
    const int t = u & 7, c = t >> 1;
    const uint4 h = ld128(p), v = ld128(p + QS + 16 * t);
    const uint32_t qs[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) { q.a[i] = qs[i] & 0x0F0F0F0Fu; q.b[i] = (qs[i] >> 4) & 0x0F0F0F0Fu; }
    if constexpr (TYPE == 6) {  // bit 2c of qh[l] is value l's fifth bit in sub-block 2c, bit 2c+1 in 2c+1
      const uint4 hv = ld128(p + 16 + 16 * (t & 1));
      const uint32_t qh[4] = {hv.x, hv.y, hv.z, hv.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        q.a[i] |= ((qh[i] >> (2 * c)) & 0x01010101u) << 4;
        q.b[i] |= ((qh[i] >> (2 * c + 1)) & 0x01010101u) << 4;
      }
    }
    const float d = f16lo(h.x), dmin = f16hi(h.x);
    float sc, m;
    scale_min_k4(2 * c, h.y, h.z, h.w, sc, m); q.sa = d * sc; q.ba = -dmin * m;
    scale_min_k4(2 * c + 1, h.y, h.z, h.w, sc, m); q.sb = d * sc; q.bb = -dmin * m;
  } else {  // Q6_K: ql[128], qh[64], scales[16] int8, d
    const uint8_t* p = row + 210 * (u >> 3);
    const int t = u & 7, hf = t >> 2, wh = (t >> 1) & 1, l0 = 16 * (t & 1);
    uint32_t ql[4], qh[4];
    ld_a2<16>(p + 16 * t, ql);  // = 64 hf + 32 wh + l0
    ld_a2<16>(p + 128 + 32 * hf + l0, qh);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      q.a[i] = (ql[i] & 0x0F0F0F0Fu) | (((qh[i] >> (2 * wh)) & 0x03030303u) << 4);
      q.b[i] = ((ql[i] >> 4) & 0x0F0F0F0Fu) | (((qh[i] >> (4 + 2 * wh)) & 0x03030303u) << 4);
    }
    const int8_t* sc = reinterpret_cast<const int8_t*>(p + 192 + 8 * hf + (t & 1) + 2 * wh);
    const float d = f16lo(ld16(p + 208));
    q.sa = d * (float)sc[0]; q.sb = d * (float)sc[4];
  }
}

// sum over 16 values of (q - OFF) * x: q - OFF is exact, 2^23 + q built as bits minus 2^23 + OFF
template <int OFF>
__device__ __forceinline__ float dot16(const uint32_t* q, const float* x) {
  constexpr float base = 8388608.f + (float)OFF;
  float s0 = 0.f, s1 = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    s0 = fmaf(__int_as_float(__byte_perm(q[i], 0x4B000000u, 0x7440)) - base, x[4 * i], s0);
    s1 = fmaf(__int_as_float(__byte_perm(q[i], 0x4B000000u, 0x7441)) - base, x[4 * i + 1], s1);
    s0 = fmaf(__int_as_float(__byte_perm(q[i], 0x4B000000u, 0x7442)) - base, x[4 * i + 2], s0);
    s1 = fmaf(__int_as_float(__byte_perm(q[i], 0x4B000000u, 0x7443)) - base, x[4 * i + 3], s1);
  }
  return s0 + s1;
}

template <typename T> struct IsHalf { static constexpr bool value = false; };
template <> struct IsHalf<__half> { static constexpr bool value = true; };

// 16 x values from p (a multiple of 16 elements from x's start) as float32
template <typename T>
__device__ __forceinline__ void ld_x16(const T* p, float* o, bool vec) {
  if (!vec) {  // NOTE: x is a view at an offset that is not 16-byte aligned: scalar loads
#pragma unroll
    for (int i = 0; i < 16; ++i) o[i] = static_cast<float>(p[i]);
  } else if constexpr (sizeof(T) == 4) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float4 v = __ldg(reinterpret_cast<const float4*>(p) + i);
      o[4 * i] = v.x; o[4 * i + 1] = v.y; o[4 * i + 2] = v.z; o[4 * i + 3] = v.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(p) + i);
      const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if constexpr (IsHalf<T>::value) {
          const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w[j]));
          o[8 * i + 2 * j] = f.x; o[8 * i + 2 * j + 1] = f.y;
        } else {  // bfloat16: the high 16 bits of a float32
          o[8 * i + 2 * j] = __uint_as_float(w[j] << 16); o[8 * i + 2 * j + 1] = __uint_as_float(w[j] & 0xFFFF0000u);
        }
      }
    }
  }
}

// 8 x values from p (a multiple of 8 elements from x's start) as float32
template <typename T>
__device__ __forceinline__ void ld_x8(const T* p, float* o, bool vec) {
  if (!vec) {
#pragma unroll
    for (int i = 0; i < 8; ++i) o[i] = static_cast<float>(p[i]);
  } else if constexpr (sizeof(T) == 4) {
    const float4 a = __ldg(reinterpret_cast<const float4*>(p)), b = __ldg(reinterpret_cast<const float4*>(p) + 1);
    o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w; o[4] = b.x; o[5] = b.y; o[6] = b.z; o[7] = b.w;
  } else {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if constexpr (IsHalf<T>::value) {
        const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w[j]));
        o[2 * j] = f.x; o[2 * j + 1] = f.y;
      } else {
        o[2 * j] = __uint_as_float(w[j] << 16); o[2 * j + 1] = __uint_as_float(w[j] & 0xFFFF0000u);
      }
    }
  }
}

// the GEMVs' epilogue: each thread's acc[r][m] summed over the block (warp shuffles, then the
// warps' sums through red, one row per warp) into y[m, n0 + r] for m < M, n0 + r < N; NaN
// when the weights were misaligned (w_ok false: nothing was read)
template <typename TO, int MAXM, int R>
__device__ __forceinline__ void store_rows(float (&acc)[R][MAXM], bool w_ok, TO* y, int M, int N, int n0,
                                           float (*red)[R * MAXM]) {
  const int tid = threadIdx.x, nt = blockDim.x, lane = tid & 31, warp = tid >> 5;
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < MAXM; ++m) {
      if (m < M) {
        float v = w_ok ? acc[r][m] : __int_as_float(0x7FC00000);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) red[warp][r * MAXM + m] = v;
      }
    }
  __syncthreads();
  if (tid < R * MAXM) {
    const int r = tid / MAXM, m = tid % MAXM;
    if (m < M && n0 + r < N) {
      float v = 0.f;
      for (int i = 0; i < (nt >> 5); ++i) v += red[i][tid];
      y[(size_t)m * N + n0 + r] = static_cast<TO>(v);
    }
  }
}

// y[m, n0 + r] for r < R, m < M: x (M, K), W rows of ROW_BYTES bytes, M <= MAXM; red: one row per warp
// x staged in shared memory (XS): chunks of XC values per row of x, float32, 36 words per 32
// values so that 8 lanes reading 16 values each hit distinct banks
template <int MAXM> struct XStage { static constexpr int XC = 8192 / MAXM, WORDS = XC / 32 * 36; };

template <int TYPE, typename T, int MAXM, int R, bool XS>
__device__ __forceinline__ void gemv(const T* x, const uint8_t* w, T* y, int M, int K, int N, size_t ROW_BYTES,
                                     float (*red)[R * MAXM], float* xsm) {
  using S = Spec<TYPE>;
  const int tid = threadIdx.x, nt = blockDim.x, n0 = blockIdx.x * R;
  const uint8_t* rows[R];
#pragma unroll
  for (int r = 0; r < R; ++r) rows[r] = w + (size_t)min(n0 + r, N - 1) * ROW_BYTES;  // past N: computed, not stored
  const bool xvec = (reinterpret_cast<unsigned long long>(x) & 15) == 0;
  float acc[R][MAXM];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < MAXM; ++m) acc[r][m] = 0.f;
  constexpr int XC = XStage<MAXM>::XC, XW = XStage<MAXM>::WORDS;
  // NOTE: a misaligned W (a view at an odd offset) reads nothing and gives NaN: a misaligned load
  // would be a sticky fault that ends the process's CUDA context
  const bool w_ok = (reinterpret_cast<unsigned long long>(w) & (S::ALIGN - 1)) == 0;
  const int kend = w_ok ? K : 0;
  for (int k0 = 0; k0 < kend; k0 += (XS ? XC : K)) {
  const int k1 = XS ? min(K, k0 + XC) : K;
  if constexpr (XS) {
    __syncthreads();
    for (int m = 0; m < M; ++m)
      for (int e = 8 * tid; e < k1 - k0; e += 8 * nt) {
        float v[8];
        ld_x8<T>(x + (size_t)m * K + k0 + e, v, xvec);
        float4* dst = reinterpret_cast<float4*>(xsm + m * XW + (e >> 5) * 36 + (e & 31));
        dst[0] = make_float4(v[0], v[1], v[2], v[3]); dst[1] = make_float4(v[4], v[5], v[6], v[7]);
      }
    __syncthreads();
  }
  for (int u = (k0 >> 5) + tid; u < (k1 >> 5); u += nt) {
    Unit q[R];
#pragma unroll
    for (int r = 0; r < R; ++r) load_unit<TYPE>(rows[r], u, q[r]);
    int xa, xb;
    unit_x<TYPE>(u, xa, xb);
#pragma unroll
    for (int m = 0; m < MAXM; ++m) {
      if (m < M) {
        float xv[32];
        if constexpr (XS) {
          const float4* pa = reinterpret_cast<const float4*>(xsm + m * XW + ((xa - k0) >> 5) * 36 + ((xa - k0) & 31));
          const float4* pb = reinterpret_cast<const float4*>(xsm + m * XW + ((xb - k0) >> 5) * 36 + ((xb - k0) & 31));
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const float4 va = pa[i], vb = pb[i];
            xv[4 * i] = va.x; xv[4 * i + 1] = va.y; xv[4 * i + 2] = va.z; xv[4 * i + 3] = va.w;
            xv[16 + 4 * i] = vb.x; xv[16 + 4 * i + 1] = vb.y; xv[16 + 4 * i + 2] = vb.z; xv[16 + 4 * i + 3] = vb.w;
          }
        } else {
          ld_x16<T>(x + (size_t)m * K + xa, xv, xvec);
          ld_x16<T>(x + (size_t)m * K + xb, xv + 16, xvec);
        }
        float sxa = 0.f, sxb = 0.f;
        if constexpr (S::BIAS) {
#pragma unroll
          for (int i = 0; i < 16; ++i) { sxa += xv[i]; sxb += xv[16 + i]; }
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
          float v = q[r].sa * dot16<S::OFF>(q[r].a, xv) + q[r].sb * dot16<S::OFF>(q[r].b, xv + 16);
          if constexpr (S::BIAS) v += q[r].ba * sxa + q[r].bb * sxb;
          acc[r][m] += v;
        }
      }
    }
  }
  }
  store_rows<T, MAXM, R>(acc, w_ok, y, M, N, n0, red);
}

// TYPE 0..7: that type only (registers sized for it); ALL_TYPES: the type from the block size
constexpr int ALL_TYPES = 8;

// a switch's cases from a block size (all 8 differ) to CALL(type id): both GEMVs' dispatch
#define OXG_TYPE_CASES(CALL) \
  case 18: CALL(0); break; case 20: CALL(1); break; case 22: CALL(2); break; case 24: CALL(3); break; \
  case 34: CALL(4); break; case 144: CALL(5); break; case 176: CALL(6); break; case 210: CALL(7); break;

template <int TYPE, typename T, int MAXM, int R, bool XS>
__device__ __forceinline__ void dispatch(const T* x, const uint8_t* w, T* y, int M, int K, int N, int blocks,
                                         int block_bytes, float (*red)[R * MAXM], float* xsm) {
  const size_t rb = (size_t)blocks * block_bytes;
  if constexpr (TYPE < ALL_TYPES) {
    gemv<TYPE, T, MAXM, R, XS>(x, w, y, M, K, N, rb, red, xsm);
  } else {
#define OXG_GEMV(ID) gemv<ID, T, MAXM, R, XS>(x, w, y, M, K, N, rb, red, xsm)
    switch (block_bytes) { OXG_TYPE_CASES(OXG_GEMV) }
#undef OXG_GEMV
  }
}

}  // namespace oxg
"""

SOURCE = r"""
  // NOTE: sizes come from the shapes (x: (M, K), w: (N, blocks per row, block bytes)); with
  // TYPE 8 the type comes from the block size (all 8 differ), so one compiled kernel serves
  // every type: a decode step's M = 1 gets a kernel per type (fewer registers, measured faster),
  // 2..8 rows share one per (x dtype, rows rounded up to 2, 4 or 8)
  __shared__ float red[32][R * MAXM];
  __shared__ __align__(16) float xsm[XS ? oxg::XStage<MAXM>::WORDS * MAXM : 4];
  oxg::dispatch<TYPE, T, MAXM, R, XS>(x, w, y, x_shape[0], x_shape[1], w_shape[0], w_shape[1], w_shape[2], red, xsm);
"""


@functools.lru_cache(maxsize=None)
def _kernel() -> Any:
    # NOTE: the name is MLX's key for its on-disk cache of compiled kernels (/tmp/mlx/...), which
    # ignores the source: a new kernel source needs a new name, or a stale binary is loaded
    return mx.fast.cuda_kernel(name="oxcore_ggml_gemv_v3b", input_names=["x", "w"], output_names=["y"],
                               source=SOURCE, header=HEADER)


def available() -> str:
    """"" when oxcore's MLX device is a CUDA GPU here, else why these kernels cannot run."""
    from oxcore_metal_basic import mlx_device

    dev = mlx_device()
    if dev.platform == "cuda":
        return ""
    return (f"needs MLX's CUDA backend (mlx[cuda13] on Linux with an NVIDIA GPU); oxcore's MLX device here is "
            f"{dev.name} on {dev.platform} (mx.cuda.is_available() is {mx.cuda.is_available()})")


def gemv(x: mx.array, raw: mx.array, *, ggml_type: str, shape: tuple[int, int], warps: int | None = None,
         rows: int | None = None, stage_x: bool | None = None) -> mx.array:
    """``x @ W.T`` for x (..., K) with at most ``MAX_ROWS`` rows, W's blocks read in place.

    ``warps``, ``rows`` and ``stage_x`` override ``WARPS_PER_BLOCK``, ``ROWS_PER_BLOCK`` and
    ``STAGE_X`` (tuning: ``scripts/gpu_qmatmul.py``).

    >>> y = gemv(x, raw, ggml_type="Q4_K", shape=(4096, 4096))  # doctest: +SKIP
    """
    if x.dtype not in (mx.float16, mx.bfloat16, mx.float32):
        raise TypeError(f"cuda_gemv takes float16, bfloat16 or float32 x, got {x.dtype}")
    n, k = (int(s) for s in shape)
    lead = x.shape[:-1]
    m = 1
    for s in lead:
        m *= s
    t = T.BY_NAME[ggml_type]
    warps = warps or WARPS_PER_BLOCK
    rows = rows or ROWS_PER_BLOCK
    if stage_x is None:
        stage_x = STAGE_X if STAGE_X is not None else (x.dtype == getattr(mx, _STAGED[0]) and ggml_type in _STAGED[1])
    threads = 32 * warps
    (y,) = _kernel()(
        inputs=[x.reshape(m, k), raw.reshape(n, k // t.block_size, t.type_size)],
        template=[("T", x.dtype), ("MAXM", 1 << (m - 1).bit_length()), ("R", rows), ("XS", bool(stage_x)),
                  ("TYPE", TYPES[ggml_type] if m == 1 else _ALL_TYPES)],
        grid=(-(-n // rows) * threads, 1, 1), threadgroup=(threads, 1, 1),
        output_shapes=[(m, n)], output_dtypes=[x.dtype])
    return y.reshape(*lead, n)
