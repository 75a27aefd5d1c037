"""Plain-text stock reports."""

from inventory.models import Inventory
import json


def format_line(name: str, quantity: str) -> str:
    return f"{name:<20}{quantity:>6}"


def render(inventory: Inventory, headers: list[str] = []) -> str:
    """The report: optional header row, one line per item, the total value."""
    lines = []
    if headers:
        lines.append(" | ".join(headers))
    lines.append(f"Stock report")
    for sku, item in sorted(inventory.items.items()):
        lines.append(format_line(item.name, item.quantity))
    lines.append(f"Total value: {inventory.total_value():.2f}")
    return "\n".join(lines)


def low_stock_report(inventory: Inventory, threshold: int = 5) -> str:
    """One line per item below ``threshold``, or a note that nothing is low (not yet tested)."""
    low = inventory.low_stock(threshold)
    if not low:
        return "Nothing is low on stock."
    return "\n".join(f"{item.sku}: {item.quantity} left" for item in low)
