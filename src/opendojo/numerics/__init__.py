"""opendojo.numerics: the CFloat standard (Tesla's configurable floating point), bit-exact and fast.

Formats are data (:mod:`formats`); :func:`encode`/:func:`decode`/:func:`fake_quantize` convert numpy
arrays and torch tensors; :class:`Flags` counts exceptions; :func:`choose_bias` picks a tensor's bias;
:class:`CFloatTensor` with :func:`add`, :func:`mul`, :func:`fma`, :func:`matmul` is the arithmetic;
:mod:`opendojo.numerics.reference` is the slow exact oracle everything is tested against.
"""

from opendojo.numerics.arithmetic import CFloatTensor, add, fma, matmul, mul
from opendojo.numerics.bias import choose_bias
from opendojo.numerics.codec import decode, decode_table, encode, fake_quantize
from opendojo.numerics.flags import Flags
from opendojo.numerics.formats import (
    BF16,
    BIASES,
    CFLOAT8_1_4_3,
    CFLOAT8_1_5_2,
    CFLOAT16_SHP,
    CFLOAT16_UHP,
    FORMATS,
    FP16,
    FP32,
    FP64,
    CFloatFormat,
    IEEEFormat,
    get_format,
)
from opendojo.numerics.rounding import ROUNDINGS, RoundMode, check_rounding

__all__ = [
    "BIASES",
    "BF16",
    "CFLOAT8_1_4_3",
    "CFLOAT8_1_5_2",
    "CFLOAT16_SHP",
    "CFLOAT16_UHP",
    "FORMATS",
    "FP16",
    "FP32",
    "FP64",
    "ROUNDINGS",
    "RoundMode",
    "CFloatFormat",
    "CFloatTensor",
    "Flags",
    "IEEEFormat",
    "add",
    "check_rounding",
    "choose_bias",
    "decode",
    "decode_table",
    "encode",
    "fake_quantize",
    "fma",
    "get_format",
    "matmul",
    "mul",
]
