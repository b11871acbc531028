from tests.badinput.conftest import bling
