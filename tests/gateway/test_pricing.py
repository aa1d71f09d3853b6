from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.contracts import PriceRow, Usage
from gateway.models import ModelPrice, Provider, ProviderKind
from gateway.pricing import (
    PriceBook,
    PricedCost,
    cost_of,
    model_id_candidates,
    price_request,
    quantize_cost,
    savings_from_cache,
)
from gateway.selectors import model_price_in_force, price_book_load
from gateway.usage import StreamUsage

JAN = datetime(2026, 1, 1, tzinfo=UTC)
JUL = datetime(2026, 7, 1, tzinfo=UTC)
VERTEX = 7
BEDROCK = 8


def price(
    price_id: int,
    model: str,
    rates: tuple[str, str, str, str, str],
    *,
    effective_from: datetime = JAN,
    provider_id: int | None = None,
) -> PriceRow:
    """rates: input, 5m write, 1h write, cache read, output (USD per million tokens)."""
    inp, write_5m, write_1h, read, out = (Decimal(rate) for rate in rates)
    return PriceRow(
        price_id=price_id,
        provider_id=provider_id,
        model=model,
        effective_from=effective_from,
        input_per_mtok=inp,
        output_per_mtok=out,
        cache_write_5m_per_mtok=write_5m,
        cache_write_1h_per_mtok=write_1h,
        cache_read_per_mtok=read,
    )


OPUS_5 = price(1, "claude-opus-5", ("5", "6.25", "10", "0.50", "25"))
SONNET_5 = price(2, "claude-sonnet-5", ("2", "2.50", "4", "0.20", "10"))
HAIKU_4_5 = price(3, "claude-haiku-4-5", ("1", "1.25", "2", "0.10", "5"))

# anthropic-protocol.md §5 example, as a stream: message_start then a cumulative message_delta.
CAPTURED_MESSAGE_START = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "content": [],
    "model": "claude-opus-5",
    "stop_reason": None,
    "stop_sequence": None,
    "usage": {
        "input_tokens": 50,
        "cache_creation_input_tokens": 248,
        "cache_read_input_tokens": 100000,
        "cache_creation": {"ephemeral_5m_input_tokens": 148, "ephemeral_1h_input_tokens": 100},
        "output_tokens": 1,
        "service_tier": "standard",
    },
}
CAPTURED_MESSAGE_DELTA = {
    "type": "message_delta",
    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
    "usage": {"output_tokens": 503, "server_tool_use": {"web_search_requests": 2}},
}


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (Usage(input_tokens=1_000_000), Decimal("5")),
        (Usage(cache_write_5m_tokens=1_000_000), Decimal("6.25")),
        (Usage(cache_write_1h_tokens=1_000_000), Decimal("10")),
        (Usage(cache_read_tokens=1_000_000), Decimal("0.5")),
        (Usage(output_tokens=1_000_000), Decimal("25")),
        (Usage(web_search_requests=1), Decimal("0.01")),
        (Usage(input_tokens=1), Decimal("0.000005")),
        (Usage(cache_write_5m_tokens=1), Decimal("0.00000625")),
        (Usage(cache_read_tokens=3), Decimal("0.0000015")),
        (Usage(), Decimal("0")),
    ],
)
def test_each_token_class_is_priced_at_its_own_rate(usage, expected):
    assert cost_of(usage, OPUS_5) == expected


def test_captured_stream_is_priced_exactly_per_the_reference():
    stream = StreamUsage()
    stream.on_message_start(CAPTURED_MESSAGE_START)
    stream.on_message_delta(CAPTURED_MESSAGE_DELTA)

    # 50×5 + 148×6.25 + 100×10 + 100000×0.50 + 503×25 = 64750 per million tokens,
    # plus 2 web searches at $0.01.
    assert cost_of(stream.usage, OPUS_5) == Decimal("0.08475")


def price_captured_stream(*, with_savings: bool) -> PricedCost:
    stream = StreamUsage()
    stream.on_message_start(CAPTURED_MESSAGE_START)
    stream.on_message_delta(CAPTURED_MESSAGE_DELTA)
    return price_request(
        usage=stream.usage,
        iterations=stream.iterations,
        model=stream.model,
        provider_id=None,
        at=JUL,
        book=PriceBook([OPUS_5, SONNET_5]),
        with_savings=with_savings,
    )


def test_captured_stream_priced_through_the_price_book():
    priced = price_captured_stream(with_savings=True)

    assert priced == PricedCost(
        cost_usd=Decimal("0.08475"),
        is_priced=True,
        price_ids=(1,),
        cache_savings_usd=Decimal("0.449315"),
    )


def test_settling_prices_the_cost_alone_to_the_same_digit():
    priced = price_captured_stream(with_savings=False)

    assert (priced.cost_usd, priced.price_ids, priced.cache_savings_usd) == (
        Decimal("0.08475"),
        (1,),
        Decimal(0),
    )


def test_cost_keeps_every_digit_beyond_the_default_decimal_precision():
    cost = cost_of(Usage(input_tokens=10**30 + 1), price(9, "m", ("1", "0", "0", "0", "0")))

    assert cost == Decimal("1000000000000000000000000.000001")


def test_a_float_price_is_refused():
    row = PriceRow(
        price_id=1,
        provider_id=None,
        model="claude-opus-5",
        effective_from=JAN,
        input_per_mtok=5.0,  # type: ignore[arg-type]
        output_per_mtok=Decimal("25"),
        cache_write_5m_per_mtok=Decimal("6.25"),
        cache_write_1h_per_mtok=Decimal("10"),
        cache_read_per_mtok=Decimal("0.5"),
    )

    with pytest.raises(TypeError):
        cost_of(Usage(input_tokens=1), row)


def test_a_float_token_count_is_refused():
    with pytest.raises(TypeError, match=r"^Token counts are integers, got float\.$"):
        cost_of(Usage(input_tokens=1.5), OPUS_5)  # type: ignore[arg-type]


token_counts = st.integers(min_value=0, max_value=10**12)
rates = st.decimals(min_value=0, max_value=10_000, places=4, allow_nan=False, allow_infinity=False)


@given(
    input_tokens=token_counts,
    output_tokens=token_counts,
    write_5m=token_counts,
    write_1h=token_counts,
    read=token_counts,
    web_searches=st.integers(min_value=0, max_value=10**6),
    prices=st.tuples(rates, rates, rates, rates, rates),
)
def test_cost_is_additive_over_token_classes_and_exact(
    input_tokens, output_tokens, write_5m, write_1h, read, web_searches, prices
):
    row = price(1, "m", tuple(str(rate) for rate in prices))
    usage = Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_write_5m_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
        cache_read_tokens=read,
        web_search_requests=web_searches,
    )
    per_class = [
        Usage(input_tokens=input_tokens),
        Usage(output_tokens=output_tokens),
        Usage(cache_write_5m_tokens=write_5m),
        Usage(cache_write_1h_tokens=write_1h),
        Usage(cache_read_tokens=read),
        Usage(web_search_requests=web_searches),
    ]
    in_rate, w5_rate, w1h_rate, read_rate, out_rate = (Fraction(rate) for rate in prices)
    exact = (
        input_tokens * in_rate
        + write_5m * w5_rate
        + write_1h * w1h_rate
        + read * read_rate
        + output_tokens * out_rate
    ) / 1_000_000 + web_searches * Fraction(1, 100)

    cost = cost_of(usage, row)

    assert type(cost) is Decimal
    assert cost == sum((cost_of(part, row) for part in per_class), Decimal(0))
    assert Fraction(cost) == exact


def test_savings_from_cache_compare_with_all_tokens_as_plain_input():
    usage = Usage(
        input_tokens=50,
        output_tokens=503,
        cache_write_5m_tokens=148,
        cache_write_1h_tokens=100,
        cache_read_tokens=100000,
        web_search_requests=2,
    )

    # uncached: 100298×5 + 503×25 = 514065; cached: 64750 (per million tokens)
    assert savings_from_cache(usage, OPUS_5) == Decimal("0.449315")


def test_savings_from_cache_are_negative_when_writes_are_never_read():
    usage = Usage(input_tokens=10, output_tokens=5, cache_write_5m_tokens=10000)

    # uncached: 10010×5 = 50050; cached: 10×5 + 10000×6.25 = 62550 (output cancels out)
    assert savings_from_cache(usage, OPUS_5) == Decimal("-0.0125")


def test_quantize_cost_rounds_half_up_to_ten_places():
    assert str(quantize_cost(Decimal("0.123456789012345"))) == "0.1234567890"
    assert str(quantize_cost(Decimal("0.00000000005"))) == "1E-10"
    assert str(quantize_cost(Decimal("0.06475"))) == "0.0647500000"


def test_row_in_force_changes_exactly_at_effective_from():
    old = price(1, "claude-sonnet-5", ("3", "3.75", "6", "0.30", "15"), effective_from=JAN)
    new = price(2, "claude-sonnet-5", ("2", "2.50", "4", "0.20", "10"), effective_from=JUL)
    book = PriceBook([new, old])

    assert book.lookup("claude-sonnet-5", None, JAN - timedelta(microseconds=1)) is None
    assert book.lookup("claude-sonnet-5", None, JAN) == old
    assert book.lookup("claude-sonnet-5", None, JUL - timedelta(microseconds=1)) == old
    assert book.lookup("claude-sonnet-5", None, JUL) == new
    assert book.lookup("claude-sonnet-5", None, JUL + timedelta(days=400)) == new


def test_request_is_priced_with_the_row_in_force_when_it_started():
    old = price(1, "claude-sonnet-5", ("3", "3.75", "6", "0.30", "15"), effective_from=JAN)
    new = price(2, "claude-sonnet-5", ("2", "2.50", "4", "0.20", "10"), effective_from=JUL)
    book = PriceBook([old, new])
    usage = Usage(input_tokens=1000, output_tokens=1000)

    def cost_at(at: datetime) -> PricedCost:
        return price_request(
            usage=usage, iterations=(), model="claude-sonnet-5", provider_id=None, at=at, book=book
        )

    assert cost_at(JUL - timedelta(seconds=1)).cost_usd == Decimal("0.018")
    assert cost_at(JUL).cost_usd == Decimal("0.012")
    assert cost_at(JUL).price_ids == (2,)


def test_provider_specific_price_beats_the_any_provider_price():
    vertex_price = price(
        5,
        "claude-opus-5",
        ("5.50", "6.875", "11", "0.55", "27.50"),
        effective_from=datetime(2026, 3, 1, tzinfo=UTC),
        provider_id=VERTEX,
    )
    book = PriceBook([OPUS_5, vertex_price])

    assert book.lookup("claude-opus-5", VERTEX, JUL) == vertex_price
    assert book.lookup("claude-opus-5", BEDROCK, JUL) == OPUS_5
    assert book.lookup("claude-opus-5", None, JUL) == OPUS_5


def test_any_provider_price_applies_before_the_provider_price_takes_effect():
    vertex_price = price(
        5,
        "claude-opus-5",
        ("5.50", "6.875", "11", "0.55", "27.50"),
        effective_from=JUL,
        provider_id=VERTEX,
    )
    book = PriceBook([OPUS_5, vertex_price])

    assert book.lookup("claude-opus-5", VERTEX, JUL - timedelta(seconds=1)) == OPUS_5


def test_provider_price_on_the_alias_beats_the_list_price_of_the_dated_id():
    list_price = price(1, "claude-haiku-4-5-20251001", ("1", "1.25", "2", "0.10", "5"))
    vertex_price = price(
        2, "claude-haiku-4-5", ("1.10", "1.375", "2.20", "0.11", "5.50"), provider_id=VERTEX
    )
    book = PriceBook([list_price, vertex_price])

    assert book.lookup("claude-haiku-4-5-20251001", VERTEX, JUL) == vertex_price
    assert book.lookup("claude-haiku-4-5-20251001", None, JUL) == list_price


def test_dated_model_id_falls_back_to_its_alias():
    book = PriceBook([HAIKU_4_5])

    assert book.lookup("claude-haiku-4-5-20251001", None, JUL) == HAIKU_4_5


def test_vertex_dated_model_id_falls_back_to_its_alias():
    book = PriceBook([HAIKU_4_5])

    assert book.lookup("claude-haiku-4-5@20251001", None, JUL) == HAIKU_4_5


def test_exact_dated_id_is_preferred_over_the_alias():
    dated = price(4, "claude-haiku-4-5-20251001", ("0.90", "1.125", "1.80", "0.09", "4.50"))
    book = PriceBook([HAIKU_4_5, dated])

    assert book.lookup("claude-haiku-4-5-20251001", None, JUL) == dated
    assert book.lookup("claude-haiku-4-5@20251001", None, JUL) == dated


def test_model_id_candidates_go_from_most_to_least_specific():
    assert model_id_candidates("claude-opus-5") == ("claude-opus-5",)
    assert model_id_candidates("claude-sonnet-4-5-20250929") == (
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-5",
    )
    assert model_id_candidates("claude-sonnet-4-5@20250929") == (
        "claude-sonnet-4-5@20250929",
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-5",
    )
    assert model_id_candidates("claude-opus-4-6-v1") == ("claude-opus-4-6-v1",)


def test_unknown_model_is_unpriced_never_zero():
    priced = price_request(
        usage=Usage(input_tokens=1000, output_tokens=10),
        iterations=(),
        model="gpt-9000",
        provider_id=None,
        at=JUL,
        book=PriceBook([OPUS_5]),
    )

    assert priced == PricedCost(cost_usd=None, is_priced=False, price_ids=())


def test_without_a_price_book_the_request_is_unpriced():
    priced = price_request(
        usage=Usage(input_tokens=1),
        iterations=(),
        model="claude-opus-5",
        provider_id=None,
        at=JUL,
        book=None,
    )

    assert (priced.cost_usd, priced.is_priced) == (None, False)


def test_iterations_are_priced_each_with_its_own_model():
    top_level = Usage(input_tokens=100, output_tokens=50, web_search_requests=1)
    iterations = (
        (None, Usage(input_tokens=180000, output_tokens=3500)),
        (
            "claude-opus-5",
            Usage(
                input_tokens=900,
                output_tokens=400,
                cache_write_1h_tokens=300,
                cache_read_tokens=2000,
            ),
        ),
        (None, Usage(input_tokens=100, output_tokens=50, cache_write_5m_tokens=40)),
    )

    priced = price_request(
        usage=top_level,
        iterations=iterations,
        model="claude-sonnet-5",
        provider_id=None,
        at=JUL,
        book=PriceBook([OPUS_5, SONNET_5]),
    )

    # sonnet-5: 180000×2 + 3500×10 = 395000; opus-5: 900×5 + 400×25 + 300×10 + 2000×0.50
    # = 18500; sonnet-5: 100×2 + 50×10 + 40×2.50 = 800 → 414300 per million, + 1 search.
    assert priced.cost_usd == Decimal("0.4243")
    assert priced.is_priced is True
    assert priced.price_ids == (2, 1)


def test_an_iteration_with_an_unknown_model_leaves_the_request_unpriced():
    priced = price_request(
        usage=Usage(input_tokens=100, output_tokens=50),
        iterations=(
            (None, Usage(input_tokens=100, output_tokens=50)),
            ("claude-advisor-x", Usage(input_tokens=10, output_tokens=5)),
        ),
        model="claude-sonnet-5",
        provider_id=None,
        at=JUL,
        book=PriceBook([SONNET_5]),
    )

    assert priced == PricedCost(cost_usd=None, is_priced=False, price_ids=())


def make_price(model: str, effective_from: datetime, inp: str, provider=None) -> ModelPrice:
    rate = Decimal(inp)
    return ModelPrice.objects.create(
        provider=provider,
        model=model,
        effective_from=effective_from,
        input_per_mtok=rate,
        output_per_mtok=rate * 5,
        cache_write_5m_per_mtok=rate * Decimal("1.25"),
        cache_write_1h_per_mtok=rate * 2,
        cache_read_per_mtok=rate / 10,
    )


def test_model_price_in_force_picks_the_row_in_force_from_the_database(
    db, django_assert_num_queries
):
    old = make_price("claude-test-9", JAN, "3")
    new = make_price("claude-test-9", JUL, "2")

    with django_assert_num_queries(1):
        before_change = model_price_in_force(
            model="claude-test-9-20260101", provider_id=None, at=JUL - timedelta(seconds=1)
        )
    at_change = model_price_in_force(model="claude-test-9", provider_id=None, at=JUL)

    assert before_change == PriceRow(
        price_id=old.pk,
        provider_id=None,
        model="claude-test-9",
        effective_from=JAN,
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"),
        cache_write_5m_per_mtok=Decimal("3.75"),
        cache_write_1h_per_mtok=Decimal("6"),
        cache_read_per_mtok=Decimal("0.3"),
    )
    assert at_change is not None
    assert at_change.price_id == new.pk
    assert (
        model_price_in_force(model="claude-test-9", provider_id=None, at=JAN - timedelta(1)) is None
    )


def test_model_price_in_force_prefers_the_provider_row_from_the_database(db):
    vertex = Provider.objects.create(
        name="vertex", kind=ProviderKind.VERTEX, base_url="https://127.0.0.1/vertex"
    )
    make_price("claude-test-9", JAN, "3")
    vertex_row = make_price("claude-test-9", JAN, "3.30", provider=vertex)

    in_force = model_price_in_force(model="claude-test-9@20260101", provider_id=vertex.pk, at=JUL)

    assert in_force is not None
    assert (in_force.price_id, in_force.provider_id) == (vertex_row.pk, vertex.pk)
    assert in_force.input_per_mtok == Decimal("3.30")


def test_price_book_load_reads_every_row_in_one_query(db, django_assert_num_queries):
    make_price("claude-test-9", JAN, "3")

    with django_assert_num_queries(1):
        book = price_book_load()

    assert len(book) == ModelPrice.objects.count()
    assert book.lookup("claude-test-9", None, JUL).input_per_mtok == Decimal("3")
