"""VNNI building blocks for the int8-activation GEMV and GEMM: one 32-weight block times 32
int8 activations with ``vpdpbusd``, written as LLVM IR through numba ``@intrinsic`` (plus
``unpack_*`` for the GEMM's unpacked rows, ``f16`` for float16 scales, ``prefetch``).

NOTE why IR and not plain numba: numba types ``int8 * int8`` as int64, and LLVM neither
vectorizes the fixed 32-element block loops nor finds ``vpdpbusd`` in them (measured: scalar
``imul``, 0.9 GB/s on Q8_0). Each intrinsic below emits the same few vector instructions that
ggml's AVX code uses: load the block's bytes, unpack them to unsigned 8-bit quants (0..255),
``vpdpbusd`` with the activations' signed 8-bit quants (8 int32 lanes, 4 products each), convert
to float32 and multiply-add into 8 float32 lanes ``acc[ao:ao + 8]`` with the block's scale. No
horizontal sum per block: the row sums its lanes once. NOTE: callers alternate two accumulators
(``ao`` 0 and 8): one chain of multiply-adds waits 4 cycles per block; two overlap.

NOTE: no bounds checks (a vector load cannot have one): callers pass offsets inside the block.

The unsigned quants are the stored values (``q`` in ggml's ``d * (q - offset) + m``); the offset
and min terms are added by the caller from the activations' per-block sums.

Usable only where the CPU has AVX512-VNNI + AVX512-VL, or AVX-VNNI (``available()``); the caller
falls back to the float32 kernels elsewhere.

Example:
    >>> import numpy as np
    >>> from oxcore_kernels_ggml import _numba_vnni as V
    >>> V.available() in (True, False)
    True
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_I1, _I8, _I32, _F32 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.FloatType()
_V16B, _V32B, _V8I, _V8F = ir.VectorType(_I8, 16), ir.VectorType(_I8, 32), ir.VectorType(_I32, 8), ir.VectorType(_F32, 8)


def available() -> bool:
    """True when this CPU runs ``vpdpbusd`` on 256-bit registers (AVX512-VNNI + VL, or AVX-VNNI)."""
    from ._cpu import vnni_cpu

    return vnni_cpu()


def _at(context, builder, aryty, ary, off, vecty):
    """Pointer to ``vecty`` at element ``off`` of a 1-d array (unaligned loads: align 1)."""
    a = context.make_array(aryty)(context, builder, ary)
    return builder.bitcast(builder.gep(a.data, [off]), vecty.as_pointer())


def _splat(builder, vecty, *vals):
    """``vecty`` whose lanes are ``vals`` each repeated evenly (1 value: broadcast; 2: halves)."""
    n, v = vecty.count, ir.Constant(vecty, ir.Undefined)
    for i in range(n):
        v = builder.insert_element(v, vals[i * len(vals) // n], _I32(i))
    return v


def _nibbles(builder, v, shift):
    """``(v >> shift) & 15`` on bytes (``shift`` an i64 value: 0 or 4)."""
    s = _splat(builder, v.type, builder.trunc(shift, _I8))
    return builder.and_(builder.lshr(v, s), _splat(builder, v.type, _I8(15)))


def _dot_acc(context, builder, sig, args, q):
    """acc[ao:ao+8] += float(vpdpbusd(0, q, xq[xo:xo+32])) * (s1 in lanes 0-3, s2 in lanes 4-7)."""
    acc_t, xq_t = sig.args[0], sig.args[2]
    acc, ao, xq, xo, s1, s2 = args[:6]
    xv = builder.load(_at(context, builder, xq_t, xq, xo, _V32B), align=1)
    dp = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V8I, [_V8I] * 3),
                                        "llvm.x86.avx512.vpdpbusd.256")
    d = builder.call(dp, [ir.Constant(_V8I, None), builder.bitcast(q, _V8I), builder.bitcast(xv, _V8I)])
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V8F, [_V8F] * 3), "llvm.fma.v8f32")
    ap = _at(context, builder, acc_t, acc, ao, _V8F)
    s = _splat(builder, _V8F, s1, s2)
    builder.store(builder.call(fma, [builder.sitofp(d, _V8F), s, builder.load(ap, align=4)]), ap)
    return context.get_dummy_value()


def _sig(acc, ao, xq, xo, s1, s2, w, *rest):
    return types.void(acc, ao, xq, xo, s1, s2, w, *rest)


def _q_q8(context, builder, w_t, w, wo):
    v = builder.load(_at(context, builder, w_t, w, wo, _V32B), align=1)
    return builder.xor(v, _splat(builder, _V32B, _I8(128)))


def _q_q4(context, builder, w_t, w, wo, qh):
    v = builder.load(_at(context, builder, w_t, w, wo, _V16B), align=1)
    lo = builder.and_(v, _splat(builder, _V16B, _I8(15)))
    hi = builder.lshr(v, _splat(builder, _V16B, _I8(4)))
    q = builder.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(_I32, 32), list(range(32))))
    bits = builder.zext(builder.bitcast(builder.trunc(qh, _I32), ir.VectorType(_I1, 32)), _V32B)
    return builder.or_(q, builder.shl(bits, _splat(builder, _V32B, _I8(4))))


def _q_k(context, builder, w_t, w, wo, shift, ho, hshift, hmask):
    q = _nibbles(builder, builder.load(_at(context, builder, w_t, w, wo, _V32B), align=1), shift)
    h = builder.load(_at(context, builder, w_t, w, ho, _V32B), align=1)
    h = builder.lshr(h, _splat(builder, _V32B, builder.trunc(hshift, _I8)))
    h = builder.and_(h, _splat(builder, _V32B, builder.trunc(hmask, _I8)))
    return builder.or_(q, builder.shl(h, _splat(builder, _V32B, _I8(4))))


@intrinsic
def dot_q8(typingctx, acc, ao, xq, xo, s1, s2, w, wo):
    """Q8_0's 32 signed bytes at ``w[wo:]``, read as unsigned ``q + 128`` (the caller subtracts
    128 times the activations' block sum)."""
    def codegen(context, builder, sig, args):
        return _dot_acc(context, builder, sig, args, _q_q8(context, builder, sig.args[6], *args[6:]))
    return _sig(acc, ao, xq, xo, s1, s2, w, wo), codegen


@intrinsic
def dot_q4(typingctx, acc, ao, xq, xo, s1, s2, w, wo, qh):
    """Q4_0/Q4_1/Q5_0/Q5_1: 16 bytes at ``w[wo:]``, low nibbles the first 16 quants, high
    nibbles the next 16; bit ``j`` of the uint32 ``qh`` is quant ``j``'s fifth bit (0: none)."""
    def codegen(context, builder, sig, args):
        return _dot_acc(context, builder, sig, args, _q_q4(context, builder, sig.args[6], *args[6:]))
    return _sig(acc, ao, xq, xo, s1, s2, w, wo, qh), codegen


@intrinsic
def dot_k(typingctx, acc, ao, xq, xo, s1, s2, w, wo, shift, ho, hshift, hmask):
    """K-quants: ``((w[wo:wo+32] >> shift) & 15) | (((w[ho:ho+32] >> hshift) & hmask) << 4)``
    (Q4_K: ``hmask`` 0; Q5_K: 1; Q6_K: 3)."""
    def codegen(context, builder, sig, args):
        return _dot_acc(context, builder, sig, args, _q_k(context, builder, sig.args[6], *args[6:]))
    return _sig(acc, ao, xq, xo, s1, s2, w, wo, shift, ho, hshift, hmask), codegen


@intrinsic
def dot_u8(typingctx, acc, ao, xq, xo, s1, s2, u, uo):
    """32 unsigned quants already unpacked at ``u[uo:]`` (the GEMM: unpacked once per weight row,
    dotted with every row of x)."""
    def codegen(context, builder, sig, args):
        q = builder.load(_at(context, builder, sig.args[6], args[6], args[7], _V32B), align=1)
        return _dot_acc(context, builder, sig, args, q)
    return _sig(acc, ao, xq, xo, s1, s2, u, uo), codegen


@intrinsic
def dot_u8s(typingctx, acc, ao, xq, xo, dx, sv, so, u, uo):
    """``dot_u8`` with the lanes' weight scales read from ``sv[so:so+8]`` (float32, unpacked with
    the quants) times x's block scale ``dx``: one multiply, no per-call scale shuffles."""
    def codegen(context, builder, sig, args):
        acc_t, xq_t, sv_t, u_t = sig.args[0], sig.args[2], sig.args[5], sig.args[7]
        acc, ao, xq, xo, dx, sv, so, u, uo = args
        q = builder.load(_at(context, builder, u_t, u, uo, _V32B), align=1)
        xv = builder.load(_at(context, builder, xq_t, xq, xo, _V32B), align=1)
        dp = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V8I, [_V8I] * 3),
                                            "llvm.x86.avx512.vpdpbusd.256")
        d = builder.call(dp, [ir.Constant(_V8I, None), builder.bitcast(q, _V8I), builder.bitcast(xv, _V8I)])
        s = builder.fmul(builder.load(_at(context, builder, sv_t, sv, so, _V8F), align=4), _splat(builder, _V8F, dx))
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V8F, [_V8F] * 3), "llvm.fma.v8f32")
        ap = _at(context, builder, acc_t, acc, ao, _V8F)
        builder.store(builder.call(fma, [builder.sitofp(d, _V8F), s, builder.load(ap, align=4)]), ap)
        return context.get_dummy_value()
    return types.void(acc, ao, xq, xo, dx, sv, so, u, uo), codegen


def _store(context, builder, sig, args, q):
    builder.store(q, _at(context, builder, sig.args[0], args[0], args[1], _V32B), align=1)
    return context.get_dummy_value()


@intrinsic
def unpack_q8(typingctx, u, uo, w, wo):
    """``u[uo:uo+32]`` = the unsigned quants ``dot_q8`` multiplies."""
    def codegen(context, builder, sig, args):
        return _store(context, builder, sig, args, _q_q8(context, builder, sig.args[2], *args[2:]))
    return types.void(u, uo, w, wo), codegen


@intrinsic
def unpack_q4(typingctx, u, uo, w, wo, qh):
    """``u[uo:uo+32]`` = the unsigned quants ``dot_q4`` multiplies."""
    def codegen(context, builder, sig, args):
        return _store(context, builder, sig, args, _q_q4(context, builder, sig.args[2], *args[2:]))
    return types.void(u, uo, w, wo, qh), codegen


@intrinsic
def unpack_k(typingctx, u, uo, w, wo, shift, ho, hshift, hmask):
    """``u[uo:uo+32]`` = the unsigned quants ``dot_k`` multiplies."""
    def codegen(context, builder, sig, args):
        return _store(context, builder, sig, args, _q_k(context, builder, sig.args[2], *args[2:]))
    return types.void(u, uo, w, wo, shift, ho, hshift, hmask), codegen


@intrinsic
def prefetch(typingctx, a, off):
    """Ask for the cache line holding ``a[off]`` (a read, kept in all levels): the GEMV asks
    for rows a few ahead, so the memory reads overlap the arithmetic of the current rows."""
    def codegen(context, builder, sig, args):
        p = builder.bitcast(_at(context, builder, sig.args[0], args[0], args[1], _I8), _I8.as_pointer())
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [_I8.as_pointer(), _I32, _I32, _I32]),
                                            "llvm.prefetch.p0i8")
        builder.call(fn, [p, _I32(0), _I32(3), _I32(1)])
        return context.get_dummy_value()
    return types.void(a, off), codegen


@intrinsic
def prefetch_l2(typingctx, a, off):
    """``prefetch`` into L2 only (``prefetcht2``): the stream of a memory-bound GEMV; into L1 the
    prefetches held the line fill buffers that the loads of the current rows need."""
    def codegen(context, builder, sig, args):
        p = builder.bitcast(_at(context, builder, sig.args[0], args[0], args[1], _I8), _I8.as_pointer())
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [_I8.as_pointer(), _I32, _I32, _I32]),
                                            "llvm.prefetch.p0i8")
        builder.call(fn, [p, _I32(0), _I32(1), _I32(1)])
        return context.get_dummy_value()
    return types.void(a, off), codegen


@intrinsic
def f16(typingctx, b, o):
    """The float16 at bytes ``b[o:o+2]`` as float32 (``vcvtph2ps`` with F16C): no table lookup."""
    def codegen(context, builder, sig, args):
        h = builder.load(_at(context, builder, sig.args[0], args[0], args[1], ir.IntType(16)), align=1)
        return builder.fpext(builder.bitcast(h, ir.HalfType()), _F32)
    return types.float32(b, o), codegen


#: the 32-quant types the row intrinsics take: bytes per block, where the quants start, and
#: the unsigned quants of a block (``o``: the block's byte offset, an i64)
_ROW_TYPES = {
    "q8_0": (34, lambda c, b, w_t, w, o: _q_q8(c, b, w_t, w, b.add(o, o.type(2)))),
    "q5_0": (22, lambda c, b, w_t, w, o: _q_q4(c, b, w_t, w, b.add(o, o.type(6)), b.zext(
        b.load(_at(c, b, w_t, w, b.add(o, o.type(2)), _I32), align=1), o.type))),
    "q4_0": (18, lambda c, b, w_t, w, o: _q_q4(c, b, w_t, w, b.add(o, o.type(2)), o.type(0))),
}


def _dot_rows(kind, rows):
    """The intrinsic ``dot_rows{rows}_{kind}`` (see ``dot_rows4_q8_0``) for ``rows`` weight rows."""
    block, quants = _ROW_TYPES[kind]

    def typer(typingctx, w, wo, stride, xq, xoff, dx, nb, y, yo):
        def codegen(context, builder, sig, args):
            w_t, xq_t, xoff_t, dx_t, y_t = sig.args[0], sig.args[3], sig.args[4], sig.args[5], sig.args[7]
            w, wo, stride, xq, xoff, dx, nb, y, yo = args
            i64 = wo.type
            dp = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V8I, [_V8I] * 3),
                                                "llvm.x86.avx512.vpdpbusd.256")
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V8F, [_V8F] * 3), "llvm.fma.v8f32")
            # NOTE: allocas, not memory the arrays may alias: LLVM keeps them in registers
            accs = [cgutils.alloca_once_value(builder, ir.Constant(_V8F, None)) for _ in range(rows)]
            bases = [builder.add(wo, builder.mul(stride, i64(r))) for r in range(rows)]
            with cgutils.for_range(builder, nb) as loop:
                i = loop.index
                xv = builder.bitcast(builder.load(_at(context, builder, xq_t, xq, builder.mul(i, i64(32)), _V32B),
                                                  align=1), _V8I)
                xo = builder.load(_at(context, builder, xoff_t, xoff, builder.mul(i, i64(8)), _V8I), align=4)
                d_x = builder.load(_at(context, builder, dx_t, dx, i, _F32), align=4)
                for r in range(rows):
                    o = builder.add(bases[r], builder.mul(i, i64(block)))
                    h = builder.load(_at(context, builder, w_t, w, o, ir.IntType(16)), align=1)
                    s = builder.fmul(builder.fpext(builder.bitcast(h, ir.HalfType()), _F32), d_x)
                    q = quants(context, builder, w_t, w, o)
                    d = builder.call(dp, [xo, builder.bitcast(q, _V8I), xv])
                    a = builder.call(fma, [builder.sitofp(d, _V8F), _splat(builder, _V8F, s), builder.load(accs[r])])
                    builder.store(a, accs[r])
            for r in range(rows):
                a = builder.load(accs[r])
                lanes = [builder.extract_element(a, _I32(j)) for j in range(8)]
                while len(lanes) > 1:  # NOTE: a tree: 3 dependent adds, not 7
                    lanes = [builder.fadd(lanes[j], lanes[j + 1]) for j in range(0, len(lanes), 2)]
                builder.store(lanes[0], _at(context, builder, y_t, y, builder.add(yo, i64(r)), _F32))
            return context.get_dummy_value()
        return types.void(w, wo, stride, xq, xoff, dx, nb, y, yo), codegen

    typer.__name__ = f"dot_rows{rows}_{kind}"
    return intrinsic(typer)


#: ``dot_rows4_q8_0(w, wo, stride, xq, xoff, dx, nb, y, yo)``: ``y[yo + r]`` = the dot product of
#: Q8_0 row ``r`` (bytes ``w[wo + r * stride:]``, ``nb`` blocks) with x's int8 blocks ``xq`` (block
#: scales ``dx``), for r in 0..3. The whole block loop is one piece of IR: the accumulators stay in
#: registers (an array's lanes are loaded and stored each block: LLVM cannot rule out aliasing),
#: the four rows share each x block's loads, and ``vpdpbusd`` starts from ``xoff`` (x's per-lane
#: sums times minus the type's offset, ``lane_offsets``), so reading the weights as unsigned
#: ``q + offset`` needs no correction after the block: the integer dot is exact, as in ggml.
dot_rows4_q8_0 = _dot_rows("q8_0", 4)
#: one row of ``dot_rows4_q8_0`` (the rows left over)
dot_rows1_q8_0 = _dot_rows("q8_0", 1)
#: ``dot_rows4_q8_0`` for Q5_0 (offset 16) and Q4_0 (offset 8), and their one-row versions
dot_rows4_q5_0, dot_rows1_q5_0 = _dot_rows("q5_0", 4), _dot_rows("q5_0", 1)
dot_rows4_q4_0, dot_rows1_q4_0 = _dot_rows("q4_0", 4), _dot_rows("q4_0", 1)


def _byte(context, builder, w_t, w, off):
    """The unsigned byte ``w[off]`` as an i32."""
    return builder.zext(builder.load(_at(context, builder, w_t, w, off, _I8), align=1), _I32)


def _half(context, builder, w_t, w, off):
    """The float16 at ``w[off:off + 2]`` as float32."""
    h = builder.load(_at(context, builder, w_t, w, off, ir.IntType(16)), align=1)
    return builder.fpext(builder.bitcast(h, ir.HalfType()), _F32)


def _q4_k_super(context, builder, w_t, w, o, xs, acc, mins, dp, fma):
    """One Q4_K super-block (144 bytes at ``o``) of one row into ``acc`` / ``mins`` (8 lanes);
    ``xs``: (per sub-block s: x vector; x's 8 block scales; their sums times scales), all
    vectors. The 6-bit scales and mins of the 8 sub-blocks are unpacked as 8-lane vectors (ggml's
    get_scale_min_k4, lane s = sub-block s): no scalar work per sub-block."""
    i64 = o.type
    d, dmin = _half(context, builder, w_t, w, o), _half(context, builder, w_t, w, builder.add(o, i64(2)))
    xvs, dx8, xsum8 = xs
    # NOTE: 16 bytes from the scales' 12 (the next 4 are quants: in bounds, unused)
    sb = builder.load(_at(context, builder, w_t, w, builder.add(o, i64(4)), _V16B), align=1)
    def pick(idx):
        return builder.zext(builder.shuffle_vector(sb, sb, ir.Constant(ir.VectorType(_I32, 8), idx)), _V8I)
    # NOTE: lane s holds the bytes get_scale_min_k4 reads for sub-block s
    P, Q = pick([0, 1, 2, 3, 8, 9, 10, 11]), pick([0, 1, 2, 3, 0, 1, 2, 3])
    R, S = pick([4, 5, 6, 7, 8, 9, 10, 11]), pick([4, 5, 6, 7, 4, 5, 6, 7])
    def c(v):
        return _splat(builder, _V8I, _I32(v))

    def hi2(v):  # NOTE: the top 2 bits of a byte as bits 4-5
        return builder.shl(builder.lshr(v, c(6)), c(4))
    low = ir.Constant(ir.VectorType(_I1, 8), [1, 1, 1, 1, 0, 0, 0, 0])  # NOTE: sub-blocks 0-3
    sc = builder.select(low, builder.and_(P, c(63)), builder.or_(builder.and_(P, c(15)), hi2(Q)))
    mn = builder.select(low, builder.and_(R, c(63)), builder.or_(builder.lshr(R, c(4)), hi2(S)))
    scales = builder.fmul(builder.fmul(builder.sitofp(sc, _V8F), _splat(builder, _V8F, d)), dx8)
    mv = builder.fmul(builder.sitofp(mn, _V8F), _splat(builder, _V8F, dmin))
    builder.store(builder.call(fma, [mv, xsum8, builder.load(mins)]), mins)
    a = builder.load(acc)
    for s in range(8):
        raw = builder.load(_at(context, builder, w_t, w, builder.add(o, i64(16 + 32 * (s // 2))), _V32B), align=1)
        q = _nibbles(builder, raw, i64(4 * (s % 2)))
        dot = builder.call(dp, [ir.Constant(_V8I, None), builder.bitcast(q, _V8I), xvs[s]])
        lane = builder.shuffle_vector(scales, scales, ir.Constant(ir.VectorType(_I32, 8), [s] * 8))
        a = builder.call(fma, [builder.sitofp(dot, _V8F), lane, a])
    builder.store(a, acc)


def _q6_k_super(context, builder, w_t, w, o, xs, acc, mins, dp, fma):
    """One Q6_K super-block (210 bytes at ``o``) of one row into ``acc``: ``xs`` per x block
    (x vector, x block scale, x's lane offsets for 32); 16-quant scales signed bytes."""
    i64 = o.type
    d = _half(context, builder, w_t, w, builder.add(o, i64(208)))
    # NOTE: the 16 signed scales as one vector, converted once; each x block takes its two
    # (lanes 0-3, 4-7) with one shuffle, not two byte loads and conversions (Q6_K was 1.6x
    # Q4_K's time per weight, hot in cache). Same products as before: scale * (d * dx)
    sc16 = builder.load(_at(context, builder, w_t, w, builder.add(o, i64(192)), _V16B), align=1)
    scf = builder.sitofp(builder.bitcast(sc16, ir.VectorType(_I8, 16)), ir.VectorType(_F32, 16))
    a = builder.load(acc)
    for half in range(2):
        ql, qh, sc = 64 * half, 128 + 32 * half, 8 * half
        for t in range(4):
            q = _q_k(context, builder, w_t, w, builder.add(o, i64(ql + 32 * (t & 1))), i64(4 * (t >> 1)),
                     builder.add(o, i64(qh)), i64(2 * t), i64(3))
            xv, dx, xo = xs[4 * half + t]
            pick = builder.shuffle_vector(scf, scf, ir.Constant(ir.VectorType(_I32, 8),
                                                                [sc + 2 * t] * 4 + [sc + 2 * t + 1] * 4))
            dot = builder.call(dp, [xo, builder.bitcast(q, _V8I), xv])
            scale = builder.fmul(pick, _splat(builder, _V8F, builder.fmul(d, dx)))
            a = builder.call(fma, [builder.sitofp(dot, _V8F), scale, a])
    builder.store(a, acc)


_K_TYPES = {"q4_k": (144, _q4_k_super), "q6_k": (210, _q6_k_super)}


def _dot_rows_k(kind, rows):
    """``dot_rows{rows}_{kind}`` for the K-quants: as ``dot_rows4_q8_0`` over super-blocks of 256
    (``nb``: super-blocks), with ``xs`` (per 32-block: x's block sum times its scale, Q4_K's
    mins) and ``xoff`` (lane offsets for 32, Q6_K's offset)."""
    block, superblock = _K_TYPES[kind]

    def typer(typingctx, w, wo, stride, xq, xoff, dx, xsum, nb, y, yo):
        def codegen(context, builder, sig, args):
            w_t, xq_t, xoff_t, dx_t, xs_t, y_t = (sig.args[j] for j in (0, 3, 4, 5, 6, 8))
            w, wo, stride, xq, xoff, dx, xsum, nb, y, yo = args
            i64 = wo.type
            dp = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V8I, [_V8I] * 3),
                                                "llvm.x86.avx512.vpdpbusd.256")
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V8F, [_V8F] * 3), "llvm.fma.v8f32")
            accs = [cgutils.alloca_once_value(builder, ir.Constant(_V8F, None)) for _ in range(rows)]
            mins = [cgutils.alloca_once_value(builder, ir.Constant(_V8F, None)) for _ in range(rows)]
            bases = [builder.add(wo, builder.mul(stride, i64(r))) for r in range(rows)]
            with cgutils.for_range(builder, nb) as loop:
                i = loop.index
                xs = []
                for s in range(8):  # NOTE: x's 8 blocks of this super-block, loaded once for every row
                    b = builder.add(builder.mul(i, i64(8)), i64(s))
                    xv = builder.bitcast(builder.load(_at(context, builder, xq_t, xq, builder.mul(b, i64(32)), _V32B),
                                                      align=1), _V8I)
                    if kind == "q4_k":
                        xs.append(xv)
                    else:
                        d_x = builder.load(_at(context, builder, dx_t, dx, b, _F32), align=4)
                        third = builder.load(_at(context, builder, xoff_t, xoff, builder.mul(b, i64(8)), _V8I), align=4)
                        xs.append((xv, d_x, third))
                if kind == "q4_k":  # NOTE: the 8 block scales and sums as vectors (lane s: block s)
                    b8 = builder.mul(i, i64(8))
                    xs = (xs, builder.load(_at(context, builder, dx_t, dx, b8, _V8F), align=4),
                          builder.load(_at(context, builder, xs_t, xsum, b8, _V8F), align=4))
                for r in range(rows):
                    o = builder.add(bases[r], builder.mul(i, i64(block)))
                    superblock(context, builder, w_t, w, o, xs, accs[r], mins[r], dp, fma)
            for r in range(rows):
                a = builder.load(accs[r])
                lanes = [builder.extract_element(a, _I32(j)) for j in range(8)]
                while len(lanes) > 1:
                    lanes = [builder.fadd(lanes[j], lanes[j + 1]) for j in range(0, len(lanes), 2)]
                m = builder.load(mins[r])
                mlanes = [builder.extract_element(m, _I32(j)) for j in range(8)]
                while len(mlanes) > 1:
                    mlanes = [builder.fadd(mlanes[j], mlanes[j + 1]) for j in range(0, len(mlanes), 2)]
                total = builder.fsub(lanes[0], mlanes[0])  # NOTE: Q4_K's mins (0 for Q6_K)
                builder.store(total, _at(context, builder, y_t, y, builder.add(yo, i64(r)), _F32))
            return context.get_dummy_value()
        return types.void(w, wo, stride, xq, xoff, dx, xsum, nb, y, yo), codegen

    typer.__name__ = f"dot_rows{rows}_{kind}"
    return intrinsic(typer)


#: ``dot_rows4_q4_k(w, wo, stride, xq, xoff, dx, xsum, nb, y, yo)``: ``dot_rows4_q8_0`` for Q4_K
#: (``xsum``: x's block sums times their scales, per 32, for the mins) and Q6_K (``xoff``: lane
#: offsets for 32); ``nb`` counts super-blocks of 256. Scales and mins are unpacked in registers.
dot_rows4_q4_k, dot_rows1_q4_k = _dot_rows_k("q4_k", 4), _dot_rows_k("q4_k", 1)
dot_rows4_q6_k, dot_rows1_q6_k = _dot_rows_k("q6_k", 4), _dot_rows_k("q6_k", 1)
