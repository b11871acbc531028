"""Account ids (slugs) and the schema and role names they map to."""
import re

import pytest

from shared.accounts import account_for_schema, parse_account_id, reader_role_for, schema_for


@pytest.mark.parametrize("slug", ["abc", "lojas-stilli", "a1b", "loja-2", "x" * 40, "a-b-c-d", "a9" + "z" * 38])
def test_valid_slugs_are_returned_unchanged(slug):
    assert parse_account_id(slug) == slug


@pytest.mark.parametrize("value, reason", [
    ("Lojas-Stilli", "slug"), ("LOJA", "slug"),                       # uppercase
    ("lojas_stilli", "slug"),                                        # underscore (would collide with schema names)
    ("1loja", "slug"), ("-loja", "slug"),                            # leading digit / hyphen
    ("loja-", "slug"), ("lojas--stilli", "slug"),                    # trailing hyphen, double hyphen
    ("ab", "characters"), ("", "characters"), ("a" * 41, "characters"),  # too short / too long
    ("lojá", "slug"), ("loja\u0430", "slug"), ("ｌｏｊａ", "slug"),        # unicode (accent, Cyrillic a, fullwidth)
    ("loja stilli", "slug"), ("loja.x", "slug"), ("loja\n", "slug"), ("loja;drop", "slug"),
])
def test_invalid_slugs_are_refused_with_a_message_that_says_what_to_do(value, reason):
    with pytest.raises(ValueError, match=reason) as info:
        parse_account_id(value)
    assert "account id" in str(info.value)


@pytest.mark.parametrize("value", [None, 12, b"loja"])
def test_a_non_text_account_id_is_refused(value):
    with pytest.raises(ValueError, match="text slug"):
        parse_account_id(value)


def test_schema_and_role_names_are_plain_identifiers_mapped_one_to_one():
    assert schema_for("lojas-stilli") == "bling_lojas_stilli"
    assert reader_role_for("lojas-stilli") == "bling_bi_lojas_stilli"
    assert schema_for("abc") == "bling_abc"
    identifier = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
    longest = "a" + "-b" * 19 + "c"
    assert len(longest) == 40
    for account in ("abc", "lojas-stilli", longest):
        assert identifier.match(schema_for(account)) and identifier.match(reader_role_for(account))
        assert account_for_schema(schema_for(account)) == account
    assert schema_for("a-bc") != schema_for("ab-c")


def test_schema_and_role_refuse_an_invalid_account():
    with pytest.raises(ValueError):
        schema_for("Bad_Slug")
    with pytest.raises(ValueError):
        reader_role_for("x")


@pytest.mark.parametrize("schema", ["public", "bling_", "bling_ab", "bling_Loja", "bling_a__b", "bi_loja"])
def test_only_account_schemas_map_back_to_an_account(schema):
    with pytest.raises(ValueError):
        account_for_schema(schema)
