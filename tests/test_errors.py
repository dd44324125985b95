import numpy as np
import pytest

from opendojo.errors import UsageError, check_choice, check_int, check_positive, check_seed


def test_check_choice_names_argument_value_and_choices():
    assert check_choice("--precision", "fp32", ("fp32", "bf16")) == "fp32"
    with pytest.raises(UsageError, match=r"--precision: got 'fp8'; allowed: fp32, bf16"):
        check_choice("--precision", "fp8", ("fp32", "bf16"))


def test_check_int_accepts_numpy_ints_and_refuses_floats_and_bools():
    assert check_int("n", np.int64(3)) == 3
    for bad in (3.0, True, "3", None):
        with pytest.raises(UsageError, match="n: got"):
            check_int("n", bad)


def test_bounds_are_named_in_the_message():
    with pytest.raises(UsageError, match=r"steps: got 0; allowed: an integer ≥ 1"):
        check_positive("steps", 0)
    with pytest.raises(UsageError, match=r"in 0\.\.9223372036854775807"):
        check_seed("--seed", -1)
    with pytest.raises(UsageError):
        check_seed("--seed", 2**63)
    assert check_seed("--seed", 2**63 - 1) == 2**63 - 1


def test_usage_error_is_a_value_error():
    assert issubclass(UsageError, ValueError)


def test_printable_escapes_terminal_controls_and_surrogates():
    from opendojo.errors import printable

    assert printable("front cam") == "front cam"
    assert printable("\x1b[31mred\x07") == "\\x1b[31mred\\x07"
    assert printable("a\nb\r") == "a\\nb\\r"
    assert printable(b"caf\xe9".decode("utf-8", "surrogateescape")) == "caf\\udce9"
