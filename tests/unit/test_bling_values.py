"""Conversion of Bling's JSON values: exact decimals, text identifiers, São Paulo times, tolerance of garbage."""
import datetime
import decimal
import json

from shared import jsonutil
from shared.bling_values import as_date, as_decimal, as_id, as_int, as_list, as_local_datetime, as_text


def test_decimals_stay_exact():
    assert as_decimal(decimal.Decimal("0.1")) + as_decimal(decimal.Decimal("0.2")) == decimal.Decimal("0.3")
    assert as_decimal("19.90") == decimal.Decimal("19.90")
    assert as_decimal("abc") is None and as_decimal(True) is None and as_decimal("NaN") is None


def test_identifiers_stay_text_and_zero_is_no_id():
    assert as_text(35210712345678000190550010000012341000012345) == "35210712345678000190550010000012341000012345"
    assert as_text("00123") == "00123"
    assert as_id(0) is None and as_id(17) == 17 and as_int("12") == 12 and as_int("1.5") is None


def test_sao_paulo_wall_time_becomes_the_right_instant():
    value = as_local_datetime("2026-01-01 00:00:00", "America/Sao_Paulo")
    assert value.astimezone(datetime.UTC) == datetime.datetime(2026, 1, 1, 3, tzinfo=datetime.UTC)
    assert as_local_datetime("0000-00-00 00:00:00", "America/Sao_Paulo") is None
    assert as_date("0000-00-00") is None and as_date("2026-02-28") == datetime.date(2026, 2, 28)


def test_null_lists_are_empty_lists():
    assert as_list(None) == [] and as_list([{"a": 1}, "junk"]) == [{"a": 1}]


def test_raw_json_keeps_decimal_text_exactly():
    value = {"valor": decimal.Decimal("1234.5600"), "itens": [{"q": decimal.Decimal("1.5")}], "nome": "Açaí"}
    text = jsonutil.dumps(value)
    assert json.loads(text, parse_float=decimal.Decimal) == value
    assert "1234.5600" in text and "Açaí" in text
