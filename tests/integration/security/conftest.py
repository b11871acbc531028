from tests.integration.badinput.conftest import bling
