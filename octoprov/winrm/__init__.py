"""Windows hosts over WinRM: PowerShell remoting through pypsrp from Linux workers, so a host needs
nothing beyond WinRM enabled. Shared by every part of Octoprov that runs PowerShell somewhere: the
Hyper-V target on its hosts, the offline domain join on the management host, post-install on
installed Windows machines.

One concept per module: ``connection`` (where and how to reach a host's WinRM service),
``commands`` (a PowerShell command as data: cmdlet or script, with bound parameters),
``scriptfiles`` (fixed scripts kept as ``.ps1`` files beside the code that runs them) and
``powershell`` (running commands over a runspace pool, errors mapped to the target errors).
"""
