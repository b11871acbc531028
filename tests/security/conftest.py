from tests.badinput.conftest import bling  # noqa: F401 - the same authorized sandbox with two stored invoices
