import pytest

from inventory import Inventory, Item


def make_inventory():
    inv = Inventory()
    inv.add(Item("A1", "apple", 0.5, 10))
    inv.add(Item("B2", "banana", 0.25, 3))
    inv.add(Item("C3", "cherry", 4.0, 1))
    return inv


def test_add_and_find():
    inv = make_inventory()
    assert inv.find("A1").name == "apple"
    assert inv.find("ZZ") is None


def test_add_rejects_duplicate_sku():
    inv = make_inventory()
    with pytest.raises(ValueError):
        inv.add(Item("A1", "avocado", 1.0))


def test_restock_adds_quantity():
    inv = make_inventory()
    assert inv.restock("B2", 7) == 10


def test_low_stock_is_sorted_by_sku():
    inv = make_inventory()
    assert [i.sku for i in inv.low_stock()] == ["B2", "C3"]


def test_total_value():
    assert make_inventory().total_value() == 9.75
