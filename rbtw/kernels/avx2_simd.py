"""An 8-lane SIMD vocabulary for the AVX2 kernels, written as LLVM IR intrinsics.

Value types (one 256-bit register each):

    f32x8   8 float32 lanes     <8 x float>
    i32x8   8 int32 lanes       <8 x i32>

Operations: load/store 8 floats, add, subtract, load 8 uint32 words, and

    lookup8(t, o, words, s)[l] = t[o + ((words[l] >> s) & 7)]

8 look-ups in one 8-entry float table: one ``vpermps`` (AVX2), which reads only the low
3 bits of each index, so no masking.  No operation multiplies.  Only the AVX2 kernels use
this module, and rbtw.kernels.isa runs them only where the target has AVX2; generating
``lookup8`` for another target raises at compile time.

Loads and stores are unchecked: a kernel must keep i + 8 <= len(array).  Arrays must be
1-D and C-contiguous.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core.extending import intrinsic, models, register_model

_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_VF = ir.VectorType(_F32, 8)
_VI = ir.VectorType(_I32, 8)


class F32x8Type(types.Type):
    def __init__(self):
        super().__init__(name="f32x8")


class I32x8Type(types.Type):
    def __init__(self):
        super().__init__(name="i32x8")


f32x8 = F32x8Type()
i32x8 = I32x8Type()


@register_model(F32x8Type)
class _F32x8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VF)


@register_model(I32x8Type)
class _I32x8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VI)


def _element_ptr(context, builder, arrty, arr, index, vector_type):
    """Pointer to arr[index], cast to a pointer to ``vector_type``."""
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.bitcast(builder.gep(data, [index]), vector_type.as_pointer())


@intrinsic
def vzero8(typingctx):
    """f32x8 of zeros."""
    def codegen(context, builder, sig, args):
        return ir.Constant(_VF, None)
    return f32x8(), codegen


@intrinsic
def vload8(typingctx, arr, i):
    """arr[i:i+8] (float32) as f32x8."""
    def codegen(context, builder, sig, args):
        return builder.load(_element_ptr(context, builder, sig.args[0], args[0], args[1], _VF), align=4)
    return f32x8(arr, i), codegen


@intrinsic
def vstore8(typingctx, arr, i, v):
    """arr[i:i+8] = v."""
    def codegen(context, builder, sig, args):
        builder.store(args[2], _element_ptr(context, builder, sig.args[0], args[0], args[1], _VF), align=4)
    return types.void(arr, i, v), codegen


@intrinsic
def vadd8(typingctx, a, b):
    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])
    return f32x8(a, b), codegen


@intrinsic
def vsub8(typingctx, a, b):
    def codegen(context, builder, sig, args):
        return builder.fsub(args[0], args[1])
    return f32x8(a, b), codegen


@intrinsic
def vwords8(typingctx, arr, i):
    """arr[i:i+8] (uint32) as i32x8."""
    def codegen(context, builder, sig, args):
        return builder.load(_element_ptr(context, builder, sig.args[0], args[0], args[1], _VI), align=4)
    return i32x8(arr, i), codegen


def _require_avx2():
    from .isa import target_features
    if "avx2" not in target_features():
        raise RuntimeError("the AVX2 kernels need a Numba target with avx2")


@intrinsic
def lookup8(typingctx, t, o, words, shift):
    """t[o + ((words >> shift) & 7)] per lane: t float32 1-D, o + 8 <= len(t)."""
    def codegen(context, builder, sig, args):
        _require_avx2()
        table = builder.load(_element_ptr(context, builder, sig.args[0], args[0], args[1], _VF), align=4)
        s = builder.trunc(args[3], _I32) if args[3].type.width > 32 else args[3]
        lanes = builder.insert_element(ir.Constant(_VI, None), s, ir.Constant(_I32, 0))
        lanes = builder.shuffle_vector(lanes, lanes, ir.Constant(_VI, [0] * 8))
        fn = builder.module.declare_intrinsic("llvm.x86.avx2.permps",
                                              fnty=ir.FunctionType(_VF, [_VF, _VI]))
        return builder.call(fn, [table, builder.lshr(args[2], lanes)])
    return f32x8(t, o, words, shift), codegen
