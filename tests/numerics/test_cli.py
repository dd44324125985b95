"""`dojo numerics formats|table|encode`."""

import pytest

from opendojo.cli import main


def test_formats_lists_every_format(capsys):
    assert main(["numerics", "formats"]) == 0
    out = capsys.readouterr().out
    for name in ("cfloat8_1_4_3", "cfloat8_1_5_2", "cfloat16_shp", "cfloat16_uhp"):
        assert f"| {name} |" in out
    assert "| 480 |" in out


def test_table_prints_all_256_values_of_an_8bit_format(capsys):
    assert main(["numerics", "table", "--format", "cfloat8_1_4_3", "--bias", "7"]) == 0
    out = capsys.readouterr().out
    assert "max 480" in out
    assert out.splitlines()[-1].split()[-1] == "-480"  # the last code, 0xFF
    assert "0x38 |           1" in out


def test_table_of_a_16bit_format_has_one_line_per_exponent(capsys):
    assert main(["numerics", "table", "--format", "cfloat16_uhp"]) == 0
    out = capsys.readouterr().out
    assert "bias 31" in out and "0xFC00..0xFFFF" in out


def test_encode_shows_codes_values_and_flags(capsys):
    assert main(["numerics", "encode", "--bias", "7", "--", "1.0625", "-1e9", "nan"]) == 0
    out = capsys.readouterr().out
    assert "-> 0x38 -> 1.0" in out and "-> 0xFF -> -480.0" in out
    assert "invalid=1" in out and "overflow=1" in out


def test_bad_format_and_bias_are_clean_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["numerics", "table", "--format", "e4m3"])
    assert exit_info.value.code == 2
    assert "cfloat8_1_4_3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["numerics", "table", "--bias", "64"])
    assert "bias: got 64; allowed: an integer in 0..63" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["numerics", "table", "--bias", "seven"])
    assert "bias: got 'seven'; allowed: an integer in 0..63" in capsys.readouterr().err
    assert main(["numerics", "encode", "--rounding", "up", "1.0"]) == 2
    assert "--rounding: got 'up'; allowed: nearest, stochastic, toward_zero" in capsys.readouterr().err


def test_encode_rounding_modes_are_the_numerics_vocabulary(capsys):
    from opendojo.numerics import ROUNDINGS

    for mode in ROUNDINGS:
        assert main(["numerics", "encode", "--rounding", mode, "--bias", "7", "1.0625"]) == 0
    out = capsys.readouterr().out
    assert "-> 0x38 -> 1.0" in out  # a tie of 1.0 and 1.125: nearest-even and truncation agree
