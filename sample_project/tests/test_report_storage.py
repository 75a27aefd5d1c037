from inventory import Inventory, Item
from inventory.report import render
from inventory.storage import load, save


def test_render_lists_items_and_total():
    inv = Inventory()
    inv.add(Item("A1", "apple", 0.5, 10))
    text = render(inv)
    assert "Stock report" in text
    assert "apple" in text
    assert text.endswith("Total value: 5.00")


def test_save_and_load_round_trip(tmp_path):
    inv = Inventory()
    inv.add(Item("A1", "apple", 0.5, 10, ["fruit"]))
    path = tmp_path / "stock.json"
    save(inv, path)
    again = load(path)
    assert again.find("A1") == inv.find("A1")
