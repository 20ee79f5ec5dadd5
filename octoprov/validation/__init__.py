"""Small pure checkers for provisioning input, one concept per module.

Each ``check_*`` returns the normalised value or raises ``ValueError`` with a short
human message. The message never names the field: the caller knows which field it
checked and reports the message under that field's path.
"""

from octoprov.validation.domains import (
    check_account_name,
    check_distinguished_name,
    check_fqdn,
    check_ou_in_domain,
)
from octoprov.validation.hostnames import check_hostname, check_windows_computer_name
from octoprov.validation.ipv4 import check_ipv4, check_static_network, parse_subnet
from octoprov.validation.linux import check_linux_user_name, check_shell_command, check_ssh_public_key
from octoprov.validation.locales import WINDOWS_LANGUAGES, check_language
from octoprov.validation.macs import canonical_mac
from octoprov.validation.names import (
    check_display_name,
    check_parameter_name,
    check_script_name,
    check_unreserved_variable,
)
from octoprov.validation.productkeys import check_product_key
from octoprov.validation.text import check_password, check_single_line, check_text, storable_problem, text_problem
from octoprov.validation.timezones import WINDOWS_TIMEZONES, check_timezone, iana_timezone
from octoprov.validation.windowspaths import check_windows_path, is_device_name

__all__ = [
    "WINDOWS_LANGUAGES",
    "WINDOWS_TIMEZONES",
    "canonical_mac",
    "check_account_name",
    "check_display_name",
    "check_distinguished_name",
    "check_fqdn",
    "check_hostname",
    "check_ipv4",
    "check_language",
    "check_linux_user_name",
    "check_ou_in_domain",
    "check_parameter_name",
    "check_password",
    "check_product_key",
    "check_script_name",
    "check_shell_command",
    "check_single_line",
    "check_ssh_public_key",
    "check_static_network",
    "check_text",
    "check_timezone",
    "check_unreserved_variable",
    "check_windows_computer_name",
    "check_windows_path",
    "iana_timezone",
    "is_device_name",
    "parse_subnet",
    "storable_problem",
    "text_problem",
]
