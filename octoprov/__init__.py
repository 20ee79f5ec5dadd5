"""Octoprov: zero-touch OS provisioning for Hyper-V, KVM and bare metal."""

__version__ = "0.1.0"
