"""CUDA GEMV with x quantized to 8 bits (ggml's ``mul_mat_vec_q``): MLX's CUDA build only.

``_mlx_cuda.gemv`` (v3) multiplies in float32: ~5-6 instructions per weight (decode + an FMA),
which with float32 x holds Q4_0/Q4_1/Q5_0 at 55-68% of the copy bandwidth on an H100 (issue 14).
This kernel does what ggml's CUDA backend does (``vecdotq.cuh``, ``vec_dot_q4_0_q8_1`` ...):

1. ``quantize``: one pre-pass per call turns each row of x into blocks of 32 signed bytes
   ``qx = rint(x / d)``, ``d = max|x| / 127``, with ``(d, d * sum(qx[:16]), d * sum(qx[16:]),
   sum(x))`` per block (ggml's q8_1, with the sum split in halves for the K types' 16-value
   scales; one warp per block, shuffles for the max and the sums).
2. ``gemv_q8``: the structure of v3 (a block's threads stride along K one 32-value weight unit at
   a time, ``R`` rows of W share each x load, warp shuffles then shared memory reduce), but each
   unit's dot product is 8 ``__dp4a`` (4 byte products an instruction) on the weight's small
   integers ``q`` (``_mlx_cuda.load_unit``'s decode), scaled once per half:
   ``s_w * (d * sum(q qx) - OFF * d * sum(qx)) + b_w * d * sum(qx)`` — under 1 instruction a
   weight. For the 32-value types a unit is one block (x's block at the same place, ``b_w`` times
   the exact ``sum(x)``); for Q4_K/Q5_K/Q6_K a unit is two 16-value halves with their own scales
   (``_mlx_cuda.unit_x`` says where in x), each inside one q8 block, like ggml's
   ``vec_dot_q4_K_q8_1``/``q6_K``.

The weight side is exact; x is rounded to 8 bits (relative error ~1/254 of a block's max), which
gives an NMSE of ~1e-5 against the float64 product (issue 14 allows 5e-4 with 8-bit activations).
Types: all 8 of ``_mlx_cuda``. Decoders and dot products are checked on the CPU by
``tests/test_mlx_cuda_host.py``, the kernel by ``scripts/gpu_qmatmul.py`` on a GPU.

>>> y = gemv_q8(x, raw, ggml_type="Q4_0", shape=(4096, 4096))  # doctest: +SKIP
"""

from __future__ import annotations

import functools
from typing import Any

import mlx.core as mx

from oxcore_io_gguf import _types as T

from . import _mlx_cuda

#: the types this kernel reads (their ids in ``_mlx_cuda.HEADER``'s ``load_unit``)
TYPES = dict(_mlx_cuda.TYPES)
MAX_ROWS = _mlx_cuda.MAX_ROWS
#: time of ``_mlx_cuda.gemv`` (v3) over this kernel's, float32 x, 1 row, 16384x16384 weights, H100
#: (``scripts/gpu_qmatmul.py``, 2026-12-05: v3 58-79% of the copy bandwidth, this kernel 80-94%).
#: ``_mlx.cuda_gemv_q8``'s prior divides the weight bytes by it and adds the pre-pass launch, so
#: without autotune float32 x takes this kernel on large weights (the crossover measured near
#: 8192x8192: at 4096x4096 the pre-pass launch makes it 6-9 us slower than v3); types not here: 1
#: (Q4_K/Q5_K/Q6_K: v3 77/76/84%, this kernel 79/75/82% on an H100, 2026-12-06: the same speed)
F32_SPEEDUP = {"Q4_0": 1.38, "Q4_1": 1.33, "Q5_0": 1.32, "Q5_1": 1.17, "Q8_0": 1.19}
#: threads of a block striding along K together, and output columns (rows of W) per block (on an
#: H100, 8 warps x 2 rows measured 1-3 points faster than 4 x 4 on Q4_0/Q4_1/Q5_0 float32 x,
#: within the noise: scripts/gpu_q8_tune.py)
WARPS_PER_BLOCK = 4
ROWS_PER_BLOCK = 4
#: units of each of the R rows a thread loads before it multiplies any of them
UNROLL = 1

HEADER_Q8 = r"""
namespace oxg {

// q8 scales of one 32-value block of x (one 16-byte load): d, d * sum(qx) over values 0..15 and
// over 16..31 (the K types' scales change every 16 or 32 values), sum(x)
struct Q8S { float d, dlo, dhi, sx; };

// one lane's value v of a 32-value block (lane l holds value l): its 8-bit code, and the block's
// Q8S on every lane
__device__ __forceinline__ int quant8(float v, int lane, Q8S& s) {
  float amax = fabsf(v), sx = v;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    sx += __shfl_xor_sync(0xffffffffu, sx, o);
  }
  const float d = amax / 127.f;
  // NOTE: an all-zero block gives d = 0 and codes 0 (no 0 / 0)
  const int q = amax == 0.f ? 0 : (int)rintf(v / d);
  int own = q;  // the sum over this lane's half (offsets below 16 stay inside it)
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) own += __shfl_xor_sync(0xffffffffu, own, o);
  const int other = __shfl_xor_sync(0xffffffffu, own, 16);
  s.d = d; s.sx = sx;
  s.dlo = d * (float)(lane < 16 ? own : other); s.dhi = d * (float)(lane < 16 ? other : own);
  return q;
}

// the integer offset the q8 dot product takes off: values decode as s * (q - OFF) + b; Q8_0's
// bytes are used as signed (load_unit's XOR by 0x80 undone, which the compiler folds away)
template <int TYPE> struct Q8Off { static constexpr int OFF = TYPE == 4 ? 0 : Spec<TYPE>::OFF; };

// one weight block (a Unit of a 32-value type) times one q8 block of x: xw are x's 32 codes as 8
// words (value 4i + j in byte j of word i), s its scales
template <int TYPE>
__device__ __forceinline__ float q8_dot(const Unit& q, const int* xw, const Q8S& s) {
  int acc = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    // NOTE: q's bytes are 0..31 (Q8_0: signed after the XOR), so as signed bytes they are the same
    const uint32_t a = TYPE == 4 ? q.a[i] ^ 0x80808080u : q.a[i];
    const uint32_t b = TYPE == 4 ? q.b[i] ^ 0x80808080u : q.b[i];
    acc = __dp4a((int)a, xw[i], acc);
    acc = __dp4a((int)b, xw[4 + i], acc);
  }
  float v = q.sa * fmaf(s.d, (float)acc, -(float)Q8Off<TYPE>::OFF * (s.dlo + s.dhi));
  if constexpr (Spec<TYPE>::BIAS) v = fmaf(q.ba, s.sx, v);
  return v;
}

// one unit of a K type (two halves of 16 values, each with its own scale and bias: load_unit)
// times x's codes there: xa, xb the halves' 16 codes as 4 words, (da, dsa) and (db, dsb) the d of
// their q8 blocks and d * sum(codes) over the half. The bias multiplies the quantized x's sum,
// so the result is the exact product of W with the 8-bit x, like ggml's vec_dot_q4_K_q8_1.
template <int TYPE>
__device__ __forceinline__ float q8_dot_k(const Unit& q, const int* xa, const int* xb, float da, float dsa,
                                          float db, float dsb) {
  int ia = 0, ib = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    // NOTE: q's bytes are 0..63, the same as signed bytes
    ia = __dp4a((int)q.a[i], xa[i], ia);
    ib = __dp4a((int)q.b[i], xb[i], ib);
  }
  constexpr float OFF = (float)Spec<TYPE>::OFF;
  float v = q.sa * fmaf(da, (float)ia, -OFF * dsa) + q.sb * fmaf(db, (float)ib, -OFF * dsb);
  if constexpr (Spec<TYPE>::BIAS) v = fmaf(q.ba, dsa, fmaf(q.bb, dsb, v));
  return v;
}

// unit u of R rows of W (q) times x's codes there, added to acc[r][m] for m < M
template <int TYPE, int MAXM, int R>
__device__ __forceinline__ void unit_q8(const Unit (&q)[R], int u, const int8_t* xq, const Q8S* xs, int M, int K,
                                        int nb, float (&acc)[R][MAXM]) {
  // NOTE: xq and xs are this kernel's own pre-pass outputs (MLX allocations): 16-byte aligned
  if constexpr (TYPE <= 4) {  // a unit is one 32-value block: x's block u
#pragma unroll
    for (int m = 0; m < MAXM; ++m) {
      if (m < M) {
        const int4* px = reinterpret_cast<const int4*>(xq + (size_t)m * K + 32 * u);
        const int4 x0 = __ldg(px), x1 = __ldg(px + 1);
        const int xw[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
        const float4 sv = __ldg(reinterpret_cast<const float4*>(xs + (size_t)m * nb + u));
        const Q8S s = {sv.x, sv.y, sv.z, sv.w};
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r][m] += q8_dot<TYPE>(q[r], xw, s);
      }
    }
  } else {  // K types: the unit's halves are 16 values at xa and xb (unit_x), each inside one q8 block
    int xa, xb;
    unit_x<TYPE>(u, xa, xb);
    const bool hi = (xa >> 4) & 1;  // NOTE: xb - xa is 32 or 64: both halves sit at the same place in their block
#pragma unroll
    for (int m = 0; m < MAXM; ++m) {
      if (m < M) {
        const int4 va = __ldg(reinterpret_cast<const int4*>(xq + (size_t)m * K + xa));
        const int4 vb = __ldg(reinterpret_cast<const int4*>(xq + (size_t)m * K + xb));
        const float4 sa = __ldg(reinterpret_cast<const float4*>(xs + (size_t)m * nb + (xa >> 5)));
        const float4 sb = __ldg(reinterpret_cast<const float4*>(xs + (size_t)m * nb + (xb >> 5)));
        const int wa[4] = {va.x, va.y, va.z, va.w}, wb[4] = {vb.x, vb.y, vb.z, vb.w};
        const float dsa = hi ? sa.z : sa.y, dsb = hi ? sb.z : sb.y;
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r][m] += q8_dot_k<TYPE>(q[r], wa, wb, sa.x, dsa, sb.x, dsb);
      }
    }
  }
}

// y[m, n0 + r] for r < R, m < M: xq (M, K) codes, xs (M, K / 32) scales, W rows of ROW_BYTES bytes;
// each pass of a thread loads U units of each row before it multiplies any (more loads in flight)
template <int TYPE, typename TO, int MAXM, int R, int U>
__device__ __forceinline__ void gemv_q8(const int8_t* xq, const Q8S* xs, const uint8_t* w, TO* y, int M, int K,
                                        int N, size_t ROW_BYTES, float (*red)[R * MAXM]) {
  const int tid = threadIdx.x, nt = blockDim.x, n0 = blockIdx.x * R, nb = K >> 5;
  const uint8_t* rows[R];
#pragma unroll
  for (int r = 0; r < R; ++r) rows[r] = w + (size_t)min(n0 + r, N - 1) * ROW_BYTES;  // past N: computed, not stored
  float acc[R][MAXM];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < MAXM; ++m) acc[r][m] = 0.f;
  // NOTE: a misaligned W (a view at an odd offset) reads nothing and gives NaN: a misaligned load
  // would be a sticky fault that ends the process's CUDA context
  const bool w_ok = (reinterpret_cast<unsigned long long>(w) & (Spec<TYPE>::ALIGN - 1)) == 0;
  for (int u0 = tid; u0 < (w_ok ? nb : 0); u0 += nt * U) {
    Unit q[U][R];
#pragma unroll
    for (int j = 0; j < U; ++j)  // NOTE: past the row's end: its last unit again, loaded but not used
#pragma unroll
      for (int r = 0; r < R; ++r) load_unit<TYPE>(rows[r], min(u0 + j * nt, nb - 1), q[j][r]);
#pragma unroll
    for (int j = 0; j < U; ++j)
      if (u0 + j * nt < nb) unit_q8<TYPE, MAXM, R>(q[j], u0 + j * nt, xq, xs, M, K, nb, acc);
  }
  store_rows<TO, MAXM, R>(acc, w_ok, y, M, N, n0, red);
}

template <int TYPE, typename TO, int MAXM, int R, int U>
__device__ __forceinline__ void dispatch_q8(const int8_t* xq, const Q8S* xs, const uint8_t* w, TO* y, int M, int K,
                                            int N, int blocks, int block_bytes, float (*red)[R * MAXM]) {
  const size_t rb = (size_t)blocks * block_bytes;
  if constexpr (TYPE < ALL_TYPES) {
    gemv_q8<TYPE, TO, MAXM, R, U>(xq, xs, w, y, M, K, N, rb, red);
  } else {
#define OXG_GEMV_Q8(ID) gemv_q8<ID, TO, MAXM, R, U>(xq, xs, w, y, M, K, N, rb, red)
    switch (block_bytes) { OXG_TYPE_CASES(OXG_GEMV_Q8) }
#undef OXG_GEMV_Q8
  }
}

}  // namespace oxg
"""

HEADER = _mlx_cuda.HEADER + HEADER_Q8

SOURCE_QUANT = r"""
  // NOTE: one thread per value of x (M, K), K a multiple of 32: each warp is one q8 block; x may be
  // a view at any offset (scalar loads)
  const size_t n = (size_t)x_shape[0] * x_shape[1];
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {  // NOTE: n is a multiple of 32, so whole warps leave together (full-mask shuffles)
    oxg::Q8S s;
    xq[i] = (int8_t)oxg::quant8(static_cast<float>(x[i]), threadIdx.x & 31, s);
    if ((threadIdx.x & 31) == 0) reinterpret_cast<float4*>(xs)[i >> 5] = make_float4(s.d, s.dlo, s.dhi, s.sx);
  }
"""

SOURCE_GEMV = r"""
  // NOTE: xq (M, K), xs (M, K / 32 * 4), w (N, blocks per row, block bytes); TYPE 8 reads the type
  // from the block size (2..8 rows share one kernel per output dtype and rows rounded up)
  __shared__ float red[32][R * MAXM];
  oxg::dispatch_q8<TYPE, TO, MAXM, R, U>(xq, reinterpret_cast<const oxg::Q8S*>(xs), w, y, xq_shape[0], xq_shape[1],
                                      w_shape[0], w_shape[1], w_shape[2], red);
"""


@functools.lru_cache(maxsize=None)
def _kernel_quant() -> Any:
    # NOTE: the name is MLX's key for its on-disk cache of compiled kernels, which ignores the
    # source: a new source needs a new name
    return mx.fast.cuda_kernel(name="oxcore_ggml_quant_q8_v2", input_names=["x"], output_names=["xq", "xs"],
                               source=SOURCE_QUANT, header=HEADER)


@functools.lru_cache(maxsize=None)
def _kernel_gemv() -> Any:
    return mx.fast.cuda_kernel(name="oxcore_ggml_gemv_q8_v2c", input_names=["xq", "xs", "w"], output_names=["y"],
                               source=SOURCE_GEMV, header=HEADER)


def quantize(x: mx.array) -> tuple[mx.array, mx.array]:
    """x (M, K) (K a multiple of 32) as ggml's q8_1: int8 codes (M, K) and float32 scales
    (M, K / 32 * 4) holding ``d, d * sum(codes), sum(x), 0`` per block of 32, ``x ~ d * code``.

    >>> xq, xs = quantize(mx.ones((1, 64)))  # doctest: +SKIP
    """
    m, k = x.shape
    if k % 32:
        raise ValueError(f"q8 quantization takes rows of a multiple of 32 values, got {k}")
    return tuple(_kernel_quant()(inputs=[x], template=[("T", x.dtype)], grid=(m * k, 1, 1), threadgroup=(256, 1, 1),
                                 output_shapes=[(m, k), (m, k // 32 * 4)], output_dtypes=[mx.int8, mx.float32]))


def gemv_q8(x: mx.array, raw: mx.array, *, ggml_type: str, shape: tuple[int, int], warps: int | None = None,
            rows: int | None = None, unroll: int | None = None) -> mx.array:
    """``x @ W.T`` for x (..., K) with at most ``MAX_ROWS`` rows, x quantized to 8 bits per call
    (``quantize``), W's blocks read in place; y in x's dtype. ``warps``, ``rows`` and ``unroll``
    (units of each row a thread loads before multiplying: 1 or 2) override ``WARPS_PER_BLOCK``,
    ``ROWS_PER_BLOCK`` and ``UNROLL`` (tuning: ``scripts/gpu_q8_tune.py``).

    >>> y = gemv_q8(x, raw, ggml_type="Q4_0", shape=(4096, 4096))  # doctest: +SKIP
    """
    if x.dtype not in (mx.float16, mx.bfloat16, mx.float32):
        raise TypeError(f"cuda_gemv_q8 takes float16, bfloat16 or float32 x, got {x.dtype}")
    if ggml_type not in TYPES:
        raise ValueError(f"cuda_gemv_q8 reads {', '.join(TYPES)}, got {ggml_type}")
    n, k = (int(s) for s in shape)
    lead = x.shape[:-1]
    m = 1
    for s in lead:
        m *= s
    if m > MAX_ROWS:
        raise ValueError(f"cuda_gemv_q8 takes up to {MAX_ROWS} rows of x, got {m}")
    t = T.BY_NAME[ggml_type]
    warps = warps or WARPS_PER_BLOCK
    rows = rows or ROWS_PER_BLOCK
    unroll = unroll or UNROLL
    if unroll not in (1, 2):
        raise ValueError(f"unroll is 1 or 2, got {unroll}")
    xq, xs = quantize(x.reshape(m, k))
    threads = 32 * warps
    (y,) = _kernel_gemv()(
        inputs=[xq, xs, raw.reshape(n, k // t.block_size, t.type_size)],
        template=[("TO", x.dtype), ("MAXM", 1 << (m - 1).bit_length()), ("R", rows), ("U", unroll),
                  ("TYPE", TYPES[ggml_type] if m == 1 else _mlx_cuda._ALL_TYPES)],
        grid=(-(-n // rows) * threads, 1, 1), threadgroup=(threads, 1, 1),
        output_shapes=[(m, n)], output_dtypes=[x.dtype])
    return y.reshape(*lead, n)
