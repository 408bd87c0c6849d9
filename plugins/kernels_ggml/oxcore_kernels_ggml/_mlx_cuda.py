"""CUDA GEMV kernels (``mx.fast.cuda_kernel``) that read ggml blocks directly: MLX's CUDA build only.

Two kernels; ``PLAN`` picks one per (type, x dtype) from a GPU sweep (``scripts/gpu_gemv_sweep.py``):

- **v4** (tensor cores, ``gemv4`` below): ``mma.sync.m16n8k16`` with float32 accumulation. The
  weights are the A operand as exact small integers (``MAG + q`` by one OR: float16 1024 + q,
  bfloat16 128 + q), x the B operand (a column per row of x), and an all-ones A gives sum(x), so
  ``s * (sum((MAG + q) x) - (MAG + OFF) sum(x)) + b sum(x)`` is exact up to float32 rounding. A warp
  takes 16 rows of W (RT tiles of them) over G units a step, the CTA's warps split K. float16 x
  runs in float16, bfloat16 x in bfloat16, float32 x is split once (``split_x``) into bfloat16
  hi and lo rows (x to ~2^-17) whose two columns are summed into a float32 y. About 3.7 (Q4_0) to
  4.3 (Q4_K) instructions per weight and lane, against 5 to 6 for v3 (SASS of the loops).
- **v3** (CUDA cores, ``gemv`` below), the previous kernel:

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
  if (!w_ok) {
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int m = 0; m < MAXM; ++m) acc[r][m] = __int_as_float(0x7FC00000);
  }
  const int lane = tid & 31, warp = tid >> 5;
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < MAXM; ++m) {
      if (m < M) {
        float v = acc[r][m];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) red[warp][r * MAXM + m] = v;
      }
    }
  __syncthreads();
  if (tid < R * MAXM) {
    const int r = tid / MAXM, m = tid % MAXM;
    if (m < M && n0 + r < N) {
      float s = 0.f;
      for (int i = 0; i < (nt >> 5); ++i) s += red[i][tid];
      y[(size_t)m * N + n0 + r] = static_cast<T>(s);
    }
  }
}

// TYPE 0..7: that type only (registers sized for it); ALL_TYPES: the type from the block size
constexpr int ALL_TYPES = 8;

template <int TYPE, typename T, int MAXM, int R, bool XS>
__device__ __forceinline__ void dispatch(const T* x, const uint8_t* w, T* y, int M, int K, int N, int blocks,
                                         int block_bytes, float (*red)[R * MAXM], float* xsm) {
  const size_t rb = (size_t)blocks * block_bytes;
  if constexpr (TYPE < ALL_TYPES) {
    gemv<TYPE, T, MAXM, R, XS>(x, w, y, M, K, N, rb, red, xsm);
  } else {
    switch (block_bytes) {
      case 18: gemv<0, T, MAXM, R, XS>(x, w, y, M, K, N, rb, red, xsm); break;
      case 20: gemv<1, T, MAXM, R, XS>(x, w, y, M, K, N, rb, red, xsm); break;
      case 22: gemv<2, T, MAXM, R, XS>(x, w, y, M, K, N, rb, red, xsm); break;
      case 24: gemv<3, T, MAXM, R, XS>(x, w, y, M, K, N, rb, red, xsm); break;
      case 34: gemv<4, T, MAXM, R, XS>(x, w, y, M, K, N, rb, red, xsm); break;
      case 144: gemv<5, T, MAXM, R, XS>(x, w, y, M, K, N, rb, red, xsm); break;
      case 176: gemv<6, T, MAXM, R, XS>(x, w, y, M, K, N, rb, red, xsm); break;
      case 210: gemv<7, T, MAXM, R, XS>(x, w, y, M, K, N, rb, red, xsm); break;
    }
  }
}


// ===================== v4: tensor cores (mma.sync m16n8k16, float32 accumulation) =====================
// A warp computes 16 rows of W (a tile; RT tiles) for all rows of x, G units per step; the CTA's
// warps split K. The weights are the mma's A operand as exact small integers (q stored as
// MAG + q by one OR: a float16 1024 + q, a bfloat16 128 + q), x is the B operand (column n = row n
// of x; float32 x as bfloat16 hi and lo rows from split_x, columns 2m, 2m+1), and one more mma of an all-ones
// A gives sum(x) per half: ``s * (sum((MAG + q) x) - (MAG + OFF) sum(x)) + b sum(x)`` per half, in
// float32. Lane (g, t) holds rows g and g + 8 and, of each half of a unit, the values 4t..4t+3
// (bytes of word t): k order (4t, 4t+2 | 4t+1, 4t+3), the same in A and B.

template <int AT> struct Op;
template <> struct Op<0> { static constexpr uint32_t MAG2 = 0x64006400u, ONE2 = 0x3C003C00u; static constexpr float MAG = 1024.f; };
template <> struct Op<1> { static constexpr uint32_t MAG2 = 0x43004300u, ONE2 = 0x3F803F80u; static constexpr float MAG = 128.f; };

// one little-endian word at a 2-byte aligned p: two loads, nothing read past p + 4
__device__ __forceinline__ uint32_t ld_w2(const uint8_t* p) {
  const uint32_t odd = (uint32_t)(reinterpret_cast<unsigned long long>(p) & 2);
  const uint32_t lo = ld32(p - odd), hi = ld16(p + 2);
  return __funnelshift_r(lo, hi, odd * 8);
}

// the word at p + C for a 4-byte aligned p and an even C that folds to a constant once the unit
// loop is unrolled: one load, or two aligned loads shifted (reading 2 bytes past the word, which
// the callers keep inside the row: the next block of an even-sized group)
__device__ __forceinline__ uint32_t ld_c(const uint8_t* p, int C) {
  if ((C & 3) == 0) return ld32(p + C);
  return __funnelshift_r(ld32(p + C - 2), ld32(p + C + 2), 16);
}

// a lane's quarter of a unit: q bytes of values 4t..4t+3 of half A (qa) and half B (qb)
struct Quarter { uint32_t qa, qb; float sa, sb, ba, bb; };

// unit j of the group at pg (the 32-value types: pg = the group's first block, A4: pg is 4-byte
// aligned and the group has an even number of blocks; K types: pg = the super-block, j = its unit;
// Q4_K/Q5_K's scales come from k4_scales, once per super-block)
template <int TYPE, bool A4>
__device__ __forceinline__ void load_quarter(const uint8_t* pg, int j, int t, Quarter& q) {
  q.ba = q.bb = 0.f;
  if constexpr (TYPE == 0) {
    const uint32_t w = A4 ? ld_c(pg + 4 * t, 18 * j + 2) : ld_w2(pg + 18 * j + 2 + 4 * t);
    q.qa = w & 0x0F0F0F0Fu; q.qb = (w >> 4) & 0x0F0F0F0Fu;
    q.sa = q.sb = f16lo(ld16(pg + 18 * j));
  } else if constexpr (TYPE == 1) {
    const uint8_t* p = pg + 20 * j;
    const uint32_t dm = ld32(p), w = ld32(p + 4 + 4 * t);
    q.qa = w & 0x0F0F0F0Fu; q.qb = (w >> 4) & 0x0F0F0F0Fu;
    q.sa = q.sb = f16lo(dm); q.ba = q.bb = f16hi(dm);
  } else if constexpr (TYPE == 2) {
    const uint8_t* p = pg + 22 * j;
    const uint32_t w = A4 ? ld_c(pg + 4 * t, 22 * j + 6) : ld_w2(p + 6 + 4 * t);
    const uint32_t qh = ld16(p + 2) | (ld16(p + 4) << 16);
    q.qa = (w & 0x0F0F0F0Fu) | (spread4((qh >> (4 * t)) & 0xFu) << 4);
    q.qb = ((w >> 4) & 0x0F0F0F0Fu) | (spread4((qh >> (16 + 4 * t)) & 0xFu) << 4);
    q.sa = q.sb = f16lo(ld16(p));
  } else if constexpr (TYPE == 3) {
    const uint8_t* p = pg + 24 * j;
    const uint32_t dm = ld32(p), qh = ld32(p + 4), w = ld32(p + 8 + 4 * t);
    q.qa = (w & 0x0F0F0F0Fu) | (spread4((qh >> (4 * t)) & 0xFu) << 4);
    q.qb = ((w >> 4) & 0x0F0F0F0Fu) | (spread4((qh >> (16 + 4 * t)) & 0xFu) << 4);
    q.sa = q.sb = f16lo(dm); q.ba = q.bb = f16hi(dm);
  } else if constexpr (TYPE == 4) {
    const uint8_t* p = pg + 34 * j;
    if (A4) {
      q.qa = ld_c(pg + 4 * t, 34 * j + 2) ^ 0x80808080u; q.qb = ld_c(pg + 4 * t, 34 * j + 18) ^ 0x80808080u;
    } else {
      q.qa = ld_w2(p + 2 + 4 * t) ^ 0x80808080u; q.qb = ld_w2(p + 18 + 4 * t) ^ 0x80808080u;
    }
    q.sa = q.sb = f16lo(ld16(p));
  } else if constexpr (TYPE == 5 || TYPE == 6) {
    constexpr int QS = TYPE == 5 ? 16 : 48;
    const int c = j >> 1;
    const uint32_t w = ld32(pg + QS + 16 * j + 4 * t);
    q.qa = w & 0x0F0F0F0Fu; q.qb = (w >> 4) & 0x0F0F0F0Fu;
    if constexpr (TYPE == 6) {
      const uint32_t qh = ld32(pg + 16 + 16 * (j & 1) + 4 * t);
      q.qa |= ((qh >> (2 * c)) & 0x01010101u) << 4;
      q.qb |= ((qh >> (2 * c + 1)) & 0x01010101u) << 4;
    }
    q.sa = q.sb = 0.f;
  } else {  // Q6_K: 210-byte super-blocks are 2-byte aligned; one shift for the whole super-block
    const uint32_t odd = (uint32_t)(reinterpret_cast<unsigned long long>(pg) & 2);
    const uint8_t* b = pg - odd;
    const int hf = j >> 2, wh = (j >> 1) & 1, l0 = 16 * (j & 1);
    const int oql = 16 * j + 4 * t, oqh = 128 + 32 * hf + l0 + 4 * t;
    const uint32_t ql = __funnelshift_r(ld32(b + oql), ld32(b + oql + 4), odd * 8);
    const uint32_t qh = __funnelshift_r(ld32(b + oqh), ld32(b + oqh + 4), odd * 8);
    q.qa = (ql & 0x0F0F0F0Fu) | (((qh >> (2 * wh)) & 0x03030303u) << 4);
    q.qb = ((ql >> 4) & 0x0F0F0F0Fu) | (((qh >> (4 + 2 * wh)) & 0x03030303u) << 4);
    const int8_t* sc = reinterpret_cast<const int8_t*>(pg + 192 + 8 * hf + (j & 1) + 2 * wh);
    const float d = f16lo(ld16(pg + 208));
    q.sa = d * (float)sc[0]; q.sb = d * (float)sc[4];
  }
}

// bytes of a unit's group step: block bytes (32-value types), super-block bytes (K types, per 8 units)
template <int TYPE> struct Blk { static constexpr int BYTES = TYPE == 0 ? 18 : TYPE == 1 ? 20 : TYPE == 2 ? 22 : TYPE == 3 ? 24 : TYPE == 4 ? 34 : TYPE == 5 ? 144 : TYPE == 6 ? 176 : 210; };

// the group at unit u0 of a row (K types: u0 is a multiple of 8)
template <int TYPE>
__device__ __forceinline__ const uint8_t* group_ptr(const uint8_t* row, int u0) {
  return row + (size_t)Blk<TYPE>::BYTES * (TYPE >= 5 ? (u0 >> 3) : u0);
}

// byte j of v as a float (exact): 2^23 + byte, built as bits (mg = 0x4B000000), minus 2^23
__device__ __forceinline__ float bytef(uint32_t v, int j, uint32_t mg) {
  return __int_as_float(__byte_perm(v, mg, 0x7440u + (uint32_t)j)) - 8388608.f;
}

// Q4_K/Q5_K super-block header h (d, dmin, scales[12]): s[j] = d * sc_j, m[j] = -dmin * m_j
__device__ __forceinline__ void k4_scales(uint4 h, float* s, float* m) {
  // NOTE: 2^23's bits in a register, so that the byte permutes take their selectors as immediates
  // (with both constant the compiler copied a selector into a register before each permute)
  uint32_t mg = 0x4B000000u;
#ifdef __CUDA_ARCH__
  asm volatile("mov.b32 %0, 0x4B000000;" : "=r"(mg));
#endif
  const float d = f16lo(h.x), dmin = f16hi(h.x);
  const uint32_t sc_lo = h.y & 0x3F3F3F3Fu, m_lo = h.z & 0x3F3F3F3Fu;
  const uint32_t sc_hi = (h.w & 0x0F0F0F0Fu) | ((h.y >> 2) & 0x30303030u);
  const uint32_t m_hi = ((h.w >> 4) & 0x0F0F0F0Fu) | ((h.z >> 2) & 0x30303030u);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    s[j] = d * bytef(sc_lo, j, mg); s[4 + j] = d * bytef(sc_hi, j, mg);
    m[j] = -dmin * bytef(m_lo, j, mg); m[4 + j] = -dmin * bytef(m_hi, j, mg);
  }
}

// A fragment of one half from the q words of rows g (q0) and g + 8 (q1): values (4t, 4t+2) at
// k (2t, 2t+1), (4t+1, 4t+3) at k (2t+8, 2t+9), each MAG + q
template <int AT>
__device__ __forceinline__ void afrag(uint32_t q0, uint32_t q1, uint32_t* a) {
  constexpr uint32_t M2 = Op<AT>::MAG2;
  a[0] = (q0 & 0x00FF00FFu) | M2; a[1] = (q1 & 0x00FF00FFu) | M2;
  a[2] = ((q0 >> 8) & 0x00FF00FFu) | M2; a[3] = ((q1 >> 8) & 0x00FF00FFu) | M2;
}

template <typename T> struct Bits16 { static __device__ __forceinline__ uint32_t of(T v) { return (uint32_t)__bfloat16_as_ushort(v); } };
template <> struct Bits16<__half> { static __device__ __forceinline__ uint32_t of(__half v) { return (uint32_t)__half_as_ushort(v); } };

// B fragment of one half: x values 4t..4t+3 of the lane's column at p as (x0, x2), (x1, x3)
template <typename T>
__device__ __forceinline__ void bfrag(const T* p, bool vec, uint32_t* b) {
  uint32_t w0, w1;
  if (vec) {
    const uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
    w0 = v.x; w1 = v.y;
  } else {
    w0 = Bits16<T>::of(p[0]) | (Bits16<T>::of(p[1]) << 16);
    w1 = Bits16<T>::of(p[2]) | (Bits16<T>::of(p[3]) << 16);
  }
  b[0] = __byte_perm(w0, w1, 0x5410u); b[1] = __byte_perm(w0, w1, 0x7632u);
}

// float32 x as two bfloat16 rows (split_x's kernel): hi = x with its mantissa cut to bfloat16's,
// lo = x - hi (exact in float32) rounded to bfloat16: hi + lo is x to about 2^-17 of itself
__device__ __forceinline__ void split_bf16(float v, __nv_bfloat16& hi, __nv_bfloat16& lo) {
  const uint32_t b = __float_as_uint(v) & 0xFFFF0000u;
  hi = __ushort_as_bfloat16((unsigned short)(b >> 16));
  lo = __float2bfloat16_rn(v - __uint_as_float(b));
}

#ifdef __CUDA_ARCH__
template <int AT>
__device__ __forceinline__ void mma16816(float* c, const uint32_t* a, const uint32_t* b) {
  if constexpr (AT == 0) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

// the K loop of gemv4 (XV: x 16-byte aligned, vector loads): acc[i] = the C fragment of tile i
template <int TYPE, typename T, int RT, int G, bool A4, bool XV>
__device__ __forceinline__ void gemv4_k(const T* x, const uint8_t* w, int M, int K, int N, size_t RB, float (&acc)[RT][4]) {
  constexpr int AT = IsHalf<T>::value ? 0 : 1;
  constexpr bool KQ = TYPE == 5 || TYPE == 6;   // scales once per super-block
  constexpr bool TWO = TYPE >= 5;               // a scale per half
  constexpr bool WIDE = AT == 1 && TYPE == 4;   // Q8_0's q > 127 in bfloat16: q = 16 hi + lo, each 128 + nibble
  constexpr float K0 = WIDE ? 2304.f : Op<AT>::MAG + (float)Spec<TYPE>::OFF;
  static_assert(TYPE < 5 || G == 8, "K types step by super-blocks");
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nw = blockDim.x >> 5;
  const int g = lane >> 2, t = lane & 3, n0 = blockIdx.x * 16 * RT;
  const uint8_t* rw[RT][2];
#pragma unroll
  for (int i = 0; i < RT; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) rw[i][h] = w + (size_t)min(n0 + 16 * i + 8 * h + g, N - 1) * RB;  // past N: not stored
  const bool xon = g < M;
  const T* xr = x + (size_t)(xon ? g : 0) * K + 4 * t;
  // NOTE: the all-ones A fragment held in 4 registers for the whole loop (as a constant the
  // compiler rebuilt the register quad before every mma: 2 moves per sum(x) product)
  uint32_t ones[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) asm volatile("mov.b32 %0, %1;" : "=r"(ones[i]) : "n"(Op<AT>::ONE2));
  const int ngrp = (K >> 5) / G;  // NOTE: the host picks G dividing K / 32: no partial groups
  for (int grp = warp; grp < ngrp; grp += nw) {
    const int u0 = grp * G;
    // NOTE: x positions as the group's base plus constants (unit_x of the unit within the group)
    const T* xg = xr + (TYPE >= 5 ? 256 * (u0 >> 3) : 32 * u0);
    uint32_t bA[G][2], bB[G][2];
#pragma unroll
    for (int j = 0; j < G; ++j) {
      bA[j][0] = bA[j][1] = bB[j][0] = bB[j][1] = 0u;
      if (xon) {
        int xa, xb;
        unit_x<TYPE>(j, xa, xb);
        bfrag<T>(xg + xa, XV, bA[j]);
        bfrag<T>(xg + xb, XV, bB[j]);
      }
    }
    Quarter q[RT][2][G];
    float ks[RT][2][8], km[RT][2][8];
#pragma unroll
    for (int i = 0; i < RT; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const uint8_t* pg = group_ptr<TYPE>(rw[i][h], u0);
        if constexpr (KQ) {
          k4_scales(ld128(pg), ks[i][h], km[i][h]);
#pragma unroll
          for (int c = 0; c < 8; ++c) km[i][h][c] = fmaf(-K0, ks[i][h][c], km[i][h][c]);  // (MAG + OFF) sum(x) folded in
        }
#pragma unroll
        for (int j = 0; j < G; ++j) load_quarter<TYPE, A4>(pg, j, t, q[i][h][j]);
      }
    if constexpr (KQ) {
      // units 2c and 2c + 1 hold sub-blocks 2c (halves A) and 2c + 1 (halves B) whole: one
      // product chain per sub-block, scaled once
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        float sA[4] = {0.f, 0.f, 0.f, 0.f}, sB[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int j = 2 * c; j < 2 * c + 2; ++j) { mma16816<AT>(sA, ones, bA[j]); mma16816<AT>(sB, ones, bB[j]); }
#pragma unroll
        for (int i = 0; i < RT; ++i) {
          float ca[4] = {0.f, 0.f, 0.f, 0.f}, cb[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
          for (int j = 2 * c; j < 2 * c + 2; ++j) {
            uint32_t aA[4], aB[4];
            afrag<AT>(q[i][0][j].qa, q[i][1][j].qa, aA);
            afrag<AT>(q[i][0][j].qb, q[i][1][j].qb, aB);
            mma16816<AT>(ca, aA, bA[j]); mma16816<AT>(cb, aB, bB[j]);
          }
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int h = e >> 1;
            acc[i][e] = fmaf(km[i][h][2 * c + 1], sB[e], fmaf(ks[i][h][2 * c + 1], cb[e],
                        fmaf(km[i][h][2 * c], sA[e], fmaf(ks[i][h][2 * c], ca[e], acc[i][e]))));
          }
        }
      }
    } else
#pragma unroll
    for (int j = 0; j < G; ++j) {
      float sA[4] = {0.f, 0.f, 0.f, 0.f}, sB[4] = {0.f, 0.f, 0.f, 0.f};
      mma16816<AT>(sA, ones, bA[j]);
      if constexpr (TWO) mma16816<AT>(sB, ones, bB[j]);
      else mma16816<AT>(sA, ones, bB[j]);
#pragma unroll
      for (int i = 0; i < RT; ++i) {
        float sa[2], sb[2], ba[2], bb[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          if constexpr (KQ) {
            const int c = j >> 1;
            sa[h] = ks[i][h][2 * c]; sb[h] = ks[i][h][2 * c + 1]; ba[h] = km[i][h][2 * c]; bb[h] = km[i][h][2 * c + 1];
          } else {  // (MAG + OFF) sum(x) folded into the bias
            sa[h] = q[i][h][j].sa; sb[h] = q[i][h][j].sb;
            ba[h] = fmaf(-K0, sa[h], q[i][h][j].ba);
            if constexpr (TWO) bb[h] = fmaf(-K0, sb[h], q[i][h][j].bb);
            else bb[h] = 0.f;
          }
        }
        uint32_t aA[4], aB[4];
        if constexpr (WIDE) {
          float c[4] = {0.f, 0.f, 0.f, 0.f}, ch[4] = {0.f, 0.f, 0.f, 0.f};
          afrag<AT>(q[i][0][j].qa & 0x0F0F0F0Fu, q[i][1][j].qa & 0x0F0F0F0Fu, aA);
          afrag<AT>(q[i][0][j].qb & 0x0F0F0F0Fu, q[i][1][j].qb & 0x0F0F0F0Fu, aB);
          mma16816<AT>(c, aA, bA[j]); mma16816<AT>(c, aB, bB[j]);
          afrag<AT>((q[i][0][j].qa >> 4) & 0x0F0F0F0Fu, (q[i][1][j].qa >> 4) & 0x0F0F0F0Fu, aA);
          afrag<AT>((q[i][0][j].qb >> 4) & 0x0F0F0F0Fu, (q[i][1][j].qb >> 4) & 0x0F0F0F0Fu, aB);
          mma16816<AT>(ch, aA, bA[j]); mma16816<AT>(ch, aB, bB[j]);
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[i][e] = fmaf(ba[e >> 1], sA[e], fmaf(sa[e >> 1], fmaf(16.f, ch[e], c[e]), acc[i][e]));
        } else {
          afrag<AT>(q[i][0][j].qa, q[i][1][j].qa, aA);
          afrag<AT>(q[i][0][j].qb, q[i][1][j].qb, aB);
          if constexpr (TWO) {
            float ca[4] = {0.f, 0.f, 0.f, 0.f}, cb[4] = {0.f, 0.f, 0.f, 0.f};
            mma16816<AT>(ca, aA, bA[j]); mma16816<AT>(cb, aB, bB[j]);
#pragma unroll
            for (int e = 0; e < 4; ++e)
              acc[i][e] = fmaf(bb[e >> 1], sB[e], fmaf(sb[e >> 1], cb[e], fmaf(ba[e >> 1], sA[e], fmaf(sa[e >> 1], ca[e], acc[i][e]))));
          } else {
            float c[4] = {0.f, 0.f, 0.f, 0.f};
            mma16816<AT>(c, aA, bA[j]); mma16816<AT>(c, aB, bB[j]);
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][e] = fmaf(ba[e >> 1], sA[e], fmaf(sa[e >> 1], c[e], acc[i][e]));
          }
        }
      }
    }
  }
}

// y[m, n0 + r] for the CTA's 16 * RT rows, x (M, K) in float16 or bfloat16; TO float (y float32):
// x's rows come in pairs (split_x: hi, lo) and y[m] sums the pair 2m, 2m + 1; red: 32 * 4 * RT
// floats per warp
template <int TYPE, typename T, typename TO, int RT, int G, bool A4>
__device__ __forceinline__ void gemv4(const T* x, const uint8_t* w, TO* y, int M, int K, int N, size_t RB, float* red) {
  constexpr bool SPLIT = sizeof(TO) == 4;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nw = blockDim.x >> 5;
  const int n0 = blockIdx.x * 16 * RT;
  float acc[RT][4];
#pragma unroll
  for (int i = 0; i < RT; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[i][e] = 0.f;
  // NOTE: a misaligned W (a view at an odd offset) reads nothing and gives NaN, never a
  // misaligned-address fault; x at any offset (views) takes scalar loads
  const bool w_ok = (reinterpret_cast<unsigned long long>(w) & (Spec<TYPE>::ALIGN - 1)) == 0 &&
                    (!A4 || (reinterpret_cast<unsigned long long>(w) & 3) == 0);
  if (w_ok) {
    if ((reinterpret_cast<unsigned long long>(x) & 15) == 0) gemv4_k<TYPE, T, RT, G, A4, true>(x, w, M, K, N, RB, acc);
    else gemv4_k<TYPE, T, RT, G, A4, false>(x, w, M, K, N, RB, acc);
  } else {
#pragma unroll
    for (int i = 0; i < RT; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][e] = __int_as_float(0x7FC00000);
  }
#pragma unroll
  for (int i = 0; i < RT; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) red[(warp * RT + i) * 128 + 4 * lane + e] = acc[i][e];
  __syncthreads();
  for (int idx = tid; idx < 32 * RT; idx += blockDim.x) {
    const int i = idx >> 5, l = idx & 31, gg = l >> 2, tt = l & 3;
    float v[4] = {0.f, 0.f, 0.f, 0.f};
    for (int wp = 0; wp < nw; ++wp)
#pragma unroll
      for (int e = 0; e < 4; ++e) v[e] += red[(wp * RT + i) * 128 + 4 * l + e];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = n0 + 16 * i + 8 * h + gg;
      if (r < N) {
        if constexpr (SPLIT) {
          if (2 * tt < M) y[(size_t)tt * N + r] = v[2 * h] + v[2 * h + 1];
        } else {
#pragma unroll
          for (int e = 0; e < 2; ++e)
            if (2 * tt + e < M) y[(size_t)(2 * tt + e) * N + r] = static_cast<TO>(v[2 * h + e]);
        }
      }
    }
  }
}
#endif  // __CUDA_ARCH__

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

SOURCE_SPLIT = r"""
  // float32 x (M, K) as bfloat16 rows 2m (hi) and 2m + 1 (lo) of xs (2M, K)
  const size_t K = x_shape[1], n = (size_t)x_shape[0] * K;
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    const size_t m = i / K, k = i - m * K;
    oxg::split_bf16(x[i], xs[2 * m * K + k], xs[(2 * m + 1) * K + k]);
  }
"""

SOURCE_V4 = r"""
  // NOTE: x (M, K), w (N, blocks per row, block bytes); one kernel per (type, x dtype, RT, G): the
  // CTA's warps (at most 8) split K, each warp computes 16 * RT rows of y for every row of x
  __shared__ float red4[8 * 128 * RT];
  oxg::gemv4<TYPE, T, TO, RT, G, A4>(x, w, y, x_shape[0], x_shape[1], w_shape[0], (size_t)w_shape[1] * w_shape[2], red4);
"""


@functools.lru_cache(maxsize=None)
def _kernel() -> Any:
    # NOTE: the name is MLX's key for its on-disk cache of compiled kernels (/tmp/mlx/...), which
    # ignores the source: a new kernel source needs a new name, or a stale binary is loaded
    return mx.fast.cuda_kernel(name="oxcore_ggml_gemv_v3", input_names=["x", "w"], output_names=["y"],
                               source=SOURCE, header=HEADER)


@functools.lru_cache(maxsize=None)
def _kernel_split() -> Any:
    return mx.fast.cuda_kernel(name="oxcore_ggml_split_x_v1", input_names=["x"], output_names=["xs"],
                               source=SOURCE_SPLIT, header=HEADER)


def split_x(x: mx.array) -> mx.array:
    """float32 x (M, K) as bfloat16 (2M, K): rows 2m and 2m + 1 are x[m]'s high and low parts, whose
    sum is x[m] to about 2^-17 of each value (the tensor-core GEMV's float32 path)."""
    m, k = x.shape
    (xs,) = _kernel_split()(inputs=[x], grid=(m * k, 1, 1), threadgroup=(256, 1, 1),
                            output_shapes=[(2 * m, k)], output_dtypes=[mx.bfloat16])
    return xs


@functools.lru_cache(maxsize=None)
def _kernel_v4() -> Any:
    # NOTE: a new name for a new source (MLX's on-disk kernel cache is keyed by name)
    return mx.fast.cuda_kernel(name="oxcore_ggml_gemv_v4c", input_names=["x", "w"], output_names=["y"],
                               source=SOURCE_V4, header=HEADER)


def available() -> str:
    """"" when oxcore's MLX device is a CUDA GPU here, else why these kernels cannot run."""
    from oxcore_metal_basic import mlx_device

    dev = mlx_device()
    if dev.platform == "cuda":
        return ""
    return (f"needs MLX's CUDA backend (mlx[cuda13] on Linux with an NVIDIA GPU); oxcore's MLX device here is "
            f"{dev.name} on {dev.platform} (mx.cuda.is_available() is {mx.cuda.is_available()})")


def gemv(x: mx.array, raw: mx.array, *, ggml_type: str, shape: tuple[int, int], warps: int | None = None,
         rows: int | None = None, stage_x: bool | None = None, variant: "tuple | None" = None) -> mx.array:
    """``x @ W.T`` for x (..., K) with at most ``MAX_ROWS`` rows, W's blocks read in place.

    The kernel comes from ``PLAN`` per (type, x dtype) unless ``variant`` names one:
    ``("v4", warps, RT, G)`` (tensor cores) or ``("v3", warps, rows, stage_x)`` (CUDA cores; ``warps``,
    ``rows`` and ``stage_x`` given here pick v3 too). Other values than the plan's are for tuning
    (``scripts/gpu_qmatmul.py``).

    >>> y = gemv(x, raw, ggml_type="Q4_K", shape=(4096, 4096))  # doctest: +SKIP
    """
    if x.dtype not in (mx.float16, mx.bfloat16, mx.float32):
        raise TypeError(f"cuda_gemv takes float16, bfloat16 or float32 x, got {x.dtype}")
    if variant is None and (warps or rows or stage_x is not None):
        variant = ("v3", warps, rows, stage_x)
    if variant is None:
        variant = plan_for(ggml_type, str(x.dtype).split(".")[-1])
    if variant[0] == "v3":
        return _gemv_v3(x, raw, ggml_type=ggml_type, shape=shape, warps=variant[1], rows=variant[2],
                        stage_x=variant[3])
    return _gemv_v4(x, raw, ggml_type=ggml_type, shape=shape, warps=variant[1], tiles=variant[2], group=variant[3])


#: kernel per (type, x dtype): ("v4", warps per CTA, 16-row tiles per warp, units per step) or
#: ("v3", warps, rows, stage_x); measured on an H200 with scripts/gpu_qmatmul.py (README)
PLAN: dict = {}
#: the plan's default: K types step by whole super-blocks (8 units)
V4_DEFAULT = ("v4", 4, 1, 4)


#: (type, x dtype) pairs not in ``PLAN`` take v3 unless this is True (v4 with ``V4_DEFAULT``)
V4_UNPLANNED = False


def plan_for(ggml_type: str, dtype: str) -> tuple:
    """The kernel variant ``gemv`` uses for this type and x dtype: ``PLAN``'s, else v3 (or
    ``V4_DEFAULT`` when ``V4_UNPLANNED``; K types step by super-blocks, G = 8)."""
    v = PLAN.get((ggml_type, dtype))
    if v is not None:
        return tuple(v)
    if not V4_UNPLANNED:
        return ("v3", None, None, None)
    if T.BY_NAME[ggml_type].block_size == 256:
        return (V4_DEFAULT[0], V4_DEFAULT[1], V4_DEFAULT[2], 8)
    return V4_DEFAULT


def _gemv_v4(x: mx.array, raw: mx.array, *, ggml_type: str, shape: tuple[int, int], warps: int, tiles: int,
             group: int) -> mx.array:
    n, k = (int(s) for s in shape)
    lead = x.shape[:-1]
    m = 1
    for s in lead:
        m *= s
    t = T.BY_NAME[ggml_type]
    if t.block_size == 256:
        group = 8  # NOTE: K types step by whole super-blocks
    else:
        while (k // 32) % group:  # NOTE: groups divide the row: no partial group in the kernel
            group //= 2
    a4 = group % 2 == 0 and (k // t.block_size * t.type_size) % 4 == 0
    x2 = x.reshape(m, k)
    w3 = raw.reshape(n, k // t.block_size, t.type_size)
    # NOTE: float32 x goes in as bfloat16 hi and lo rows (two columns of the mma each): 4 rows a launch
    f32 = x.dtype == mx.float32
    step = 4 if f32 else 8
    outs = []
    for r0 in range(0, m, step):
        xs = x2[r0:r0 + step]
        rows = xs.shape[0]
        if f32:
            xs = split_x(xs)
        (y,) = _kernel_v4()(
            inputs=[xs, w3],
            template=[("T", xs.dtype), ("TO", x.dtype), ("TYPE", TYPES[ggml_type]), ("RT", tiles), ("G", group),
                      ("A4", a4)],
            grid=(-(-n // (16 * tiles)) * 32 * warps, 1, 1), threadgroup=(32 * warps, 1, 1),
            output_shapes=[(rows, n)], output_dtypes=[x.dtype])
        outs.append(y)
    y = outs[0] if len(outs) == 1 else mx.concatenate(outs, axis=0)
    return y.reshape(*lead, n)


def _gemv_v3(x: mx.array, raw: mx.array, *, ggml_type: str, shape: tuple[int, int], warps: int | None = None,
             rows: int | None = None, stage_x: bool | None = None) -> mx.array:
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
