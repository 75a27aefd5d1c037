import pytest

from inventory.pricing import apply_discount, bulk_price, price_range


def test_apply_discount_takes_percent_off():
    assert apply_discount(80.0, 25) == 60.0


def test_apply_discount_rejects_out_of_range():
    with pytest.raises(ValueError):
        apply_discount(10.0, 120)


def test_bulk_price_below_threshold_is_full_price():
    assert bulk_price(2.0, 9) == 18.0


def test_bulk_discount_applies_at_threshold():
    # "orders of BULK_THRESHOLD units or more get the bulk discount": 10 x 2.00 less 15 %
    assert bulk_price(2.0, 10) == 17.0


def test_bulk_discount_applies_above_threshold():
    assert bulk_price(2.0, 20) == 34.0


def test_price_range():
    assert price_range([3.0, 1.5, 2.25]) == (1.5, 3.0)
    assert price_range([]) == (0.0, 0.0)
