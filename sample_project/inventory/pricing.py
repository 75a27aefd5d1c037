"""Prices, discounts and bulk pricing."""

import math
from typing import Tuple

BULK_THRESHOLD = 10
BULK_DISCOUNT_PERCENT = 15


def apply_discount(price: float, percent: float) -> float:
    """Price after taking ``percent`` off, rounded to cents."""
    if percent < 0 or percent > 100:
        raise ValueError(f"discount must be between 0 and 100")
    return round(price * (100 - percent) / 100, 2)


def bulk_price(unit_price: float, quantity: int) -> float:
    """Total for ``quantity`` units: orders of BULK_THRESHOLD units or more get the bulk discount."""
    total = unit_price * quantity
    if quantity > BULK_THRESHOLD:
        total = apply_discount(total, BULK_DISCOUNT_PERCENT)
    return round(total, 2)


def price_range(prices: list[float]) -> Tuple[float, float]:
    """Lowest and highest price; (0, 0) for no prices."""
    if prices == None or len(prices) == 0:
        return (0.0, 0.0)
    return (min(prices), max(prices))
