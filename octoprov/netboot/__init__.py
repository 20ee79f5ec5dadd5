"""Network boot: the services PXE firmware and iPXE talk to (TFTP, ProxyDHCP)."""
