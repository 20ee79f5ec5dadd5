"""The GRUB configurations of the signed boot chain: values carried literally or refused."""

from __future__ import annotations

import pytest

from octoprov.netboot import grub


def test_install_config_loads_kernel_and_initrd_from_the_library_with_the_callback():
    config = grub.install_config(task_id=7, hostname="web-01", image_name="Tiny", kernel_path="tiny/vmlinuz",
                                 initrd_path="tiny/initrd.gz", kernel_args="console=ttyS0 panic=5",
                                 callback_url="http://198.51.100.2:8080/api/v1/provisioning/pxe/status",
                                 token="tok-en")
    lines = config.splitlines()
    assert lines[0] == "# Octoprov task 7: web-01, Tiny"
    callback = "'octoprov.callback=http://198.51.100.2:8080/api/v1/provisioning/pxe/status'"
    expected = (f"linux '/images/tiny/vmlinuz' 'console=ttyS0' 'panic=5' 'octoprov.task=7' {callback} "
                "'octoprov.token=tok-en'")
    assert expected in lines
    assert "initrd '/images/tiny/initrd.gz'" in lines
    assert lines.index("boot") > lines.index("initrd '/images/tiny/initrd.gz'")


@pytest.mark.parametrize("value, word", [
    ("plain", "'plain'"),
    ("it's", "'it'\\''s'"),
    ("$prefix", "'$prefix'"),
    ("a b; reboot", "'a b; reboot'"),
    ('"quoted" \\ back', "'\"quoted\" \\ back'"),
    ("ünïcode", "'ünïcode'"),
])
def test_values_are_carried_literally(value, word):
    assert grub.grub_word(value) == word


@pytest.mark.parametrize("value", ["two\nlines", "carriage\rreturn", "nul\x00", "tab\t", "del\x7f"])
def test_control_characters_are_refused(value):
    with pytest.raises(grub.UnsafeGrubValue):
        grub.grub_word(value)
    with pytest.raises(grub.UnsafeGrubValue):
        grub.install_config(task_id=1, hostname="h", image_name="i", kernel_path="k", initrd_path="i",
                            kernel_args="quiet", callback_url="http://x/", token=f"t{value}")


def test_messages_and_comments_lose_control_characters_but_stay_one_line():
    config = grub.local_boot_config("Task 3: host\nreboot")
    assert config.splitlines() == ["# Octoprov: Task 3: host reboot",
                                   "echo 'Octoprov: Task 3: host reboot; booting from the local disk'", "exit"]
    assert "echo 'Octoprov: it'\\''s; booting from the local disk'" in grub.local_boot_config("it's")


@pytest.mark.parametrize("name, mac", [
    ("grub/octoprov/52:54:00:6f:71:01.cfg", "52:54:00:6f:71:01"),
    ("/grub/octoprov/52:54:00:6F:71:01.cfg", "52:54:00:6f:71:01"),
    ("grub/octoprov/52-54-00-6f-71-01.cfg", None),
    ("grub/octoprov/ff:ff:ff:ff:ff:ff.cfg", None),  # broadcast: not a card
    ("grub/octoprov/52:54:00:6f:71:01.cfg.bak", None),
    ("grub/grub.cfg", None),
    ("grub/octoprov/../52:54:00:6f:71:01.cfg", None),
])
def test_machine_file_names(name, mac):
    assert grub.machine_file_mac(name) == mac


def test_entry_file_sends_grub_on_to_the_machine_file():
    assert "configfile $prefix/octoprov/$net_default_mac.cfg" in grub.ENTRY.splitlines()
    assert grub.ENTRY.splitlines()[-1] == "exit"  # no machine file: back to the firmware, the local disk
