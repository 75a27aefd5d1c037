"""A tiny stock-keeping package with seeded problems (see ../README.md)."""

from inventory.models import Item, Inventory
from inventory.pricing import apply_discount, bulk_price

__all__ = ["Inventory", "Item", "apply_discount", "bulk_price"]
