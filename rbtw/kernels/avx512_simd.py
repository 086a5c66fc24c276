"""A minimal 16-lane SIMD vocabulary for Numba kernels, written as LLVM IR intrinsics.

Numba has no vector type, and LLVM does not turn a table look-up with data-dependent
indices into a register permute by itself.  These intrinsics give kernels two value types
that live in one vector register each:

    f32x16   16 float32 lanes       <16 x float>
    i32x16   16 int32 lanes         <16 x i32>

and the few operations the accumulate-only kernels need: load/store 16 floats, add,
load 16 uint32 words, and sums of table look-ups (``lookup6``, ``lookup_first``)
built on

    permute(T, i)[l] = T[i[l] & 31]      (16 look-ups in a 32-entry table: two registers)

This is one AVX-512F `vpermi2ps` instruction, which reads only the low 5 bits of each
index, so the kernels need no masking.  (On AMD Zen 4 it costs the same as the 16-entry
`vpermps`, so a 32-entry table is 5 bits of look-up per lane for the price of 4.)  Only the
AVX-512 kernels (rbtw.kernels.avx512) use it, and rbtw.kernels.isa runs them only where the
target has AVX-512F; generating it for another target raises at compile time.  No operation
multiplies.

Loads and stores are unchecked: a kernel must keep i + 16 <= len(array).  Arrays must be
1-D and C-contiguous.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core.extending import intrinsic, models, register_model

_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_VF = ir.VectorType(_F32, 16)
_VI = ir.VectorType(_I32, 16)


class F32x16Type(types.Type):
    def __init__(self):
        super().__init__(name="f32x16")


class I32x16Type(types.Type):
    def __init__(self):
        super().__init__(name="i32x16")


f32x16 = F32x16Type()
i32x16 = I32x16Type()


@register_model(F32x16Type)
class _F32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VF)


@register_model(I32x16Type)
class _I32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VI)


def _element_ptr(context, builder, arrty, arr, index, vector_type):
    """Pointer to arr[index], cast to a pointer to ``vector_type``."""
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.bitcast(builder.gep(data, [index]), vector_type.as_pointer())


@intrinsic
def vzero(typingctx):
    """f32x16 of zeros."""
    def codegen(context, builder, sig, args):
        return ir.Constant(_VF, None)
    return f32x16(), codegen


@intrinsic
def vload(typingctx, arr, i):
    """arr[i:i+16] (float32) as f32x16."""
    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1], _VF)
        return builder.load(ptr, align=4)
    return f32x16(arr, i), codegen


@intrinsic
def vstore(typingctx, arr, i, v):
    """arr[i:i+16] = v."""
    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1], _VF)
        builder.store(args[2], ptr, align=4)
    return types.void(arr, i, v), codegen


@intrinsic
def vadd(typingctx, a, b):
    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])
    return f32x16(a, b), codegen


@intrinsic
def vload_u32(typingctx, arr, i):
    """arr[i:i+16] (uint32) as i32x16."""
    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1], _VI)
        return builder.load(ptr, align=4)
    return i32x16(arr, i), codegen


CODE_BITS = 5          # bits of one look-up index
TABLE = 32             # entries of one table (two vector registers)
CODES_PER_WORD = 6     # 5-bit codes in one 32-bit word (bits 30, 31 unused)


def _permute(builder, lo, hi, idx):
    from .isa import target_features
    if "avx512f" not in target_features():
        raise RuntimeError("the AVX-512 kernels need a Numba target with avx512f")
    fn_type = ir.FunctionType(_VF, [_VF, _VI, _VF])
    fn = builder.module.declare_intrinsic("llvm.x86.avx512.vpermi2var.ps.512", fnty=fn_type)
    return builder.call(fn, [lo, idx, hi])


def _lookup_tree(builder, data, offset, words, count):
    """IR: sum over n < count of permute(table n, words >> 5n), as a balanced tree.

    Table n is data[offset + 32n : offset + 32n + 32]."""
    permute = _permute
    terms = []
    for n in range(count):
        tables = []
        for half in range(2):
            pos = builder.add(offset, ir.Constant(offset.type, TABLE * n + 16 * half))
            ptr = builder.bitcast(builder.gep(data, [pos]), _VF.as_pointer())
            tables.append(builder.load(ptr, align=4))
        idx = builder.lshr(words, ir.Constant(_VI, [CODE_BITS * n] * 16)) if n else words
        terms.append(permute(builder, tables[0], tables[1], idx))
    while len(terms) > 1:
        paired = [builder.fadd(a, b) for a, b in zip(terms[::2], terms[1::2])]
        terms = paired + terms[len(paired) * 2:]
    return terms[0]


@intrinsic
def lookup6(typingctx, t, offset, words):
    """Sum over n < 6 of t[offset + 32n + code_n] per lane, code_n = (words >> 5n) & 31.

    Lane l adds one entry of each of 6 consecutive 32-entry tables, chosen by the 6 codes
    of words[l].  t is float32, 1-D, and offset + 192 <= len(t).
    """
    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        return _lookup_tree(builder, data, args[1], args[2], CODES_PER_WORD)
    return f32x16(t, offset, words), codegen


@intrinsic
def lookup_first(typingctx, t, offset, words, count):
    """As lookup6 but over the first ``count`` codes only (1 <= count <= 6)."""
    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        count_v = args[3]
        done = builder.append_basic_block("lookup_first.done")
        counts = range(1, CODES_PER_WORD + 1)
        cases = [builder.append_basic_block(f"lookup_first.{k}") for k in counts]
        switch = builder.switch(count_v, cases[-1])
        for k, block in zip(counts, cases):
            switch.add_case(ir.Constant(count_v.type, k), block)
        results = []
        for k, block in zip(counts, cases):
            builder.position_at_end(block)
            results.append((_lookup_tree(builder, data, args[1], args[2], k), builder.block))
            builder.branch(done)
        builder.position_at_end(done)
        phi = builder.phi(_VF)
        for value, block in results:
            phi.add_incoming(value, block)
        return phi
    return f32x16(t, offset, words, count), codegen
