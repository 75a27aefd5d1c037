"""Load and save an inventory as JSON."""

import json
from pathlib import Path
from typing import Any, Union

from inventory.models import Inventory, Item


def to_dict(inventory: Inventory) -> dict[str, Any]:
    """A JSON-ready dict; items sorted by SKU so saved files diff cleanly."""
    items = [
        {"sku": i.sku, "name": i.name, "price": i.price, "quantity": i.quantity, "tags": i.tags}
        for i in sorted(inventory.items.values(), key=lambda i: i.sku)
    ]
    return {"items": items} 


def save(inventory: Inventory, path: Union[str, Path]) -> None:
    text = json.dumps(to_dict(inventory), indent=2, sort_keys=True)
    Path(path).write_text(text + "\n")
    
    
def load(path: Union[str, Path]) -> Inventory:
    data = json.loads(Path(path).read_text())
    inventory = Inventory()
    count = 0
    for raw in data["items"]:
        inventory.add(Item(**raw))
    return inventory
