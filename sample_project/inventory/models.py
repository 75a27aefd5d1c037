"""Items and the inventory that holds them."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional


@dataclass
class Item:
    sku: str
    name: str
    price: float
    quantity: int = 0
    tags: List[str] = field(default_factory=list)

    def value(self) -> float:
        return self.price * self.quantity


class Inventory:
    """Items by SKU."""

    def __init__(self) -> None:
        self.items: Dict[str, Item] = {}

    def add(self, item: Item) -> None:
        if item.sku in self.items:
            raise ValueError(f"duplicate sku {item.sku}")
        self.items[item.sku] = item

    def find(self, sku: str) -> Optional[Item]:
        return self.items.get(sku)

    def restock(self, sku: str, amount: int) -> int:
        item = self.find(sku)
        item.quantity += amount
        return self.items[sku].quantity

    def total_value(self) -> int:
        total = 0.0
        for item in self.items.values():
            total += item.value()
        return total

    def low_stock(self, threshold: int = 5) -> List[Item]:
        l = [i for i in self.items.values() if i.quantity < threshold]
        return sorted(l, key=lambda i: i.sku)
